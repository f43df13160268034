"""Quantization benchmark: for the zoo's text detector and recognizer on a generated text set, in one run: fp32 on
ONNX Runtime, OpenVINO and OpenCV (defaults), and every int8 method: ORT static int8 (per-tensor, per-channel),
+ cross-layer equalization, + bias correction, + per-tensor calibration choice, all of them, the accuracy-only and
the latency-weighted fallback (1% budget on a validation split), NNCF on the OpenVINO model, and NNCF with accuracy
control. Each row: the task metric with its 95% CI on a test split neither calibration nor validation saw, and the
latency at the benchmark shape as a ratio against ORT fp32 and against OpenCV's defaults, measured interleaved
(round after round over every model) in the same run. Ends with the target check: an int8 detector within 1%
relative of fp32's metric and >= 1.8x faster than ORT fp32, or by how much it falls short and which layers hold it
back. Also measures what ORT's own histogram calibrator holds in memory against cvtune's streamed one.

Numbers from a shared, busy machine are noisy: read ratios, not milliseconds.

`--quick` (or CVTUNE_BENCH_QUICK=1, e.g. under `make bench`): 2 fallback steps, 12 validation and 20 test samples,
3 timing rounds (det took 11 minutes on a quiet 2-core machine); `--case ppocr-det` runs one model only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table

from cvtune import zoo
from cvtune.bench import BenchSettings, measure
from cvtune.budget import Budget
from cvtune.console import console
from cvtune.data.calibration import CalibrationNeed, calibration_set
from cvtune.data.loaders import load_dataset
from cvtune.data.synth import SynthConfig, generate_text_set
from cvtune.errors import CvtuneError
from cvtune.evaluate import build_task, evaluate
from cvtune.quantize import StaticConfig, quantize, quantize_with_accuracy_control
from cvtune.quantize.accuracy import nncf_with_accuracy_control
from cvtune.quantize.config import NncfConfig
from cvtune.quantize.validation import SessionValidator, path_scorer
from cvtune.runtimes import make_runtime

BUDGET = Budget.parse("1%")
TARGET_SPEEDUP = 1.8
ROUNDS = 5
SETTINGS = BenchSettings(warmup=2, min_runs=3, min_time_s=0.0)


@dataclass(frozen=True)
class Case:
    name: str
    task: str
    folder: str  # subfolder of the generated text set
    shape: tuple[int, ...]  # benchmark input shape
    calib: int  # calibration images
    val: int  # validation samples (fallbacks, NNCF accuracy control)
    test: int  # test samples (the metric in the table)


CASES = (Case("ppocr-det", "textdet", "textdet", (1, 3, 640, 640), 16, 24, 40),
         Case("ppocr-rec", "ocr", "ocr", (1, 3, 48, 320), 32, 60, 100))

PER_CHANNEL = dict(format="qoperator", per_channel=True)  # the fast int8 format on x86 ORT, per-channel weights
VARIANTS = (
    ("int8 per-tensor", StaticConfig(format="qoperator")),
    ("int8 per-channel (plain)", StaticConfig(**PER_CHANNEL)),
    ("int8 + CLE", StaticConfig(**PER_CHANNEL, cle=True)),
    ("int8 + bias correction", StaticConfig(**PER_CHANNEL, bias_correction=True)),
    ("int8 + auto calibration", StaticConfig(**PER_CHANNEL, calibrate="auto")),
    ("int8 + all three", StaticConfig(**PER_CHANNEL, cle=True, bias_correction=True, calibrate="auto")),
)
FALLBACK_BASE = StaticConfig(**PER_CHANNEL, calibrate="auto")
FALLBACK_STEPS = 4
SEARCH_MAX_SIDE = 480  # the fallbacks rank layers by output cosine on 2 calibration images downscaled to this


@dataclass
class Row:
    label: str
    path: Path
    runtime: str  # registry name: ort, openvino, opencv
    built_s: float = 0.0
    metric: Any = None  # cvtune.tasks.Metrics on the test split
    note: str = ""
    times: list[float] = field(default_factory=list)
    report: Any = None

    @property
    def ms(self) -> float | None:
        return float(np.median(self.times)) if self.times else None


def runtime_of(name: str):
    return make_runtime(name)


def search_fidelity(source: Path, calibration):
    """What the fallbacks rank layers by: output cosine against fp32 on 2 calibration images, downscaled (fully
    convolutional models) so the hundreds of ranking evaluations stay affordable."""
    from cvtune.data.calibration import downscale
    from cvtune.quantize.result import output_fidelity

    samples = [downscale(t, SEARCH_MAX_SIDE, 32) if t.shape[2] > 64 else t for t in calibration.head(2)]

    def search(path: Path) -> float:
        return float(output_fidelity(source, path, samples)["cosine_mean"])

    return search


def build_rows(case: Case, source: Path, work: Path, calibration, validator: SessionValidator) -> list[Row]:
    rows = [Row("fp32", source, "ort"), Row("fp32", source, "openvino"), Row("fp32 (OpenCV defaults)", source,
                                                                             "opencv")]
    validate = path_scorer(validator)

    def add(row: Row) -> None:  # progress on a long run: each method as it is built
        rows.append(row)
        console.print(escape(f"  {case.name}: {row.label} [{row.runtime}] built in {row.built_s:.0f} s"), style="dim",
                      highlight=False)

    search = search_fidelity(source, calibration)
    for label, config in VARIANTS:
        out = work / f"{case.name}-{label.replace(' ', '_').replace('+', 'plus')}.onnx"
        started = time.perf_counter()
        try:
            result = quantize(source, out, config, calibration=calibration, probe=False)
        except CvtuneError as exc:
            add(Row(label, out, "ort", note=f"not produced: {exc}"))
            continue
        notes = [n for n in result.notes if n.startswith(("cross-layer", "bias correction", "activation ranges"))]
        add(Row(label, out, "ort", time.perf_counter() - started,
                        note=f"cosine vs fp32 {result.fidelity['cosine_mean']:.4f}; " + "; ".join(notes)))
    for weighting in ("accuracy", "latency"):
        out = work / f"{case.name}-fallback-{weighting}.onnx"
        started = time.perf_counter()
        result, report = quantize_with_accuracy_control(
            source, out, FALLBACK_BASE, calibration, validate, max_drop=BUDGET, max_steps=FALLBACK_STEPS,
            metric=validator.metric, probe=False, weighting=weighting, search=search,
            evaluated_on=f"{len(validator)} validation samples")
        kept = ", ".join(report.best.kept_float) or "none"
        add(Row(f"int8 fallback ({weighting}-weighted)", out, "ort", time.perf_counter() - started,
                        note=f"{report.summary()}; kept in float: {kept}; {report.search_evaluations} search "
                             f"evaluations", report=report))
    out = work / f"{case.name}-nncf.xml"
    started = time.perf_counter()
    try:
        result = quantize(source, out, NncfConfig(), calibration=calibration, probe=False)
        add(Row("NNCF int8", out, "openvino", time.perf_counter() - started,
                        note=f"cosine vs fp32 {result.fidelity['cosine_mean']:.4f} (OpenVINO)"))
    except CvtuneError as exc:
        add(Row("NNCF int8", out, "openvino", note=f"not produced: {exc}"))
    out = work / f"{case.name}-nncf-ac.xml"
    started = time.perf_counter()
    try:
        result, summary = nncf_with_accuracy_control(source, out, NncfConfig(), calibration, validator,
                                                     max_drop=BUDGET, max_steps=FALLBACK_STEPS, probe=False,
                                                     evaluated_on=f"{len(validator)} validation samples")
        add(Row("NNCF int8 + accuracy control", out, "openvino", time.perf_counter() - started,
                        note=summary["summary"] + " (validation split)"))
    except CvtuneError as exc:
        add(Row("NNCF int8 + accuracy control", out, "openvino", note=f"not produced: {exc}"))
    return rows


def time_rows(rows: list[Row], shape: tuple[int, ...]) -> None:
    """ROUNDS rounds; in each, every model is timed in turn (own child process): ratios within one run."""
    for _ in range(ROUNDS):
        for row in rows:
            if not row.path.is_file() or row.note.startswith("not produced"):
                continue
            try:
                result = measure(row.path, runtime_of(row.runtime), shape, settings=SETTINGS)
                row.times.append(result.p50_ms)
            except CvtuneError as exc:
                row.note += f"; timing failed: {str(exc)[:80]}"


def score_rows(case: Case, rows: list[Row], test) -> None:
    for row in rows:
        if not row.path.is_file() or row.note.startswith("not produced") or row.runtime == "opencv":
            continue
        task = build_task(case.task, zoo.path(case.name))
        row.metric = evaluate(row.path, runtime_of(row.runtime), task, test, progress=False)


def print_case(case: Case, rows: list[Row]) -> list[str]:
    base = next(r for r in rows if r.label == "fp32" and r.runtime == "ort")
    cv = next(r for r in rows if r.runtime == "opencv")
    ref = base.metric.value
    table = Table(title=f"{case.name} ({case.task}, {case.shape[2]}x{case.shape[3]}): metric on {case.test} test "
                        f"samples; latency ratios measured interleaved in this run")
    for col in ("method", "runtime", f"{base.metric.name} (95% CI)", "drop", "p50 ms", "vs ORT fp32",
                "vs OpenCV defaults", "build s"):
        table.add_column(col)
    verdicts = []
    for row in rows:
        if row.metric is not None:
            m = row.metric
            ci = f" ({m.ci_low:.3f}-{m.ci_high:.3f})" if m.ci_low is not None else ""
            score, drop = f"{m.value:.4f}{ci}", BUDGET.describe(BUDGET.drop(ref, m.value))
        else:
            score, drop = "-", "-"
        ms = row.ms
        vs_ort = f"{ms / base.ms:.2f}x ({base.ms / ms:.2f}x faster)" if ms and base.ms else "-"
        vs_cv = f"{ms / cv.ms:.2f}x" if ms and cv.ms else "-"
        table.add_row(row.label, row.runtime, score, drop, f"{ms:.1f}" if ms else "-", vs_ort, vs_cv,
                      f"{row.built_s:.0f}" if row.built_s else "-")
        if row.metric is not None and ms and row.label != "fp32" and "OpenCV" not in row.label:
            speedup = base.ms / ms
            within = BUDGET.allows(ref, row.metric.value)
            verdicts.append((within and speedup >= TARGET_SPEEDUP, speedup, within, row))
    console.print(table)
    for row in rows:
        if row.note:
            console.print(escape(f"  {row.label} [{row.runtime}]: {row.note}"), highlight=False)
    lines = []
    met = [v for v in verdicts if v[0]]
    if met:
        best = max(met, key=lambda v: v[1])
        lines.append(f"{case.name}: TARGET MET by {best[3].label} [{best[3].runtime}]: {best[1]:.2f}x faster than "
                     f"ORT fp32, {best[3].metric.name} drop {BUDGET.describe(BUDGET.drop(ref, best[3].metric.value))}"
                     f" (budget {BUDGET.describe()}); also met by: "
                     + (", ".join(f"{v[3].label} [{v[3].runtime}] {v[1]:.2f}x" for v in met if v is not best)
                        or "nothing else"))
    else:
        within = [v for v in verdicts if v[2]]
        fastest = max(within, key=lambda v: v[1]) if within else None
        lines.append(f"{case.name}: target not met: " + (
            f"the fastest int8 within budget is {fastest[3].label} at {fastest[1]:.2f}x "
            f"({TARGET_SPEEDUP - fastest[1]:.2f}x short)" if fastest else "no int8 method is within budget"))
    aware = next((r.report for r in rows if r.report is not None and r.report.weighting == "latency"), None)
    if aware is not None and aware.layers:
        worst = ", ".join(f"{r.name} ({r.op_type}{' ' + r.kind if r.kind else ''}: gain {r.gain:.4f}, saves "
                          f"{r.saving_ms:.2f} ms)" for r in aware.holding_back(5) if r.saving_ms is not None)
        lines.append(f"{case.name}: layers whose int8 costs the most output fidelity: {worst}")
    for line in lines:
        console.print(f"[bold]{escape(line)}[/]", highlight=False)
    return lines


def calibration_memory(source: Path, images: Path, task: str, size: int = 640) -> str:
    """Peak RSS growth (VmHWM, reset before the measured call) of ORT's own entropy calibrator (quantize_static)
    against cvtune's streamed one, for 1 and 3 images at size x size (ORT's histogram calibrators cannot take the
    detector's usual variable-size inputs at all: they stack every image's activations into one array), each run
    in a fresh process."""
    script = textwrap.dedent("""
        import json, sys
        from cvtune.data.calibration import CalibrationNeed, calibration_set
        from cvtune.quantize import StaticConfig, quantize
        from onnxruntime.quantization import CalibrationMethod, quantize_static
        source, images, task, how, n, out, size = sys.argv[1:8]
        def status(key):
            return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))
        calib = calibration_set(source, images, CalibrationNeed(int(n)), task=task,
                                input_shape=(1, 3, int(size), int(size)))
        calib.head(1)
        open("/proc/self/clear_refs", "w").write("5")
        before = status("VmRSS")
        if how == "ort":
            quantize_static(source, out, calib.reader(), calibrate_method=CalibrationMethod.Entropy)
        else:
            quantize(source, out, StaticConfig(calibrate="entropy"), calibration=calib, probe=False)
        print(json.dumps(status("VmHWM") - before))
    """)
    parts = []
    with tempfile.TemporaryDirectory(prefix="cvtune-bench-mem-") as tmp:
        for how in ("ort", "cvtune"):
            for n in (1, 3):
                out = str(Path(tmp) / f"{how}{n}.onnx")
                done = subprocess.run([sys.executable, "-c", script, str(source), str(images), task, how, str(n), out,
                                       str(size)], capture_output=True, text=True,
                                      env={**os.environ, "OPENCV_LOG_LEVEL": "FATAL"})
                value = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
                parts.append(f"{'ORT entropy calibrator' if how == 'ort' else 'cvtune streamed entropy'} {n} "
                             f"image(s) at {size}x{size}: " + (f"+{value:.0f} MB" if value is not None
                                                                else f"failed ({done.stderr.strip()[-120:]})"))
    return "; ".join(parts)


def run_case(case: Case, synth: Path, work: Path) -> list[str]:
    source = zoo.path(case.name)
    dataset = load_dataset(synth / case.folder)
    calib_part, rest = dataset.split(0.3, seed=0)
    if len(rest) < case.val + case.test:
        raise CvtuneError(f"{case.name}: {len(rest)} samples after calibration, need {case.val + case.test}")
    val = rest.subset(list(range(case.val)))
    test = rest.subset(list(range(case.val, case.val + case.test)))
    calibration = calibration_set(source, calib_part, CalibrationNeed(case.calib), task=case.task)
    validator = SessionValidator(build_task(case.task, source), val)
    console.print(f"{case.name}: {len(calibration)} calibration images, {len(val)} validation and {len(test)} test "
                  f"samples (disjoint)", style="dim")
    rows = build_rows(case, source, work, calibration, validator)
    score_rows(case, rows, test)
    time_rows(rows, case.shape)
    lines = print_case(case, rows)
    if case.task == "textdet":
        line = f"{case.name} calibration memory (peak RSS growth): " + calibration_memory(
            source, synth / case.folder, case.task)
        console.print(escape(line), highlight=False)
        lines.append(line)
    return lines


def quick(case: Case) -> Case:
    """The --quick variant of a case: fewer validation and test samples (a wider CI, the same methods)."""
    return Case(case.name, case.task, case.folder, case.shape, case.calib, min(case.val, 12), min(case.test, 20))


def main(argv: list[str] | None = None) -> None:
    import argparse

    global FALLBACK_STEPS, ROUNDS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer fallback steps, samples and timing rounds")
    parser.add_argument("--case", choices=[c.name for c in CASES], action="append", help="run only this model")
    args = parser.parse_args([] if argv is None else argv)  # run_all calls main() with its own argv
    args.quick = args.quick or os.environ.get("CVTUNE_BENCH_QUICK", "") not in ("", "0")
    cases = [c for c in CASES if not args.case or c.name in args.case]
    if args.quick:
        FALLBACK_STEPS, ROUNDS = 2, 3
        cases = [quick(c) for c in cases]
    console.print("Shared 2-core machine: latencies are noisy; compare ratios within one table.", style="dim")
    with tempfile.TemporaryDirectory(prefix="cvtune-bench-quantize-") as tmp:
        work = Path(tmp)
        generate_text_set(work / "synth", SynthConfig(n=100, seed=0))
        summary = []
        for case in cases:
            started = time.perf_counter()
            summary += run_case(case, work / "synth", work)
            summary.append(f"{case.name}: benchmarked in {time.perf_counter() - started:.0f} s")
    console.print(escape("\n".join(summary)), highlight=False)


if __name__ == "__main__":
    main(sys.argv[1:])
