"""`cvtune sensitivity MODEL --data DIR`: per-layer pruning sensitivity curves, and an allocation under a budget."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..console import console, progress


def _levels(text: str | None) -> tuple[float, ...] | None:
    from ..errors import UsageError

    if not text:
        return None
    try:
        return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UsageError(f"bad --levels '{text}': expected fractions joined by commas, e.g. 0.3,0.5,0.7") from None


def register(app: typer.Typer) -> None:
    from ..compress.sensitivity import SENSITIVITY_METHODS
    from ..runtimes import RUNTIMES

    @app.command("sensitivity")
    def sensitivity_command(
        model: Path = typer.Argument(..., help="Model file (.onnx)."),
        data: Path = typer.Option(..., "--data", "-d", help="Dataset folder (labelled for a task metric; any "
                                  "images for fidelity)."),
        task: str = typer.Option("fidelity", "--task", "-t", help="Metric to watch: a task name (textdet, "
                                 "classify, ...) or fidelity (agreement with the original; no labels needed)."),
        method: str = typer.Option("magnitude", "--method", "-m", help=f"{' | '.join(SENSITIVITY_METHODS)}: "
                                   "prune one layer (magnitude) or one channel group (channel, plain cut) at a time."),
        levels: str = typer.Option(None, "--levels", help="Comma-separated sparsity/ratio levels (default "
                                   "0.3,0.5,0.7,0.9 for magnitude, 0.25,0.5,0.75 for channel)."),
        runtime: str = typer.Option("ort", "--runtime", "-r", help=f"Runtime: {', '.join(RUNTIMES)}."),
        limit: int = typer.Option(None, "--limit", help="Evaluate only the first N images per point."),
        layer: list[str] = typer.Option(None, "--layer", help="Only these layers/groups (repeatable)."),
        calib: Path = typer.Option(None, "--calib", help="channel: calibration images; each point is then cut AND "
                                   "reconstructed, as `cvtune prune` does (without: plain cuts)."),
        calib_size: int = typer.Option(16, "--calib-size", help="How many calibration images to use."),
        input_size: str = typer.Option(None, "--input-size", help="Fixed network input HEIGHTxWIDTH for the task."),
        output: Path = typer.Option(None, "--output", "-o", help="Curve JSON (also the cache: an interrupted run "
                                    "resumes). Default: MODEL_STEM.sensitivity.json in the current folder."),
        budget: float = typer.Option(None, "--budget", help="Allocate per-layer levels so the summed relative "
                                     "metric drop stays within this fraction, e.g. 0.01 (saved in the JSON; "
                                     "apply with cvtune prune --allocation FILE)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output on stdout."),
    ) -> None:
        """Measure how much the metric drops when each layer alone is pruned at several levels, save the curves,
        and (with --budget) allocate per-layer sparsity under an accuracy budget from them."""
        from dataclasses import replace

        from ..compress.sensitivity import allocate, analyze_sensitivity
        from ..errors import UsageError
        from ..files import refuse_overwrite_of_input, write_json
        from ..runtimes import make_runtime

        out = output or Path(f"{model.stem}.sensitivity.json")
        refuse_overwrite_of_input(out, model)
        options = {"input_size": input_size} if input_size else {}
        rt = make_runtime(runtime)
        calib_tensors = None
        if calib is not None:
            if method != "channel":
                raise UsageError("--calib is for --method channel (reconstruction after each cut)")
            from ..compress.calib import load_calibration

            calib_tensors = load_calibration(model, calib, size=calib_size)
        extra = {"calib": calib_tensors, "calib_id": str(calib.resolve()) if calib else ""}
        if as_json:
            result = analyze_sensitivity(model, data, task=task, method=method, levels=_levels(levels), runtime=rt,
                                         limit=limit, cache=out, task_options=options, units=layer or None,
                                         **extra)
        else:
            with progress() as bar:
                job = bar.add_task("sensitivity", total=None, rate="")

                def on_point(i: int, n: int) -> None:
                    bar.update(job, completed=i, total=n, rate=f"point {i + 1}/{n}")

                result = analyze_sensitivity(model, data, task=task, method=method, levels=_levels(levels),
                                             runtime=rt, limit=limit, cache=out, task_options=options,
                                             units=layer or None, on_point=on_point, **extra)
        if budget is not None:
            result = replace(result, allocation=allocate(result, budget), budget=budget)
            write_json(out, result.to_dict())
        if as_json:
            print(json.dumps({**result.to_dict(), "file": str(out)}, indent=2))
            return
        console.print(result.table())
        console.print(f"saved {out}")
        if budget is not None:
            flag = "--method channel" if method == "channel" else "--method magnitude"
            console.print(f"allocation within a {budget:.1%} drop: {len(result.allocation)} of {len(result.curves)} "
                          f"units pruned; apply with: cvtune prune {model} -o OUT.onnx {flag} --allocation {out}")
