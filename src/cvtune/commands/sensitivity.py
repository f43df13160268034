"""`cvtune sensitivity MODEL --data DIR`: per-layer pruning sensitivity curves, and an allocation under a budget."""

from __future__ import annotations

from pathlib import Path

import typer

from ..console import console, progress
from ._options import (
    CALIB,
    INPUT_SHAPE,
    JSON,
    LIMIT,
    PREPROCESS,
    TASK_OPTION,
    calib_size_option,
    max_drop_option,
    parse_task_options,
    print_json,
    warn_if_guessed,
)


def _levels(text: str | None) -> tuple[float, ...] | None:
    from ..errors import UsageError

    if not text:
        return None
    try:
        return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UsageError(f"bad --levels '{text}': expected fractions joined by commas, e.g. 0.3,0.5,0.7") from None


def _measured_costs(result, model: Path, runtimes: str, shape):
    """The result with each group's cost = microseconds that scale with it, averaged over `runtimes`."""
    from dataclasses import replace

    from ..compress.channels import probe_shape
    from ..compress.cost import profile_cost
    from ..errors import UsageError
    from ..model import load_onnx

    proto = load_onnx(model)
    shape = shape or probe_shape(model)
    if not shape or len(shape) != 4:
        raise UsageError("--cost needs the input shape to profile at: give --input-shape NxCxHxW")
    costs = [profile_cost(proto, rt.strip(), tuple(shape)) for rt in runtimes.split(",") if rt.strip()]
    curves = tuple(replace(c, cost=int(round(1000 * sum(m.group_cost(c.name) for m in costs) / len(costs))))
                   for c in result.curves)
    return replace(result, curves=curves)


def register(app: typer.Typer) -> None:
    from ..compress.prune import ChannelConfig
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
        limit: int = LIMIT,
        layer: list[str] = typer.Option(None, "--layer", help="Only these layers/groups (repeatable)."),
        calib: Path = CALIB,
        calib_size: int = calib_size_option(ChannelConfig.calibration_need.count),
        input_shape: str = INPUT_SHAPE,
        task_option: list[str] = TASK_OPTION,
        preprocess: str = PREPROCESS,
        output: Path = typer.Option(None, "--output", "-o", help="Curve JSON (also the cache: an interrupted run "
                                    "resumes). Default: MODEL_STEM.sensitivity.json in the current folder."),
        max_drop: str = max_drop_option(None),
        force: bool = typer.Option(False, "--force", help="Start over: replace an existing -o file instead of "
                                   "resuming from the curves it holds."),
        cost: str = typer.Option(None, "--cost", help="channel: price each group by its measured latency on these "
                                 "runtimes (per-layer profile, e.g. ort,opencv; cached) instead of FLOPs, so "
                                 "--max-drop allocates where the most time is saved."),
        as_json: bool = JSON,
    ) -> None:
        """Measure how much the metric drops when each layer alone is pruned at several levels, save the curves,
        and (with --max-drop) allocate per-layer sparsity under that accuracy budget from them (saved in the
        JSON; apply with cvtune prune --allocation FILE). With --calib (--method channel), each point is cut AND
        reconstructed on those images, as `cvtune prune` does; without it, plain cuts."""
        from dataclasses import replace

        from ..budget import Budget
        from ..compress.sensitivity import allocate, load_sensitivity
        from ..data.calibration import CalibrationNeed, calibration_set
        from ..errors import UsageError
        from ..files import check_output, output_lock, write_json
        from ..model import check_model_file, parse_shape
        from ..runtimes import make_runtime
        from ..tasks.spec import resolve_task

        budget = Budget.parse(max_drop) if max_drop is not None else None
        out = output or Path(f"{model.stem}.sensitivity.json")
        check_output(out, force=True, inputs=(model,), suffixes=(".json",))
        if out.exists() and not force:
            load_sensitivity(out)  # resumes only from a sensitivity file; anything else is refused, untouched
        shape = parse_shape(input_shape) if input_shape else None
        options = parse_task_options(task_option)
        if shape is not None:
            if len(shape) != 4:
                raise UsageError(f"--input-shape needs 4 dims NxCxHxW, e.g. 1x3x640x640 (got {input_shape})")
            options["input_size"] = (int(shape[2]), int(shape[3]))
        rt = make_runtime(runtime)
        if preprocess:
            options["preprocessing"] = preprocess
        check_model_file(model)
        resolved = resolve_task(task, model, **(dict(options, reference_model=str(model)) if task == "fidelity"
                                                else options))
        warn_if_guessed(resolved.preprocessing, model, preprocess)
        if cost and method != "channel":
            raise UsageError("--cost prices channel groups: use it with --method channel")
        calib_tensors = None
        if calib is not None:
            if method != "channel":
                raise UsageError("--calib is for --method channel (reconstruction after each cut)")
            calibration = calibration_set(model, calib, CalibrationNeed(count=calib_size), task=task,
                                          task_options=options, input_shape=shape, preprocessing=preprocess)
            calib_tensors = calibration.tensors()  # every point refits on all of them
        extra = {"calib": calib_tensors, "calib_id": str(calib.resolve()) if calib else ""}
        with output_lock(out):
            if force and out.exists():
                out.unlink()  # start over (the curves are rewritten as they are measured)
            result = _analyze(model, data, task, method, levels, rt, limit, out, options, layer, as_json, extra)
            if cost:
                result = _measured_costs(result, model, cost, shape)
                write_json(out, result.to_dict(), schema="sensitivity")
            if budget is not None:
                result = replace(result, allocation=allocate(result, budget), budget=budget)
                write_json(out, result.to_dict(), schema="sensitivity")
        if as_json:
            print_json("sensitivity", {**result.to_dict(), "file": str(out)})
            return
        console.print(result.table())
        console.print(f"saved {out}")
        if budget is not None:
            flag = "--method channel" if method == "channel" else "--method magnitude"
            console.print(f"allocation within a {budget.describe()} drop ({result.metric}): {len(result.allocation)} "
                          f"of {len(result.curves)} units pruned; apply with: cvtune prune {model} -o OUT.onnx {flag} "
                          f"--allocation {out}")


def _analyze(model, data, task, method, levels, rt, limit, out, options, layer, quiet, extra):
    """analyze_sensitivity with a progress bar (none with --json)."""
    from ..compress.sensitivity import analyze_sensitivity

    kwargs = dict(task=task, method=method, levels=_levels(levels), runtime=rt, limit=limit, cache=out,
                  task_options=options, units=layer or None, **extra)
    if quiet:
        return analyze_sensitivity(model, data, **kwargs)
    with progress() as bar:
        job = bar.add_task("sensitivity", total=None, rate="")

        def on_point(i: int, n: int) -> None:
            bar.update(job, completed=i, total=n, rate=f"point {i + 1}/{n}")

        return analyze_sensitivity(model, data, on_point=on_point, **kwargs)
