"""Per-technique findings computed from the trials: compare candidates that differ in ONE setting only (same
everything else) and summarize the speed ratio and metric change, e.g. "int8-qoperator was 1.30x slower than
fp32 on ONNX Runtime (3 pairs)". The technique axes come from the pass registry (one per slot), so a new pass
gets findings without a change here. Nothing here is assumed: no pair measured, no finding."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ..passes import slots
from ..search.records import Trial

FEED_AXES = ("runtime", "threads", "input_size", "input_scale", "batch")
RUNTIME_CONTEXT = ("threads",)  # axes whose effect is reported per runtime (passes are too)


def runtime_name(rt: dict[str, Any]) -> str:
    """A runtime's settings (without threads) in words: 'OpenCV new engine', 'ONNX Runtime'."""
    if rt.get("runtime") == "opencv":
        return f"OpenCV {rt.get('engine', 'auto')} engine" + (f" ({rt['target']})" if rt.get("target", "cpu") != "cpu"
                                                               else "")
    if rt.get("runtime") == "ort":
        return "ONNX Runtime" + (f" ({rt['provider']})" if rt.get("provider", "cpu") != "cpu" else "")
    if rt.get("runtime") == "openvino":
        return f"OpenVINO ({rt.get('device', 'CPU')}, {rt.get('hint', 'latency')} hint)"
    return str(rt.get("runtime"))


def _axes(trial: Trial) -> dict[str, Any]:
    cand = trial.candidate
    rt = cand.runtime.to_dict()
    threads = rt.pop("threads", None)
    axes: dict[str, Any] = {"runtime": runtime_name(rt), "threads": threads or 0, "input_size": cand.input_size,
                            "input_scale": cand.input_scale, "batch": cand.batch, "instances": cand.instances,
                            "debug": cand.debug}
    for slot in slots():
        axes[f"pass:{slot}"] = cand.pass_in(slot)
    return axes


def _value_name(axis: str, value: Any, facts: dict[str, Any]) -> str:
    if axis.startswith("pass:"):
        return slots()[axis[5:]][0].off_label if value is None else value.describe()
    if axis == "threads":
        return f"{value} thread{'s' if value != 1 else ''}" if value else "default threads"
    if axis == "input_size":
        if value is None:
            rep = facts.get("representative_size")
            return "the task's own resizing" + (f" (~{rep[0]}x{rep[1]})" if rep else "")
        return f"input {value[0]}x{value[1]}"
    if axis == "input_scale":
        return f"resolution scale {value:g}" if value != 1.0 else "the task's own resolution"
    if axis == "batch":
        return f"batch {value}"
    return str(value)


@dataclass(frozen=True)
class Finding:
    axis: str
    text: str
    speed_ratio: float  # >1: the value is faster than the reference
    metric_delta: float | None
    pairs: int

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "text": self.text, "speed_ratio": self.speed_ratio,
                "metric_delta": self.metric_delta, "pairs": self.pairs}


def _reference(axis: str, values: set) -> Any:
    if axis == "runtime":
        return next((v for v in ("OpenCV new engine", "OpenCV auto engine", "OpenCV classic engine") if v in values),
                    None)
    if axis == "threads":
        return min(values) if values else None
    return {"input_scale": 1.0, "batch": 1}.get(axis)  # input_size and every pass slot: None (as given)


def compute_findings(trials: list[Trial], *, facts: dict[str, Any] | None = None,
                     metric_name: str = "metric") -> list[Finding]:
    """Findings from successful trials (one per candidate; see RunData.best_rows)."""
    facts = facts or {}
    ok = [t for t in trials if t.ok and t.timing is not None and not t.candidate.debug]
    described = [(t, _axes(t)) for t in ok]
    findings: list[Finding] = []
    for axis in (*FEED_AXES, *(f"pass:{slot}" for slot in slots())):
        values = {a[axis] for _, a in described}
        if len(values) < 2:
            continue
        ref = _reference(axis, values)
        if ref not in values:
            continue
        groups: dict[tuple, dict[Any, Trial]] = defaultdict(dict)
        for trial, a in described:
            rest = tuple(sorted((k, str(v)) for k, v in a.items() if k != axis))
            groups[rest][a[axis]] = trial
        per_value: dict[tuple[Any, str], list[tuple[float, float | None]]] = defaultdict(list)
        for members in groups.values():
            if ref not in members:
                continue
            base = members[ref]
            for value, trial in members.items():
                if value == ref:
                    continue
                context = _axes(trial)["runtime"] if axis.startswith("pass:") or axis in RUNTIME_CONTEXT else ""
                delta = None if trial.metric is None or base.metric is None else \
                    trial.metric.value - base.metric.value
                per_value[(value, context)].append((base.timing.p50_ms / trial.timing.p50_ms, delta))  # type: ignore
        for (value, context), pairs in sorted(per_value.items(), key=lambda kv: str(kv[0])):
            ratio = statistics.median(p for p, _ in pairs)
            deltas = [d for _, d in pairs if d is not None]
            delta = statistics.median(deltas) if deltas else None
            speed = f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
            text = f"{_value_name(axis, value, facts)} was {speed} than {_value_name(axis, ref, facts)}"
            if context:
                text += f" on {context}"
            if delta is not None:
                text += f", {metric_name} {delta:+.4f}"
            text += f" (median of {len(pairs)} pair{'s' if len(pairs) != 1 else ''})"
            findings.append(Finding(axis, text, ratio, delta, len(pairs)))
    return findings


def failure_findings(trials: list[Trial]) -> list[str]:
    """What could not run, grouped by reason (probe rule-outs, crashes, build failures)."""
    reasons: dict[str, list[str]] = defaultdict(list)
    for trial in trials:
        if not trial.ok:
            reasons[(trial.error or "unknown")[:200]].append(trial.label)
    lines = []
    for reason, labels in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
        verb = "ruled out" if "probe" in reason else "failed"
        lines.append(f"{len(labels)} candidate{'s' if len(labels) != 1 else ''} {verb}: {reason} (e.g. {labels[0]})")
    return lines
