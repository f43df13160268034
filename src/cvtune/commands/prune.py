"""`cvtune prune MODEL -o OUT --method ...`: unstructured sparsification or structured channel pruning."""

from __future__ import annotations

from pathlib import Path

import typer

from ..console import console, err_console, progress
from ._options import (
    CALIB,
    FORCE,
    JSON,
    PREPROCESS,
    TASK_OPTION,
    calib_size_option,
    input_shape_option,
    parse_task_options,
    print_json,
    warn_if_guessed,
)


def _check_options(method: str, sparsity, threshold, ratio, importance, allocation, calib,
                   save_latency=None) -> None:
    from ..errors import UsageError

    if method == "channel":
        if sparsity is not None or threshold is not None:
            raise UsageError("--method channel removes whole channels: give --ratio R (not --sparsity/--threshold)")
        if save_latency is not None and (ratio is not None or allocation is not None):
            raise UsageError("--save-latency chooses every group's ratio itself; drop --ratio/--allocation")
        if save_latency is not None and calib is None:
            raise UsageError("--save-latency measures how much each cut hurts on calibration images: add --calib DIR")
        if ratio is None and allocation is None and save_latency is None:
            raise UsageError("--method channel needs --ratio R in (0, 1), e.g. --ratio 0.3 (or --save-latency 0.3)")
    else:
        if save_latency is not None:
            raise UsageError("--save-latency is for --method channel")
        if ratio is not None:
            raise UsageError(f"--ratio is for --method channel; --method {method} takes "
                             f"{'--threshold T' if method == 'threshold' else '--sparsity S'}")
        if importance is not None or calib is not None:
            raise UsageError(f"{'--importance' if importance is not None else '--calib'} is for --method channel; "
                             f"--method {method} needs no calibration")
        if method == "threshold" and sparsity is not None:
            raise UsageError("--method threshold takes --threshold T (zero |w| < T), not --sparsity")
        if method != "threshold" and threshold is not None:
            raise UsageError(f"--threshold is for --method threshold; --method {method} takes --sparsity S")


def _allocation(path: Path | None, method: str) -> dict[str, float]:
    if path is None:
        return {}
    from ..compress.sensitivity import load_sensitivity
    from ..errors import UsageError

    data = load_sensitivity(path)
    wanted = "channel" if method == "channel" else "magnitude"
    if data.get("method") != wanted:
        raise UsageError(f"{path} holds a '{data.get('method')}' allocation; --method {method} needs a "
                         f"'{wanted}' one (cvtune sensitivity --method {wanted} --max-drop 1% ...)")
    if not data.get("allocation"):
        raise UsageError(f"{path} has no allocation yet; run cvtune sensitivity with --max-drop (e.g. 1%) to make "
                         f"one")
    return {str(k): float(v) for k, v in data["allocation"].items()}


