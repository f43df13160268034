"""`cvtune quantize MODEL -o OUT`: int8 (static/dynamic, or NNCF's on the OpenVINO model) or fp16, optionally
accuracy-aware (cvtune's accuracy- or latency-weighted fallback, or NNCF's accuracy control), with a probe of which
runtimes load the result, an output check per runtime, and a `<OUT stem>.quant.json` sidecar."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..console import console, err_console
from ..errors import DatasetError, UsageError
from ..model import parse_shape
from ._options import (
    CALIB,
    FORCE,
    JSON,
    LIMIT,
    PREPROCESS,
    TASK_OPTION,
    calib_size_option,
    input_shape_option,
    max_drop_option,
    parse_task_options,
    print_json,
    warn_if_guessed,
)

# --max-drop with one image source (--data, --calib, or both the same folder): this share of it calibrates, the
# rest evaluates, split with a fixed seed so calibration never sees an evaluation image.
CALIB_FRACTION, SPLIT_SEED = 0.3, 0


def _print_result(result, report) -> None:
    mb = 1024 * 1024
    settings = result.settings
    what = {"static": f"static int8 {settings.get('format')} "
                      f"{'per-channel' if settings.get('per_channel') else 'per-tensor'}, "
                      f"{settings.get('calibrate')} calibration",
            "dynamic": "dynamic int8", "fp16": "fp16",
            "nncf": f"NNCF int8 on the OpenVINO model, preset {settings.get('preset')}"}[result.method]
    if result.method == "static":
        extras = [name for name, on in (("cross-layer equalization", settings.get("cle")),
                                        ("bias correction", settings.get("bias_correction"))) if on]
        what += "".join(f", {e}" for e in extras)
    console.print(f"wrote {result.output} ({what}): {result.output_bytes / mb:.2f} MB = "
                  f"{result.size_ratio:.1%} of {result.source_bytes / mb:.2f} MB; details in {result.sidecar}")
    fid = result.fidelity or {}
    if fid.get("cosine_min") is not None:
        console.print(f"output cosine vs float on {fid['inputs']} input(s) from {fid.get('inputs_from')}: "
                      f"mean {fid['cosine_mean']:.5f}, min {fid['cosine_min']:.5f}")
    for note in result.notes:
        console.print(f"  - {note}", highlight=False)
    if isinstance(report, dict):  # NNCF's accuracy control: one summary
        console.print(report["summary"], highlight=False)
    elif report is not None:
        budget = report.max_drop
        table = Table(title=f"accuracy-aware steps ({report.metric}, float {report.baseline:.4f}, "
                            f"budget {budget.describe()} drop)")
        for col in ("step", "kept in float", "added", "metric", "drop", "size MB", "s"):
            table.add_column(col)
        for s in report.steps:
            mark = " *" if s.step == report.chosen else ""
            table.add_row(f"{s.step}{mark}", str(len(s.kept_float)), s.added or "-", f"{s.metric:.4f}",
                          budget.describe(s.drop), f"{s.size_bytes / mb:.2f}", f"{s.seconds:.1f}")
        console.print(table)
        console.print(report.summary())
    if result.probe:
        agreement = result.extra.get("agreement", {})
        table = Table(title="which runtimes load and run it")
        for col in ("runtime", "runs", "output cosine vs float", "error"):
            table.add_column(col)
        for p in result.probe:
            agree = agreement.get(p.label, "")
            table.add_row(p.label, "yes" if p.ok else "no", f"{agree:.5f}" if isinstance(agree, float) else agree,
                          p.error[:110])
        console.print(table)


def _sources(calib: Path | None, data: Path | None, *, evaluate: bool, static: bool):
    """(calibration images: a folder or a Dataset or None, evaluation Dataset or None, a line saying which is
    which or ""). With --max-drop, one source (--data or --calib alone, or both the same folder) is split into
    disjoint calibration and evaluation parts; without it, --data alone gives its calibration part."""
    from ..evaluate import load_eval_dataset

    same = calib is not None and data is not None and calib.resolve() == data.resolve()
    if evaluate and (calib is None or data is None or same):
        source = data if data is not None else calib
        if source is None:
            raise UsageError("--max-drop needs images: pass --data DIR (split into calibration and evaluation "
                             "parts) or --calib DIR and --data DIR")
        dataset = load_eval_dataset(source)
        if len(dataset) < 2:
            raise DatasetError(f"{source} has {len(dataset)} image(s); --max-drop needs at least 2 (calibration and "
                               f"evaluation are disjoint), or separate --calib and --data folders")
        calib_part, eval_part = dataset.split(CALIB_FRACTION, seed=SPLIT_SEED)
        return calib_part, eval_part, (f"{source}: {len(calib_part)} image(s) calibrate, {len(eval_part)} evaluate "
                                       f"(disjoint split, seed {SPLIT_SEED})")
    evaluation = load_eval_dataset(data) if evaluate else None
    if calib is not None or not static:
        return calib, evaluation, (f"calibration: {calib}; evaluation: {len(evaluation)} image(s) of {data}"
                                   if evaluate else "")
    if data is None:
        return None, evaluation, ""
    calib_part, _ = load_eval_dataset(data).split(CALIB_FRACTION, seed=SPLIT_SEED)
    return calib_part, evaluation, f"{data}: calibrating on its {len(calib_part)}-image calibration split"


def register(app: typer.Typer) -> None:
    from ..quantize.config import CALIBRATIONS, FORMATS, QTYPES, StaticConfig

    @app.command("quantize")
    def quantize_cmd(
        model: Path = typer.Argument(..., help="Float32 ONNX model (never modified)."),
        output: Path = typer.Option(..., "--output", "-o", help="Where to write the quantized .onnx (a "
                                    "<name>.quant.json sidecar is written next to it)."),
        fmt: str = typer.Option("qdq", "--format", help=f"int8 format: {', '.join(FORMATS)}."),
        per_channel: bool = typer.Option(False, "--per-channel", help="Per-channel weight scales."),
        calibrate: str = typer.Option("minmax", "--calibrate", help=f"Calibration: {', '.join(CALIBRATIONS)} (auto: "
                                      "per tensor, the method with the lowest quantization error)."),
        cle: bool = typer.Option(False, "--cle", help="Cross-layer equalization first (even out conv channel "
                                 "ranges through Relu/PRelu/MaxPool; folds BatchNorm)."),
        bias_correction: bool = typer.Option(False, "--bias-correction", help="Correct each layer's output mean "
                                             "shift, measured on the calibration images."),
        nncf: bool = typer.Option(False, "--nncf", help="NNCF post-training int8 of the OpenVINO model; writes an "
                                  "OpenVINO IR (-o NAME.xml + NAME.bin) for the openvino runtime. With --max-drop: "
                                  "NNCF's accuracy control."),
        nncf_preset: str = typer.Option("performance", "--nncf-preset", help="NNCF preset: performance "
                                        "(symmetric activations) or mixed (asymmetric)."),
        calib: Path = CALIB,
        calib_size: int = calib_size_option(StaticConfig.calibration_need.count),
        activation_type: str = typer.Option(None, "--activation-type", help=f"{', '.join(QTYPES)} (default: s8 "
                                            "for QDQ, u8 for QOperator)."),
        weight_type: str = typer.Option("s8", "--weight-type", help=f"{', '.join(QTYPES)}."),
        reduce_range: bool = typer.Option(None, "--reduce-range/--no-reduce-range", help="7-bit weights (default: "
                                          "only for u8 activations on x86 without VNNI)."),
        input_shape: str = input_shape_option("Static int8 also fixes dynamic dims to it and simplifies first "
                                              "(OpenCV's classic engine needs it for models with Shape ops)."),
        exclude: list[str] = typer.Option(None, "--exclude", help="Node name to keep in float (repeatable)."),
        dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic int8 (MatMul/Gemm weights; no calibration)."),
        fp16: bool = typer.Option(False, "--fp16", help="fp16 weights and compute, float32 inputs/outputs kept."),
        fp16_fallback: bool = typer.Option(False, "--fp16-fallback", help="Write the fp16 model even if ONNX "
                                           "Runtime here has no fp16 kernel for some ops (they run in fp32)."),
        max_drop: str = max_drop_option(None),
        task: str = typer.Option(None, "--task", help="Task whose metric --max-drop uses (textdet, ocr, "
                                 "classify, ...) and whose preprocessing calibration gets; default: fidelity to the "
                                 "float model, calibration images plainly resized."),
        task_option: list[str] = TASK_OPTION,
        preprocess: str = PREPROCESS,
        data: Path = typer.Option(None, "--data", help="Evaluation dataset for --max-drop. When it is the only "
                                  "source (or the same folder as --calib), a seeded 30% split of it calibrates and "
                                  "the rest evaluates: calibration never sees an evaluation image."),
        limit: int = LIMIT,
        max_steps: int = typer.Option(8, "--max-steps", min=0, help="Most layers to try keeping in float."),
        fallback: str = typer.Option("accuracy", "--fallback", help="How --max-drop picks the layers to keep in "
                                     "float: accuracy (the most harmful first) or latency (the most accuracy per "
                                     "millisecond of int8 saving, measured with ORT's profiler)."),
        no_probe: bool = typer.Option(False, "--no-probe", help="Skip probing which runtimes load the result."),
        probe_shape: str = typer.Option(None, "--probe-shape", help="Input shape for the probe (default: the "
                                        "model's default)."),
        force: bool = FORCE,
        as_json: bool = JSON,
    ) -> None:
        """Quantize a model to int8 or fp16 with ONNX tooling (or NNCF on the OpenVINO model: --nncf), calibrated
        on your images; check which runtimes load the result and that their outputs match the float model's;
        optionally (--max-drop 1%, or 0.01abs) keep layers in float until an accuracy budget holds, judged on
        images calibration never saw."""
        from ..budget import Budget
        from ..data.calibration import CalibrationNeed, calibration_set
        from ..quantize import DynamicConfig, Fp16Config, quantize, quantize_with_accuracy_control
        from ..quantize.accuracy import WEIGHTINGS, nncf_with_accuracy_control, task_validator
        from ..quantize.api import check_output
        from ..quantize.config import NncfConfig

        if sum((dynamic, fp16, nncf)) > 1:
            raise UsageError("choose one of --dynamic, --fp16 and --nncf")
        if nncf and (cle or bias_correction):
            raise UsageError("--cle and --bias-correction belong to cvtune's own int8; --nncf runs NNCF's fast bias "
                             "correction itself (drop them, or drop --nncf)")
        if fallback not in WEIGHTINGS:
            raise UsageError(f"unknown --fallback '{fallback}'; choose one of: {', '.join(WEIGHTINGS)}")
        check_output(model, output, ".xml" if nncf else ".onnx", force=force, option="-o", force_hint="--force")
        budget = Budget.parse(max_drop) if max_drop is not None else None
        shape = parse_shape(input_shape) if input_shape else None
        probe_at = parse_shape(probe_shape) if probe_shape else None
        options = parse_task_options(task_option)
        excluded = tuple(exclude or ())
        if fp16:
            config = Fp16Config(exclude=excluded, allow_fp32_kernels=fp16_fallback)
        elif nncf:
            config = NncfConfig(preset=nncf_preset, ignored=excluded)
        elif dynamic:
            config = DynamicConfig(weight_type=weight_type, per_channel=per_channel,
                                   reduce_range=bool(reduce_range), exclude=excluded)
        else:
            config = StaticConfig(format=fmt, per_channel=per_channel, calibrate=calibrate,
                                  activation_type=activation_type, weight_type=weight_type,
                                  reduce_range=reduce_range, input_shape=shape, exclude=excluded, cle=cle,
                                  bias_correction=bias_correction)
        static = isinstance(config, StaticConfig | NncfConfig)
        if budget is not None and not static:
            raise UsageError("--max-drop works with static int8 only (not with --dynamic or --fp16)")
        if task and budget is None:
            raise UsageError("--task is used with --max-drop; add --max-drop 1% (or drop --task)")
        if limit is not None and budget is None:
            raise UsageError("--limit caps the images --max-drop evaluates on; add --max-drop 1% (or drop --limit)")
        if task and task != "fidelity" and data is None:
            raise UsageError(f"--task {task} needs --data DIR with labels to score on")
        calib_source, evaluation, which = _sources(calib, data, evaluate=budget is not None, static=static)
        if evaluation is not None and limit is not None:
            evaluation = evaluation.limit(limit)
            which += f"; --limit {limit}: {len(evaluation)} evaluated"
        if which:
            err_console.print(which, highlight=False)
        if preprocess and not static and budget is None:
            raise UsageError("--preprocess says how calibration and evaluation images are preprocessed; "
                             f"{'--dynamic' if dynamic else '--fp16'} without --max-drop reads no images")
        calibration = None
        if static:
            if calib_source is None:
                raise UsageError("static int8 needs calibration images: pass --calib DIR (or --data DIR); or use "
                                 "--dynamic, which needs none")
            calibration = calibration_set(model, calib_source, CalibrationNeed(count=calib_size), task=task,
                                          task_options=options, input_shape=shape, preprocessing=preprocess)
            warn_if_guessed(calibration.preprocessing, model, preprocess)
        if preprocess:
            options["preprocessing"] = preprocess
        report = None
        if budget is not None and nncf:
            from ..evaluate import build_task
            from ..quantize.validation import SessionValidator

            task_options = dict(options, **({"input_size": (shape[2], shape[3])} if shape and len(shape) == 4
                                            else {}))
            if (task or "fidelity") == "fidelity":
                task_options.setdefault("reference_model", str(model))
            validation = SessionValidator(build_task(task or "fidelity", model, **task_options), evaluation)
            result, report = nncf_with_accuracy_control(
                model, output, config, calibration, validation, max_drop=budget, max_steps=max_steps,
                probe=not no_probe, probe_shape=probe_at,
                evaluated_on=f"{len(evaluation)} image(s) of {evaluation.root}")
        elif budget is not None:
            validate, metric = task_validator(model, task or "fidelity", evaluation, input_shape=shape,
                                              task_options=options)

            def on_step(step) -> None:
                err_console.print(f"step {step.step}: {len(step.kept_float)} layer(s) in float "
                                  f"({step.added or 'all quantized'}): {step.metric:.4f} "
                                  f"(drop {budget.describe(step.drop)})")

            result, report = quantize_with_accuracy_control(
                model, output, config, calibration, validate, max_drop=budget, max_steps=max_steps, metric=metric,
                probe=not no_probe, probe_shape=probe_at, on_step=on_step,
                evaluated_on=f"{len(evaluation)} image(s) of {evaluation.root}", weighting=fallback)
        else:
            result = quantize(model, output, config, calibration=calibration, probe=not no_probe,
                              probe_shape=probe_at)
        if as_json:
            print_json("quant", result.to_dict())
            return
        _print_result(result, report)
