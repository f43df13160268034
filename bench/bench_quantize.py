"""Quantization benchmark: for the zoo's text detector and recognizer on a generated text set, every precision
(fp32, fp16, int8 QDQ / QOperator, per-tensor / per-channel, accuracy-aware int8) with its file size, latency on
each runtime/engine that loads it (OpenCV new, classic, ONNX Runtime) and the task metric, as ratios against fp32
measured in the same run. Ends with a plain statement of which combinations are faster than fp32 on this CPU.

Numbers from a shared, busy machine are noisy: read ratios, not milliseconds, and rerun before trusting a 10% gap.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rich.table import Table

from cvtune import zoo
from cvtune.bench import BenchSettings, measure
from cvtune.budget import Budget
from cvtune.console import console
from cvtune.data.calibration import CalibrationNeed, calibration_set
from cvtune.data.loaders import load_dataset
from cvtune.data.synth import SynthConfig, generate_text_set
from cvtune.errors import CvtuneError
from cvtune.probe import probe_runtimes
from cvtune.quantize import (
    Fp16Config,
    StaticConfig,
    quantize,
    quantize_with_accuracy_control,
)
from cvtune.quantize.accuracy import task_validator
from cvtune.runtimes import make_runtime

# (zoo model, task, synth-text subfolder, benchmark input shape, evaluation samples)
CASES = [("ppocr-det", "textdet", "textdet", (1, 3, 640, 640), 12), ("ppocr-rec", "ocr", "ocr", (1, 3, 48, 320), 48)]
VARIANTS = [
    ("fp16", Fp16Config(allow_fp32_kernels=True)),
    ("int8 QDQ per-tensor", StaticConfig(format="qdq")),
    ("int8 QDQ per-channel", StaticConfig(format="qdq", per_channel=True)),
    ("int8 QOperator per-tensor", StaticConfig(format="qoperator")),
    ("int8 QOperator per-channel", StaticConfig(format="qoperator", per_channel=True)),
]
AWARE = ("int8 accuracy-aware (QDQ per-channel, 1%)", StaticConfig(format="qdq", per_channel=True),
         Budget.parse("1%"))
SETTINGS = BenchSettings(warmup=2, min_runs=10, min_time_s=2.0)
COLUMNS = ["opencv:new/cpu", "opencv:classic/cpu", "ort:cpu"]


class Row:
    """One variant's measurements (a plain class: run_all.py loads this file without registering a module, which
    dataclasses need)."""

    def __init__(self, label: str, path: Path, size: int, metric: float | None = None,
                 latency: dict[str, float | str] | None = None, note: str = "") -> None:
        self.label, self.path, self.size, self.metric = label, path, size, metric
        self.latency = latency or {}  # runtime label -> p50 ms, or why it has none
        self.note = note


def latencies(path: Path, shape: tuple[int, ...]) -> dict[str, float | str]:
    """p50 per runtime that the probe says loads the model; the probe's error for the others."""
    out: dict[str, float | str] = {}
    for probe in probe_runtimes(path, None, shape):
        if not probe.ok:
            out[probe.label] = "does not load: " + probe.error[:60]
            continue
        runtime = make_runtime(probe.runtime.pop("runtime"), **probe.runtime)
        try:
            out[probe.label] = measure(path, runtime, shape, settings=SETTINGS).p50_ms
        except CvtuneError as exc:
            out[probe.label] = f"failed: {str(exc)[:60]}"
    return out


