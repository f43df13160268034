"""`cvtune demo`: the whole story on the zoo's text detector, with nothing to download or prepare."""

from __future__ import annotations

import typer

from .. import zoo
from ..bench import BenchSettings, measure
from ..console import console, err_console
from ..errors import TrialFailed
from ..runtimes import make_runtime
from .bench import print_results
from .inspect import _print as print_inspection


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        size: int = typer.Option(640, "--size", help="Detector input side (multiple of 32)."),
        min_time: float = typer.Option(2.0, "--min-time", help="Seconds to measure each configuration."),
    ) -> None:
        """Inspect the zoo's PP-OCRv4 text detector and benchmark it with OpenCV (each engine) and ONNX Runtime
        side by side."""
        from ..inspection import inspect_model

        model = zoo.path("ppocr-det")
        shape = (1, 3, size, size)
        err_console.print(f"[bold]cvtune demo[/]: {model.name} at {size}x{size}")
        print_inspection(inspect_model(model, input_shape=shape))
        results = []
        from ..runtimes.opencv import available_engines

        runtimes = [make_runtime("opencv", engine=e) for e in available_engines() if e != "auto"]
        runtimes.append(make_runtime("ort"))
        for rt in runtimes:
            err_console.print(f"measuring {rt.label()} ...", highlight=False)
            try:
                results.append(measure(model, rt, shape, settings=BenchSettings(min_time_s=min_time)))
            except TrialFailed as exc:
                results.append(f"{rt.label()}: failed: {exc}")
        print_results(results)
        console.print("Next: [bold]cvtune bench MODEL --compare ...[/] for your own model; see README.md.")
