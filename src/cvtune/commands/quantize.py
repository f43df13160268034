"""`cvtune quantize MODEL -o OUT`: int8 (static/dynamic) or fp16, optionally accuracy-aware, with a probe of which
runtimes load the result and a `<OUT stem>.quant.json` sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ..console import console, err_console
from ..errors import UsageError
from ..model import parse_shape


def _print_result(result, report) -> None:
    mb = 1024 * 1024
    settings = result.settings
    what = {"static": f"static int8 {settings.get('format')} "
                      f"{'per-channel' if settings.get('per_channel') else 'per-tensor'}, "
                      f"{settings.get('calibrate')} calibration",
            "dynamic": "dynamic int8", "fp16": "fp16"}[result.method]
    console.print(f"wrote {result.output} ({what}): {result.output_bytes / mb:.2f} MB = "
                  f"{result.size_ratio:.1%} of {result.source_bytes / mb:.2f} MB; details in {result.sidecar}")
    fid = result.fidelity or {}
    if fid.get("cosine_min") is not None:
        console.print(f"output cosine vs float on {fid['inputs']} input(s) from {fid.get('inputs_from')}: "
                      f"mean {fid['cosine_mean']:.5f}, min {fid['cosine_min']:.5f}")
    for note in result.notes:
        console.print(f"  - {note}", highlight=False)
    if report is not None:
        table = Table(title=f"accuracy-aware steps ({report.metric}, float {report.baseline:.4f}, "
                            f"budget {report.max_drop:.4f})")
        for col in ("step", "kept in float", "added", "metric", "drop", "size MB", "s"):
            table.add_column(col)
        for s in report.steps:
            mark = " *" if s.step == report.chosen else ""
            table.add_row(f"{s.step}{mark}", str(len(s.kept_float)), s.added or "-", f"{s.metric:.4f}",
                          f"{s.drop:+.4f}", f"{s.size_bytes / mb:.2f}", f"{s.seconds:.1f}")
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


def register(app: typer.Typer) -> None:
    from ..quantize.config import CALIBRATIONS, FORMATS, QTYPES

    @app.command("quantize")
    def quantize_cmd(
        model: Path = typer.Argument(..., help="Float32 ONNX model (never modified)."),
        output: Path = typer.Option(..., "--output", "-o", help="Where to write the quantized .onnx (a "
                                    "<name>.quant.json sidecar is written next to it)."),
        fmt: str = typer.Option("qdq", "--format", help=f"int8 format: {', '.join(FORMATS)}."),
        per_channel: bool = typer.Option(False, "--per-channel", help="Per-channel weight scales."),
        calibrate: str = typer.Option("minmax", "--calibrate", help=f"Calibration: {', '.join(CALIBRATIONS)}."),
        calib: Path = typer.Option(None, "--calib", help="Folder of calibration images (like the ones the model "
                                   "will see)."),
        calib_size: int = typer.Option(64, "--calib-size", help="Calibration images to use (spread over the "
                                       "folder)."),
        activation_type: str = typer.Option(None, "--activation-type", help=f"{', '.join(QTYPES)} (default: s8 "
                                            "for QDQ, u8 for QOperator)."),
        weight_type: str = typer.Option("s8", "--weight-type", help=f"{', '.join(QTYPES)}."),
        reduce_range: bool = typer.Option(None, "--reduce-range/--no-reduce-range", help="7-bit weights (default: "
                                          "only for u8 activations on x86 without VNNI)."),
        input_shape: str = typer.Option(None, "--input-shape", help="Fix dynamic dims and simplify first, e.g. "
                                        "1x3x48x192 (OpenCV's classic engine needs it for models with Shape ops)."),
        exclude: list[str] = typer.Option(None, "--exclude", help="Node name to keep in float (repeatable)."),
        dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic int8 (MatMul/Gemm weights; no calibration)."),
        fp16: bool = typer.Option(False, "--fp16", help="fp16 weights and compute, float32 inputs/outputs kept."),
        fp16_fallback: bool = typer.Option(False, "--fp16-fallback", help="Write the fp16 model even if ONNX "
                                           "Runtime here has no fp16 kernel for some ops (they run in fp32)."),
        max_drop: str = typer.Option(None, "--max-drop", help="Accuracy budget, e.g. 1% (absolute drop of the "
                                     "metric): keep the most harmful layers in float until it holds."),
        task: str = typer.Option(None, "--task", help="Task whose metric --max-drop uses (textdet, ocr, "
                                 "classify, ...); default: fidelity to the float model."),
        data: Path = typer.Option(None, "--data", help="Evaluation dataset for --max-drop (also the calibration "
                                  "source, split off, when --calib is not given)."),
        max_steps: int = typer.Option(8, "--max-steps", help="Most layers to try keeping in float."),
        no_probe: bool = typer.Option(False, "--no-probe", help="Skip probing which runtimes load the result."),
        probe_shape: str = typer.Option(None, "--probe-shape", help="Input shape for the probe (default: the "
                                        "model's default)."),
        as_json: bool = typer.Option(False, "--json", help="Print the sidecar JSON on stdout."),
    ) -> None:
        """Quantize a model to int8 or fp16 with ONNX tooling, calibrated on your images; check which runtimes
        and engines load the result; optionally keep layers in float until an accuracy budget holds."""
        from ..quantize import (
            DynamicConfig,
            Fp16Config,
            StaticConfig,
            load_calibration,
            parse_drop,
            quantize,
            quantize_with_accuracy_control,
        )
        from ..quantize.accuracy import task_validator

        if dynamic and fp16:
            raise UsageError("choose one of --dynamic and --fp16")
        budget = parse_drop(max_drop) if max_drop is not None else None
        shape = parse_shape(input_shape) if input_shape else None
        probe_at = parse_shape(probe_shape) if probe_shape else None
        excluded = tuple(exclude or ())
        if fp16:
            config = Fp16Config(exclude=excluded, allow_fp32_kernels=fp16_fallback)
        elif dynamic:
            config = DynamicConfig(weight_type=weight_type, per_channel=per_channel,
                                   reduce_range=bool(reduce_range), exclude=excluded)
        else:
            config = StaticConfig(format=fmt, per_channel=per_channel, calibrate=calibrate,
                                  activation_type=activation_type, weight_type=weight_type,
                                  reduce_range=reduce_range, input_shape=shape, exclude=excluded)
        if max_drop is not None and not isinstance(config, StaticConfig):
            raise UsageError("--max-drop works with static int8 only (not with --dynamic or --fp16)")
        if task and max_drop is None:
            raise UsageError("--task is used with --max-drop; add --max-drop 1% (or drop --task)")
        if task and data is None:
            raise UsageError(f"--task {task} needs --data DIR with labels to score on")
        dataset = calib_data = None
        if data is not None:
            from ..evaluate import load_eval_dataset

            dataset = load_eval_dataset(data)
            if calib is None and isinstance(config, StaticConfig):
                calib_data, dataset = dataset.split(0.3, seed=0)
        calibration = None
        if isinstance(config, StaticConfig):
            source = calib if calib is not None else calib_data
            if source is None:
                raise UsageError("static int8 needs calibration images: pass --calib DIR (or --data DIR); or use "
                                 "--dynamic, which needs none")
            calibration = load_calibration(model, source, size=calib_size, task=task, input_shape=shape)
        report = None
        if budget is not None:
            eval_data = dataset if dataset is not None else str(calib)
            validate, metric = task_validator(model, task or "fidelity", eval_data, input_shape=shape)

            def on_step(step) -> None:
                err_console.print(f"step {step.step}: {len(step.kept_float)} layer(s) in float "
                                  f"({step.added or 'all quantized'}): {step.metric:.4f} (drop {step.drop:+.4f})")

            result, report = quantize_with_accuracy_control(
                model, output, config, calibration, validate, max_drop=budget, max_steps=max_steps, metric=metric,
                probe=not no_probe, probe_shape=probe_at, on_step=on_step)
        else:
            result = quantize(model, output, config, calibration=calibration, probe=not no_probe,
                              probe_shape=probe_at)
        if as_json:
            print(json.dumps(result.to_dict(), indent=2, default=str))
            return
        _print_result(result, report)
