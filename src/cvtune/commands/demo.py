"""`cvtune demo`: the whole story on the zoo's text detector, with nothing to download or prepare: generate a
labelled text set, search for the fastest configuration within a 1% hmean budget, print the summary and report."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import zoo
from ..console import console, err_console
from ..errors import UsageError


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("cvtune-demo"), "--output", "-o", help="Folder for the generated data and "
                                 "the search (run again to resume or re-show)."),
        images: int = typer.Option(80, "--images", help="Generated text images (calibration + evaluation)."),
        budget: str = typer.Option("3m", "--budget", help="Wall-clock limit for the search, e.g. 3m, 90s."),
        max_drop: str = typer.Option("1%", "--max-drop", help="Largest hmean drop allowed (relative, or 0.01abs)."),
        preset: str = typer.Option("quick", "--preset", help="Search space preset: quick, default, full."),
    ) -> None:
        """Optimize the zoo's PP-OCRv4 text detector on a generated text set within a 1% hmean budget, against
        the article-style baseline (the model as given, OpenCV defaults), and write OUT/search/report.html."""
        from ..data.synth import SynthConfig, generate_text_set
        from ..search import Budget, OptimizeConfig, optimize, parse_duration
        from ..search.space import space_preset
        from .optimize import LiveDisplay, print_summary

        if images < 10:
            raise UsageError(f"--images must be at least 10 (got {images})")
        drop, seconds, space = Budget.parse(max_drop), parse_duration(budget), space_preset(preset)  # fail early
        data = out / "text"
        if not (data / "meta.json").is_file():
            err_console.print(f"generating {images} labelled text images in {data} ...", highlight=False)
            generate_text_set(data, SynthConfig(n=images, seed=0, fonts="bundled"))
        config = OptimizeConfig(model=zoo.path("ppocr-det"), task="textdet", data=data / "textdet",
                                out=out / "search", budget=drop, time_budget_s=seconds, space=space,
                                screen_images=12, eval_images=40)
        console.print(f"[bold]cvtune demo[/]: {zoo.get('ppocr-det').description}; {images} generated images; "
                      f"budget {max_drop} hmean drop, {budget} of search", highlight=False)
        result = optimize(config, on_event=LiveDisplay(config))
        print_summary(result)
        console.print(f"Run the chosen model: cvtune run {out / 'search' / 'best' / 'deploy.json'} "
                      f"-i {data / 'textdet'} -o {out / 'detections.jsonl'}", highlight=False)
