"""Accuracy-aware int8: quantize everything, and if the metric drops more than the budget, keep the most harmful
layers in float one at a time until it is within budget, or report that no tried configuration is, with the
closest one.

Which layer hurts most is measured end to end with the user's own metric, not guessed from weights: quantize only
half of the still-quantized layers (the rest in float), score it, and descend into the half that loses more, a
group test that needs about log2(layers) evaluations per layer found. Per-layer activation error (float vs QDQ
tensors) was tried first and misleads on PP-OCRv4 det: relative errors on near-zero tensors (SE-block pooling)
dominate, while the layer that breaks the model (the first hardswish Mul) shows a modest local error.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from ..budget import Budget
from ..data.calibration import CalibrationSet
from ..errors import UsageError
from ..runtimes import Runtime
from .api import check_output, finalize
from .config import StaticConfig
from .result import output_fidelity
from .static import PreparedModel, prepare_float, quantize_static_model


@dataclass(frozen=True)
class HarmfulLayer:
    """A layer the search found: the search score's drop when it is the only one of its group quantized (an
    estimate; on the search's scale, output cosine by default, not the task metric's)."""

    name: str
    op_type: str
    drop_alone: float
    evaluations: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op_type": self.op_type, "drop_alone": self.drop_alone,
                "evaluations": self.evaluations}


@dataclass(frozen=True)
class AccuracyStep:
    """One configuration tried: the layers kept in float so far, its metric, its drop against the float model in
    the budget's units (a fraction of the baseline for a relative budget, metric units for an absolute one), and
    what it cost."""

    step: int
    kept_float: tuple[str, ...]
    added: str | None
    metric: float
    drop: float
    size_bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "kept_float": list(self.kept_float), "added": self.added, "metric": self.metric,
                "drop": self.drop, "size_bytes": self.size_bytes, "seconds": round(self.seconds, 2)}


@dataclass(frozen=True)
class AccuracyReport:
    metric: str
    baseline: float
    max_drop: Budget
    steps: tuple[AccuracyStep, ...]
    chosen: int
    met: bool
    found: tuple[HarmfulLayer, ...] = ()
    search_evaluations: int = 0
    evaluated_on: str = ""  # what `validate` scored, e.g. "60 images of data/ (evaluation split)"

    @property
    def best(self) -> AccuracyStep:
        return self.steps[self.chosen]

    def summary(self) -> str:
        best, budget = self.best, self.max_drop
        kept = f"{len(best.kept_float)} layer(s) kept in float" if best.kept_float else "every layer quantized"
        if self.met:
            return (f"within budget: {self.metric} {best.metric:.4f} vs float {self.baseline:.4f} "
                    f"(drop {budget.describe(best.drop)} <= {budget.describe()}), {kept}")
        return (f"no tried configuration is within the {budget.describe()} budget ({len(self.steps)} tried, "
                f"{self.search_evaluations} search evaluations); closest: {self.metric} {best.metric:.4f} vs float "
                f"{self.baseline:.4f} (drop {budget.describe(best.drop)}), {kept}")

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "baseline": self.baseline, "max_drop": self.max_drop.to_dict(),
                "max_drop_text": self.max_drop.describe(), "met": self.met, "chosen_step": self.chosen,
                "summary": self.summary(), "search_evaluations": self.search_evaluations,
                "evaluated_on": self.evaluated_on,
                "steps": [s.to_dict() for s in self.steps], "found": [f.to_dict() for f in self.found]}


def quantized_nodes(qdq_model: str | Path) -> list[str]:
    """Names of the nodes of a QDQ model (in graph order) that read a dequantized input: what nodes_to_exclude can
    keep in float (weighted layers, but also Add, Mul, pooling... whose activations were quantized)."""
    graph = onnx.load(str(qdq_model)).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    return [n.name for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(producer.get(i) == "DequantizeLinear" for i in n.input)]


def locate_harmful(candidates: list[str], total_drop: float, drop_with_only: Callable[[list[str]], float]
                   ) -> tuple[str, float, int]:
    """Group test: the candidate whose quantization loses most. `drop_with_only(group)` is the metric drop when only
    `group` (of the candidates) is quantized. Halves are scored one per level, the other half's drop estimated as
    the rest of the group's. Returns (name, estimated drop, evaluations)."""
    group, drop, evaluations = list(candidates), total_drop, 0
    while len(group) > 1:
        left, right = group[: len(group) // 2], group[len(group) // 2:]
        left_drop = drop_with_only(left)
        evaluations += 1
        right_drop = drop - left_drop
        group, drop = (left, left_drop) if left_drop >= right_drop else (right, max(right_drop, 0.0))
    return group[0], drop, evaluations


def quantize_with_accuracy_control(
    model: str | os.PathLike[str], output: str | os.PathLike[str], config: StaticConfig,
    calibration: CalibrationSet, validate: Callable[[Path], float], *, max_drop: Budget | str, max_steps: int = 8,
    metric: str = "metric", probe: bool = True, probe_shape: tuple[int, ...] | None = None,
    runtimes: list[Runtime] | None = None, on_step: Callable[[AccuracyStep], None] | None = None,
    search: Callable[[Path], float] | None = None, evaluated_on: str = "",
) -> tuple[Any, AccuracyReport]:
    """Static int8 within the `max_drop` Budget of the float model's `validate(path)` score (higher is better;
    the library owns the loop): `Budget.parse("1%")` is relative to the float score, `Budget.parse("0.01abs")`
    absolute in metric units (a string is parsed the same way). Keeps at most `max_steps` layers in float. The
    group test that finds the next layer scores candidates with `search(path)` (higher is better; only its
    ordering matters), by default the cosine of the outputs against the float model on a few calibration inputs,
    which is much cheaper than a task metric. `evaluated_on` says what `validate` scores, for the report.
    Returns (QuantResult of the chosen configuration, AccuracyReport of every step)."""
    if not isinstance(config, StaticConfig):
        raise UsageError("accuracy-aware mode (a max drop) works with static int8 only")
    budget = Budget.parse(max_drop) if isinstance(max_drop, str) else max_drop
    if not isinstance(budget, Budget):
        raise UsageError(f"max_drop takes a Budget, e.g. Budget.parse('1%') (relative) or Budget.parse('0.01abs') "
                         f"(absolute) (got {max_drop!r})")
    if max_steps < 0:
        raise UsageError(f"max_steps must be >= 0 (got {max_steps})")
    started = time.perf_counter()
    source, output = check_output(model, output)
    baseline = float(validate(source))
    with tempfile.TemporaryDirectory(prefix="cvtune-quantize-") as tmp:
        workdir = Path(tmp)
        prepared: PreparedModel = prepare_float(source, config, workdir)
        cache = workdir / "ranges.json"
        steps: list[AccuracyStep] = []
        notes: list[str] = list(prepared.notes)
        probes = 0

        def score(kept: tuple[str, ...], path: Path) -> float:
            step_notes = quantize_static_model(prepared, path, calibration, config.with_exclude(kept), cache=cache)
            if not steps:
                notes.extend(step_notes)
            return float(validate(path))

        def attempt(kept: tuple[str, ...], added: str | None) -> AccuracyStep:
            t0 = time.perf_counter()
            path = workdir / f"step{len(steps)}.onnx"
            value = score(kept, path)
            step = AccuracyStep(len(steps), kept, added, value, budget.drop(baseline, value), path.stat().st_size,
                                time.perf_counter() - t0)
            steps.append(step)
            if on_step:
                on_step(step)
            return step

        if search is None:
            samples = calibration.head(4)

            def search(path: Path) -> float:
                return float(output_fidelity(prepared.path, path, samples)["cosine_mean"])

        step = attempt(tuple(config.exclude), None)
        found: list[HarmfulLayer] = []
        if not budget.allows(baseline, step.metric) and max_steps:
            qdq = workdir / "probe_qdq.onnx"
            if config.format == "qdq":
                shutil.copyfile(workdir / "step0.onnx", qdq)
            else:  # node names survive in QDQ; QOperator renames the nodes it replaces
                quantize_static_model(prepared, qdq, calibration, dataclasses.replace(config, format="qdq"),
                                      cache=cache)
            remaining = [n for n in quantized_nodes(qdq) if n not in config.exclude]
            op_types = {n.name: n.op_type for n in onnx.load(str(prepared.path)).graph.node}
            kept = tuple(config.exclude)
            search_base = search(prepared.path)
            while remaining and len(steps) <= max_steps and not budget.allows(baseline, step.metric):

                def drop_with_only(group: list[str], kept: tuple[str, ...] = kept,
                                   remaining: list[str] = remaining) -> float:
                    only = set(group)
                    path = workdir / "search.onnx"
                    quantize_static_model(prepared, path, calibration,
                                          config.with_exclude((*kept, *(n for n in remaining if n not in only))),
                                          cache=cache)
                    return search_base - search(path)

                current = search_base - search(workdir / f"step{step.step}.onnx")
                name, drop_alone, evaluations = locate_harmful(remaining, current, drop_with_only)
                probes += evaluations
                found.append(HarmfulLayer(name, op_types.get(name, "?"), drop_alone, evaluations))
                remaining = [n for n in remaining if n != name]
                kept = (*kept, name)
                step = attempt(kept, name)
        within = [s for s in steps if budget.allows(baseline, s.metric)]
        chosen = within[0] if within else max(steps, key=lambda s: s.metric)
        report = AccuracyReport(metric, baseline, budget, tuple(steps), chosen.step, bool(within), tuple(found),
                                probes, evaluated_on)
        notes.append(report.summary())
        produced = workdir / f"step{chosen.step}.onnx"
        final = config.with_exclude(chosen.kept_float)
        result = finalize(source, produced, output, final, notes, calibration=calibration,
                          details={"settings": final.resolved().to_dict(),
                                   "quantized_nodes": len(set(prepared.quantizable) - set(chosen.kept_float))},
                          probe=probe, probe_shape=probe_shape, probe_runtimes_=runtimes,
                          accuracy=report.to_dict(), started=started)
    return result, report


def task_validator(source: str | os.PathLike[str], task: str, dataset: Any, *,
                   input_shape: tuple[int, ...] | None = None, runtime: Runtime | None = None,
                   task_options: dict[str, Any] | None = None,
                   limit: int | None = None) -> tuple[Callable[[Path], float], str]:
    """(validate(path) -> the task's headline metric on `dataset` (its first `limit` samples), metric name). The
    task is built once for the float model (its preprocessing and zoo defaults, then `task_options`), so
    candidates are scored exactly like the original; task 'fidelity' compares each candidate's outputs with the
    float model's."""
    from ..evaluate import build_task, evaluate, load_eval_dataset
    from ..runtimes import make_runtime

    options: dict[str, Any] = dict(task_options or {})
    if input_shape is not None and len(input_shape) == 4:
        options["input_size"] = (int(input_shape[2]), int(input_shape[3]))
    if task == "fidelity":
        options.setdefault("reference_model", str(source))
    instance = build_task(task, source, **options)
    data = dataset if not isinstance(dataset, str | os.PathLike) else load_eval_dataset(dataset)
    runner = runtime or make_runtime("ort")

    def validate(path: Path) -> float:
        return float(evaluate(path, runner, instance, data, limit=limit, progress=False).value)

    return validate, f"{task} {instance.metric}"
