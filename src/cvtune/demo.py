"""The demo's story as a library: a generated, labelled text set and the search on the zoo's text detector against
the article-style baseline. `cvtune demo` and bench/bench_demo.py both run it, so they measure the same thing."""

from __future__ import annotations

from pathlib import Path

from . import zoo
from .budget import Budget, parse_duration
from .errors import UsageError
from .search import OptimizeConfig
from .search.space import space_preset

DEMO_EVAL_IMAGES = 40


def demo_data(out: Path, images: int, *, on_generate=None) -> Path:
    """OUT/text with `images` generated text images (made once; rerunning reuses them); returns the textdet set."""
    from .data.synth import SynthConfig, generate_text_set

    if images < 10:
        raise UsageError(f"the demo needs at least 10 images (got {images})")
    data = Path(out) / "text"
    if not (data / "meta.json").is_file():
        if on_generate is not None:
            on_generate(data)
        generate_text_set(data, SynthConfig(n=images, seed=0, fonts="bundled"))
    return data / "textdet"


def demo_config(out: Path, data: Path, *, time: str | None = "3m", max_drop: str = "1%",
                preset: str = "quick") -> OptimizeConfig:
    """The search the demo runs: PP-OCRv4 det, hmean within `max_drop`, `time` of search, OUT/search."""
    return OptimizeConfig(model=zoo.path("ppocr-det"), task="textdet", data=data, out=Path(out) / "search",
                          budget=Budget.parse(max_drop), time_budget_s=parse_duration(time),
                          space=space_preset(preset), eval_images=DEMO_EVAL_IMAGES)