def register(app: typer.Typer) -> None:
    from ..compress.channels import IMPORTANCE
    from ..compress.prune import PRUNE_METHODS, ChannelConfig
    from ..compress.sparsify import SCOPES

    @app.command("prune")
    def prune_command(
        model: Path = typer.Argument(..., help="Model file (.onnx), e.g. $(cvtune zoo path ppocr-det)."),
        output: Path = typer.Option(None, "--output", "-o", help="Where to write the pruned model (.onnx); a "
                                    "JSON report goes next to it as OUT.prune.json."),
        method: str = typer.Option("magnitude", "--method", "-m", help=f"{' | '.join(PRUNE_METHODS)}: zero "
                                   "weights (magnitude/random/threshold) or remove whole channels (channel)."),
        sparsity: float = typer.Option(None, "--sparsity", help="magnitude/random: fraction of weights to zero."),
        threshold: float = typer.Option(None, "--threshold", help="threshold: zero weights with |w| < T."),
        scope: str = typer.Option("layer", "--scope", help=f"magnitude ranking: {' | '.join(SCOPES)}."),
        ratio: float = typer.Option(None, "--ratio", help="channel: fraction of each group's channels to remove."),
        importance: str = typer.Option(None, "--importance", help=f"channel ranking: {' | '.join(IMPORTANCE)} "
                                       "(default: activation with --calib, else l1)."),
        calib: Path = CALIB,
        calib_size: int = calib_size_option(ChannelConfig.calibration_need.count),
        task: str = typer.Option(None, "--task", help="Task whose preprocessing the calibration images get "
                                 "(default: a plain resize to the model's input size with its preprocessing)."),
        task_option: list[str] = TASK_OPTION,
        preprocess: str = PREPROCESS,
        input_shape: str = input_shape_option("Also the shape the FLOPs are counted at."),
        no_reconstruct: bool = typer.Option(False, "--no-reconstruct", help="channel: plain cut, no least-squares "
                                            "refit of the consumer layers."),
        skip: list[str] = typer.Option(None, "--skip", help="Layer (or channel group) name to leave alone; "
                                       "repeatable."),
        skip_first: bool = typer.Option(True, "--skip-first/--no-skip-first", help="Unstructured: leave the "
                                        "first weighted layer dense."),
        skip_last: bool = typer.Option(True, "--skip-last/--no-skip-last", help="Unstructured: leave the last "
                                       "weighted layer dense."),
        round_to: int = typer.Option(1, "--round-to", min=1, help="channel: round kept channel counts up to a "
                                     "multiple."),
        allocation: Path = typer.Option(None, "--allocation", help="Per-layer levels from `cvtune sensitivity "
                                        "--max-drop` (its JSON file) instead of one --sparsity/--ratio."),
        plan_only: bool = typer.Option(False, "--plan", help="Print the plan (channel groups, or per-layer "
                                       "sparsity) and write nothing."),
        seed: int = typer.Option(0, "--seed", help="Seed for random pruning and the reconstruction's row sampling."),
        force: bool = FORCE,
        save_latency: float = typer.Option(None, "--save-latency", help="channel: latency-driven allocation: "
                                           "save this fraction of the latency (e.g. 0.3) at the least damage, "
                                           "per-group ratios from each group's measured cost on --cost-runtimes "
                                           "and its sensitivity on --calib images (cached)."),
        cost_runtimes: str = typer.Option("ort,opencv", "--cost-runtimes", help="With --save-latency: runtimes "
                                          "whose per-layer profile prices each group (comma-separated)."),
        as_json: bool = JSON,
    ) -> None:
        """Prune a model. Unstructured methods zero weights (the file compresses better; dense kernels are NOT
        faster); --method channel removes whole channels (the only pruning that makes OpenCV and ORT faster),
        refitting the next layers by least squares on --calib images. The input model is never modified."""
        from ..compress.prune import prune_file
        from ..compress.sparsify import SparsifyConfig
        from ..data.calibration import CalibrationNeed, calibration_set
        from ..errors import UsageError
        from ..model import parse_shape

        if method not in PRUNE_METHODS:
            raise UsageError(f"unknown method '{method}'; choose one of: {', '.join(PRUNE_METHODS)}")
        _check_options(method, sparsity, threshold, ratio, importance, allocation, calib, save_latency)
        if output is None and not plan_only:
            raise UsageError("give -o OUT.onnx for the pruned model (or --plan to only print the plan)")
        if output is not None and not plan_only:
            from ..compress.sparsify import report_path
            from ..files import check_output

            check_output(output, force=force, inputs=(model, allocation), suffixes=(".onnx",),
                         companions=(report_path(output),))
        shape = parse_shape(input_shape) if input_shape else None
        options = parse_task_options(task_option)
        if (task or options or preprocess) and calib is None:
            raise UsageError("--task/--task-option/--preprocess say how --calib images are preprocessed; add --calib "
                             "DIR")
        levels = _allocation(allocation, method)
        calibration = None
        if calib is not None:
            calibration = calibration_set(model, calib, CalibrationNeed(count=calib_size), task=task,
                                          task_options=options, input_shape=shape, preprocessing=preprocess)
            warn_if_guessed(calibration.preprocessing, model, preprocess)
        latency = None
        round_to = round_to if save_latency is None else max(round_to, 8)
        if save_latency is not None:
            from ..compress.allocate import latency_allocation
            from ..model import load_onnx

            runtimes = tuple(r.strip() for r in cost_runtimes.split(",") if r.strip())
            latency = latency_allocation(load_onnx(model), calibration.head(4), target=save_latency,
                                         runtimes=runtimes, cost_shape=shape, task=task, round_to=round_to)
            levels = dict(latency.allocation.ratios)
            if not levels:
                raise UsageError("no channel group is worth cutting for that latency saving on this model")
        if method == "channel":
            importance = importance or ("activation" if calib else "l1")
            config = ChannelConfig(ratio=ratio, ratios=tuple(levels.items()), importance=importance,
                                   reconstruct=not no_reconstruct, skip=tuple(skip or ()), round_to=round_to,
                                   seed=seed)
            if plan_only:
                config = ChannelConfig(ratio=ratio, ratios=config.ratios, importance=config.importance,
                                       reconstruct=False, skip=config.skip, round_to=round_to, seed=seed)
        else:
            config = SparsifyConfig(method=method, sparsity=sparsity, threshold=threshold, scope=scope,
                                    skip_first=skip_first, skip_last=skip_last, skip=tuple(skip or ()),
                                    layer_sparsity=tuple(levels.items()), seed=seed)
        target = None if plan_only else output
        if method == "channel" and target is not None and config.reconstruct and not as_json:
            with progress() as bar:
                job = bar.add_task("reconstruct", total=None, rate="")

                def on_wave(i: int, n: int) -> None:
                    bar.update(job, completed=i, total=n, rate=f"wave {i + 1}/{n}")

                report = prune_file(model, target, config, calibration=calibration, input_shape=shape,
                                    on_wave=on_wave)
        else:
            report = prune_file(model, target, config, calibration=calibration, input_shape=shape)
        data = {"input": str(model), "output": None if target is None else str(target), **report.to_dict()}
        if latency is not None:
            data["allocation"] = latency.allocation.to_dict()
        if as_json:
            print_json("prune", data)
            return
        _print_report(report, target)
        if latency is not None:
            console.print(f"latency-driven allocation: {latency.allocation.describe()}")


def _print_report(report, output: Path | None) -> None:
    from ..compress.prune import ChannelReport

    if isinstance(report, ChannelReport):
        console.print(report.plan.table())
        console.print(report.plan.summary())
        if report.reconstruction is not None:
            rec = report.reconstruction
            console.print(f"reconstruction on {rec.images} images: mean relative output error of the refit layers "
                          f"{rec.mean_error_cut:.4f} (plain cut) -> {rec.mean_error_fit:.4f} (refit)")
    else:
        console.print(report.table())
        console.print(f"[dim]{report.note}[/]")
    if output is not None:
        console.print(f"wrote {output} ({report.file_bytes / 1024:,.0f} KiB, was "
                      f"{report.original_file_bytes / 1024:,.0f} KiB) and its report")
    else:
        err_console.print("--plan: nothing written")
