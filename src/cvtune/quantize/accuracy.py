"""Accuracy-aware int8: quantize everything, and if the metric drops more than the budget, keep the most harmful
layers in float one at a time until it is within budget, or report that no tried configuration is, with the
closest one.

Which layer hurts most is measured end to end with the user's own metric, not guessed from weights: quantize only
half of the still-quantized layers (the rest in float), score it, and descend into the half that loses more, a
group test that needs about log2(layers) evaluations per layer found. Per-layer activation error (float vs QDQ
tensors) was tried first and misleads on PP-OCRv4 det: relative errors on near-zero tensors (SE-block pooling)
dominate, while the layer that breaks the model (the first hardswish Mul) shows a modest local error.

`weighting="latency"` ranks differently: what matters is accuracy per millisecond. Every quantized node's gain
(the search score recovered when only it goes back to float, on a cheap graph edit of the int8 model) and its
saving (float minus int8 kernel time plus the conversions around it, from ONNX Runtime's profiler: quantize.latency)
are measured; the layer with the most gain per millisecond of lost saving goes to float first (a layer int8 does
not speed up is free to keep in float). After each step the best few candidates are measured again against the new
model and re-ranked.
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
from .graph import with_float_layers
from .result import output_fidelity
from .static import PreparedModel, prepare_float, quantize_static_model

WEIGHTINGS = ("accuracy", "latency")


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
class LayerRank:
    """One quantized node as the latency-weighted fallback measured it: the search score it recovers when kept in
    float (gain), the milliseconds int8 saves on it (saving; None when the profiler did not see it), and where it
    sits (first, last, depthwise; '' otherwise)."""

    name: str
    op_type: str
    kind: str
    gain: float
    saving_ms: float | None

    def priority(self, floor_ms: float) -> float:
        return rank_priority(self.gain, self.saving_ms, floor_ms)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op_type": self.op_type, "kind": self.kind, "gain": self.gain,
                "saving_ms": None if self.saving_ms is None else round(self.saving_ms, 4)}


def rank_priority(gain: float, saving_ms: float | None, floor_ms: float) -> float:
    """Accuracy recovered per millisecond given up by keeping a layer in float. A layer int8 does not speed up
    costs nothing to keep in float (only `floor_ms` counts); without a measured saving, the gain alone."""
    if saving_ms is None:
        return gain
    return gain / max(saving_ms, floor_ms)


def rank_layers(gains: dict[str, float], savings: dict[str, float] | None = None, *, weighting: str = "latency",
                floor_ms: float = 0.01) -> list[str]:
    """Layers in the order the fallback keeps them in float: by gain ("accuracy"), or by gain per millisecond of
    int8 saving ("latency"). Layers whose float version does not help (gain <= 0) come last, in gain order."""
    if weighting not in WEIGHTINGS:
        raise UsageError(f"unknown fallback weighting '{weighting}'; choose one of: {', '.join(WEIGHTINGS)}")
    helpful = [n for n in gains if gains[n] > 0]
    rest = sorted((n for n in gains if gains[n] <= 0), key=lambda n: -gains[n])
    if weighting == "accuracy" or savings is None:
        return sorted(helpful, key=lambda n: -gains[n]) + rest
    return sorted(helpful, key=lambda n: -rank_priority(gains[n], savings.get(n), floor_ms)) + rest


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
    weighting: str = "accuracy"
    layers: tuple[LayerRank, ...] = ()  # the latency-weighted ranking's measurements (first ranking)

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
                "evaluated_on": self.evaluated_on, "weighting": self.weighting,
                "steps": [s.to_dict() for s in self.steps], "found": [f.to_dict() for f in self.found],
                "layers": [r.to_dict() for r in self.layers]}

    def holding_back(self, n: int = 5) -> list[LayerRank]:
        """The layers whose quantization costs the most search score (from the ranking), most harmful first."""
        return sorted(self.layers, key=lambda r: -r.gain)[:n]


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
    search: Callable[[Path], float] | None = None, evaluated_on: str = "", weighting: str = "accuracy",
    savings: dict[str, float] | None = None, rerank: int = 4, search_samples: int = 4,
) -> tuple[Any, AccuracyReport]:
    """Static int8 within the `max_drop` Budget of the float model's `validate(path)` score (higher is better;
    the library owns the loop): `Budget.parse("1%")` is relative to the float score, `Budget.parse("0.01abs")`
    absolute in metric units (a string is parsed the same way). Keeps at most `max_steps` layers in float. The
    group test that finds the next layer scores candidates with `search(path)` (higher is better; only its
    ordering matters), by default the cosine of the outputs against the float model on a few calibration inputs,
    which is much cheaper than a task metric. `evaluated_on` says what `validate` scores, for the report.
    `weighting="latency"` keeps in float first the layers with the most search score per millisecond of int8
    saving (measured with ORT's profiler, or given as `savings`: layer name -> ms), re-measuring the best `rerank`
    candidates after each step; the search scores on `search_samples` calibration inputs.
    Returns (QuantResult of the chosen configuration, AccuracyReport of every step)."""
    if not isinstance(config, StaticConfig):
        raise UsageError("accuracy-aware mode (a max drop) works with static int8 only")
    budget = Budget.parse(max_drop) if isinstance(max_drop, str) else max_drop
    if not isinstance(budget, Budget):
        raise UsageError(f"max_drop takes a Budget, e.g. Budget.parse('1%') (relative) or Budget.parse('0.01abs') "
                         f"(absolute) (got {max_drop!r})")
    if max_steps < 0:
        raise UsageError(f"max_steps must be >= 0 (got {max_steps})")
    if weighting not in WEIGHTINGS:
        raise UsageError(f"unknown fallback weighting '{weighting}'; choose one of: {', '.join(WEIGHTINGS)}")
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
            samples = calibration.head(search_samples)

            def search(path: Path) -> float:
                return float(output_fidelity(prepared.path, path, samples)["cosine_mean"])

        step = attempt(tuple(config.exclude), None)
        found: list[HarmfulLayer] = []
        ranking: tuple[LayerRank, ...] = ()
        if weighting == "latency" and not budget.allows(baseline, step.metric) and max_steps:
            ranking, probes = _latency_weighted(prepared, config, calibration, workdir, cache, steps, attempt, search,
                                                budget, baseline, max_steps, savings, rerank, found)
        elif not budget.allows(baseline, step.metric) and max_steps:
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
                                probes, evaluated_on, weighting, ranking)
        notes.append(report.summary())
        produced = workdir / f"step{chosen.step}.onnx"
        final = config.with_exclude(chosen.kept_float)
        result = finalize(source, produced, output, final, notes, calibration=calibration,
                          details={"settings": final.resolved().to_dict(),
                                   "quantized_nodes": len(set(prepared.quantizable) - set(chosen.kept_float))},
                          probe=probe, probe_shape=probe_shape, probe_runtimes_=runtimes,
                          accuracy=report.to_dict(), started=started)
    return result, report


WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def layer_kinds(model: onnx.ModelProto, names: list[str]) -> dict[str, str]:
    """'first' (reads the model input), 'last' (writes a model output), 'depthwise' (group == channels) or ''."""
    graph = model.graph
    inputs = {i.name for i in graph.input}
    outputs = {o.name for o in graph.output}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def reaches(tensor: str, targets: set[str], forward: bool, depth: int = 3) -> bool:
        if tensor in targets:
            return True
        if depth == 0:
            return False
        if forward:
            return any(reaches(o, targets, True, depth - 1) for n in consumers.get(tensor, [])
                       if n.op_type not in WEIGHTED for o in n.output)
        node = producer.get(tensor)
        return node is not None and node.op_type not in WEIGHTED and \
            any(reaches(i, targets, False, depth - 1) for i in node.input[:1])

    inits = {t.name: t for t in graph.initializer}
    kinds = {}
    for node in graph.node:
        if node.name not in names:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        weight = inits.get(node.input[1]) if len(node.input) > 1 else None
        if reaches(node.input[0], inputs, False):
            kinds[node.name] = "first"
        elif reaches(node.output[0], outputs, True):
            kinds[node.name] = "last"
        elif node.op_type == "Conv" and weight is not None and group > 1 and weight.dims[1] == 1:
            kinds[node.name] = "depthwise"
        else:
            kinds[node.name] = ""
    return kinds



def _latency_weighted(prepared: PreparedModel, config: StaticConfig, calibration: CalibrationSet, workdir: Path,
                      cache: Path, steps: list[AccuracyStep], attempt: Callable, search: Callable[[Path], float],
                      budget: Budget, baseline: float, max_steps: int, savings: dict[str, float] | None,
                      rerank: int, found: list[HarmfulLayer]) -> tuple[tuple[LayerRank, ...], int]:
    """The latency-weighted loop (see the module docstring): measure every weighted layer's gain and saving, keep
    the best gain per millisecond in float, re-rank the next few, until within budget or `max_steps`. Appends the
    layers it keeps to `found`; returns (the first ranking, search evaluations)."""
    from .latency import layer_costs

    float_proto = onnx.load(str(prepared.path))
    base = workdir / "rank_base_qdq.onnx"
    quantize_static_model(prepared, base, calibration, dataclasses.replace(config, format="qdq"), cache=cache,
                          extra={"QDQKeepRemovableActivations": True})
    base_proto = onnx.load(str(base))
    kept = tuple(config.exclude)
    # every node int8 reaches, not only weighted layers: on PP-OCRv4 det the harmful one is a hardswish Mul
    candidates = [n for n in quantized_nodes(base) if n not in kept]
    op_types = {n.name: n.op_type for n in float_proto.graph.node}
    kinds = layer_kinds(float_proto, candidates)
    if savings is None:
        costs = layer_costs(prepared.path, workdir / "step0.onnx", calibration.head(1)[0], candidates)
        savings = {n: c.saving_ms for n, c in costs.items()}
    total = sum(max(v, 0.0) for v in savings.values())
    floor = max(total * 0.002, 1e-3)  # 0.2% of the int8 saving: below that, keeping a layer in float is free
    evaluations = 0

    def gain(name: str, kept: tuple[str, ...], current: float) -> float:
        nonlocal evaluations
        path = workdir / "rank.onnx"
        onnx.save(with_float_layers(base_proto, float_proto, {*kept, name}), str(path))
        evaluations += 1
        return search(path) - current

    def current_score(kept: tuple[str, ...]) -> float:
        path = workdir / "rank.onnx"
        onnx.save(with_float_layers(base_proto, float_proto, set(kept)), str(path))
        return search(path)

    current = current_score(kept)
    gains = {n: gain(n, kept, current) for n in candidates}
    first = tuple(LayerRank(n, op_types.get(n, "?"), kinds.get(n, ""), gains[n], savings.get(n)) for n in candidates)
    remaining = list(candidates)
    step = steps[-1]
    while remaining and len(steps) <= max_steps and not budget.allows(baseline, step.metric):
        order = rank_layers({n: gains[n] for n in remaining}, savings, weighting="latency", floor_ms=floor)
        shortlist = order[:max(rerank, 1)]
        if len(steps) > 1:  # the model changed since these gains were measured: measure the best few again
            current = current_score(kept)
            for n in shortlist:
                gains[n] = gain(n, kept, current)
            order = rank_layers({n: gains[n] for n in shortlist}, savings, weighting="latency", floor_ms=floor)
        name = order[0]
        found.append(HarmfulLayer(name, op_types.get(name, "?"), gains[name], evaluations))
        remaining.remove(name)
        kept = (*kept, name)
        step = attempt(kept, name)
    return first, evaluations


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


def nncf_with_accuracy_control(
    model: str | os.PathLike[str], output: str | os.PathLike[str], config: Any, calibration: CalibrationSet,
    validation: Any, *, max_drop: Budget | str, max_steps: int = 8, probe: bool = True,
    probe_shape: tuple[int, ...] | None = None, evaluated_on: str = "",
) -> tuple[Any, dict[str, Any]]:
    """NNCF's own accuracy-aware loop (`nncf.quantize_with_accuracy_control`) on the OpenVINO model, judged by
    `validation` (a quantize.validation Validator: the task metric on held-out labelled images), the alternative
    to cvtune's loop. Writes an OpenVINO IR (`output` .xml + .bin + sidecar). Returns (QuantResult, a summary
    dict with the float and int8 metric and whether the budget held, re-measured here on the written IR)."""
    from ..runtimes import make_runtime
    from .api import finalize_ir
    from .config import NncfConfig
    from .nncf_ov import quantize_openvino

    if not isinstance(config, NncfConfig):
        raise UsageError("NNCF accuracy control takes an NncfConfig")
    budget = Budget.parse(max_drop) if isinstance(max_drop, str) else max_drop
    started = time.perf_counter()
    source, output = check_output(model, output, ".xml")
    session = make_runtime("ort").open(source)
    try:
        baseline = float(validation(session))
    finally:
        session.close()
    with tempfile.TemporaryDirectory(prefix="cvtune-quantize-") as tmp:
        produced = Path(tmp) / "quantized.xml"
        done = quantize_openvino(source, produced, calibration, preset=config.preset,
                                 fast_bias_correction=config.fast_bias_correction, ignored=config.ignored,
                                 validation=validation, max_drop=budget, max_steps=max_steps)
        session = make_runtime("openvino").open(produced)
        try:
            value = float(validation(session))
        finally:
            session.close()
        summary = {"metric": getattr(validation, "metric", "metric"), "baseline": baseline, "value": value,
                   "drop": budget.drop(baseline, value), "max_drop": budget.to_dict(),
                   "max_drop_text": budget.describe(), "met": budget.allows(baseline, value),
                   "evaluated_on": evaluated_on, "by": "nncf.quantize_with_accuracy_control",
                   "summary": (f"{'within' if budget.allows(baseline, value) else 'NOT within'} budget: "
                               f"{getattr(validation, 'metric', 'metric')} {value:.4f} vs float {baseline:.4f} "
                               f"(drop {budget.describe(budget.drop(baseline, value))}, budget "
                               f"{budget.describe()})")}
        notes = [*done.notes, summary["summary"]]
        result = finalize_ir(source, produced, output, config, notes, calibration=calibration,
                             details={"settings": {**config.to_dict(), **done.settings}}, probe=probe,
                             probe_shape=probe_shape, accuracy=summary, started=started)
    return result, summary
