"""`cvtune demo`: the whole story on the zoo's text detector, with nothing to download or prepare: generate a
labelled text set, search for the fastest configuration within a 1% hmean budget, print the summary and report."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import zoo
from ..console import console, err_console
from ..errors import UsageError
from ._options import max_drop_option, time_option


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("cvtune-demo"), "--output", "-o", help="Folder for the generated data and "
                                 "the search (run again to resume or re-show)."),
        images: int = typer.Option(80, "--images", help="Generated text images (calibration + evaluation)."),
        time_limit: str = time_option("3m"),
        max_drop: str = max_drop_option("1%"),
        preset: str = typer.Option("quick", "--preset", help="Search space preset: quick, default, full."),
    ) -> None:
        """Optimize the zoo's PP-OCRv4 text detector on a generated text set within a 1% hmean budget, against
        the article-style baseline (the model as given, OpenCV defaults), and write OUT/search/report.html."""
        from ..budget import Budget, parse_duration
        from ..data.synth import SynthConfig, generate_text_set
        from ..search import OptimizeConfig
        from ..search.space import space_preset
        from .optimize import print_summary, run_optimize

        if images < 10:
            raise UsageError(f"--images must be at least 10 (got {images})")
        drop, seconds, space = Budget.parse(max_drop), parse_duration(time_limit), space_preset(preset)  # fail early
        data = out / "text"
        if not (data / "meta.json").is_file():
            err_console.print(f"generating {images} labelled text images in {data} ...", highlight=False)
            generate_text_set(data, SynthConfig(n=images, seed=0, fonts="bundled"))
        config = OptimizeConfig(model=zoo.path("ppocr-det"), task="textdet", data=data / "textdet",
                                out=out / "search", budget=drop, time_budget_s=seconds, space=space,
                                screen_images=12, eval_images=40)
        console.print(f"[bold]cvtune demo[/]: {zoo.get('ppocr-det').description}; {images} generated images; "
                      f"budget {max_drop} hmean drop, {time_limit} of search", highlight=False)
        result = run_optimize(config, live=True)
        print_summary(result)
        console.print(f"Run the chosen model: cvtune run {out / 'search' / 'best' / 'deploy.json'} "
                      f"-i {data / 'textdet'} -o {out / 'detections.jsonl'}", highlight=False)