def cell(value: float | str, base: float | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(base, float):
        return f"{value:.1f} ms ({value / base:.2f}x)"
    return f"{value:.1f} ms"


def print_case(name: str, metric: str, rows: list[Row], shape: tuple[int, ...]) -> None:
    base = rows[0]
    table = Table(title=f"{name} at {'x'.join(map(str, shape))}: ratios against fp32 in this run")
    for col in ("variant", "size", metric, *COLUMNS):
        table.add_column(col)
    for row in rows:
        size = f"{row.size / 2**20:.2f} MB ({row.size / base.size:.0%})"
        if row.metric is None:
            score = "-"
        else:
            score = f"{row.metric:.4f}" + (f" ({row.metric - base.metric:+.4f})" if base.metric is not None else "")
        table.add_row(row.label, size, score, *(cell(row.latency.get(c, "-"), base.latency.get(c, "-"))
                                                for c in COLUMNS))
    console.print(table)
    faster, slower = [], []
    for row in rows[1:]:
        for col in COLUMNS:
            value, ref = row.latency.get(col), base.latency.get(col)
            if isinstance(value, float) and isinstance(ref, float):
                (faster if value < 0.95 * ref else slower).append(f"{row.label} on {col} ({value / ref:.2f}x)")
    console.print(f"[bold]{name}: faster than fp32 on the same runtime (< 0.95x):[/] {', '.join(faster) or 'none'}")
    console.print(f"[bold]{name}: not faster:[/] {', '.join(slower) or 'none'}")
    for row in rows:
        if row.note:
            console.print(f"  {row.label}: {row.note}", highlight=False)


def run_case(name: str, task: str, data: Path, shape: tuple[int, ...], n_eval: int, work: Path) -> None:
    source = zoo.path(name)
    dataset = load_dataset(data)
    calib_data, eval_data = dataset.split(0.3, seed=0)
    eval_data = eval_data.limit(n_eval)
    calibration = calibration_set(source, calib_data, CalibrationNeed(count=16), task=task)
    validate, metric = task_validator(source, task, eval_data)
    console.print(f"{name}: {len(calibration)} calibration images, {len(eval_data)} evaluation samples", style="dim")
    fp32 = Row("fp32", source, source.stat().st_size, validate(source), latencies(source, shape))
    alt = probe_runtimes(source, [make_runtime("opencv", engine="classic", target="cpu_fp16")], shape)[0]
    if alt.ok:
        fp32.latency["opencv:classic/cpu_fp16"] = measure(source, make_runtime("opencv", engine="classic",
                                                                             target="cpu_fp16"), shape,
                                                          settings=SETTINGS).p50_ms
    fp32.note = "OpenCV DNN_TARGET_CPU_FP16 (runtime-side fp16): " + (
        f"{fp32.latency['opencv:classic/cpu_fp16']:.1f} ms" if alt.ok else f"not available ({alt.error[:90]})")
    rows = [fp32]
    for label, config in VARIANTS:
        out = work / f"{name}-{label.replace(' ', '_')}.onnx"
        started = time.perf_counter()
        try:
            result = quantize(source, out, config, calibration=calibration, probe=False)
        except CvtuneError as exc:
            rows.append(Row(label, source, 0, note=f"not produced: {exc}"))
            continue
        row = Row(label, out, result.output_bytes, validate(out), latencies(out, shape))
        cos = result.fidelity["cosine_mean"]
        row.note = f"built in {time.perf_counter() - started:.0f} s; output cosine vs fp32 {cos:.4f}"
        if config.method == "fp16":
            row.note += "; " + "; ".join(n for n in result.notes if "Cast" in n or "kept in float32" in n)
        rows.append(row)
    label, config, budget = AWARE
    out = work / f"{name}-aware.onnx"
    result, report = quantize_with_accuracy_control(source, out, config, calibration, validate, max_drop=budget,
                                                    max_steps=4, metric=metric, probe=False)
    row = Row(label, out, result.output_bytes, report.best.metric, latencies(out, shape), report.summary())
    row.note += f"; {report.search_evaluations} search evaluations, {result.seconds:.0f} s"
    rows.append(row)
    print_case(name, metric, rows, shape)


def main() -> None:
    console.print("Shared 2-core machine: latencies are noisy, compare ratios within one table.", style="dim")
    with tempfile.TemporaryDirectory(prefix="cvtune-bench-quantize-") as tmp:
        work = Path(tmp)
        generate_text_set(work / "synth", SynthConfig(n=40, seed=0))
        for name, task, sub, shape, n_eval in CASES:
            run_case(name, task, work / "synth" / sub, shape, n_eval, work)


if __name__ == "__main__":
    main()
