"""`cvtune demo`: the whole story on the zoo's text detector, with nothing to download or prepare: generate a
labelled text set, search for the fastest configuration within a 1% hmean budget, print the summary and report."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import zoo
from ..console import console, err_console
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
        from ..demo import demo_config, demo_data
        from ..errors import UsageError
        from ..search.config_file import save_config
        from .optimize import print_summary, run_optimize

        Budget.parse(max_drop), parse_duration(time_limit)  # bad options fail before anything is generated
        if images < 10:
            raise UsageError(f"--images must be at least 10 (got {images}): the demo calibrates on some and "
                             f"evaluates on the rest")
        data = demo_data(out, images, on_generate=lambda d: err_console.print(
            f"generating {images} labelled text images in {d} ...", highlight=False))
        config = demo_config(out, data, time=time_limit, max_drop=max_drop, preset=preset)
        console.print(f"[bold]cvtune demo[/]: {zoo.get('ppocr-det').description}; {images} generated images; "
                      f"budget {max_drop} hmean drop, {time_limit} of search", highlight=False)
        saved = save_config(config, out / "optimize.yaml")  # a starting point for the user's own runs
        console.print(f"config: {saved} (edit it, then: cvtune optimize --config {saved})", highlight=False)
        result = run_optimize(config, live=True)
        print_summary(result)
        if result.exported is not None and result.exported.is_file():
            console.print(f"Run the answer: cvtune run {result.exported} -i {data} "
                          f"-o {out / 'detections.jsonl'}", highlight=False)
        if result.exit_code:
            raise typer.Exit(result.exit_code)
