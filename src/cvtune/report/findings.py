"""Per-technique findings computed from the trials: compare candidates that differ in ONE setting only (same
everything else) and summarize the speed ratio and metric change, e.g. "int8-qoperator was 1.30x slower than
fp32 on opencv:classic/cpu (3 pairs)". Nothing here is assumed: no pair measured, no finding."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

# axis -> (reference value, how to name a value)
AXES = ("runtime", "threads", "input_size", "input_scale", "simplify", "prune_ratio", "sparsity", "quant", "batch")


def _axes(row: dict[str, Any]) -> dict[str, Any]:
    cand = row["candidate"]
    rt = dict(cand["runtime"])
    threads = rt.pop("threads", None)
    t = cand["transforms"]
    return {"runtime": _runtime_name(rt), "threads": threads or 0,
            "input_size": tuple(t["input_size"]) if t.get("input_size") else None,
            "input_scale": t.get("input_scale", 1.0), "simplify": t.get("simplify", False),
            "prune_ratio": t.get("prune_ratio", 0.0), "sparsity": t.get("sparsity", 0.0),
            "quant": t.get("quant", "none"), "batch": cand.get("batch", 1), "instances": cand.get("instances", 1),
            "debug": t.get("debug", "")}


def _runtime_name(rt: dict[str, Any]) -> str:
    if rt.get("runtime") == "opencv":
        return f"OpenCV {rt.get('engine', 'auto')} engine" + (f" ({rt['target']})" if rt.get("target", "cpu") != "cpu"
                                                               else "")
    if rt.get("runtime") == "ort":
        return "ONNX Runtime" + (f" ({rt['provider']})" if rt.get("provider", "cpu") != "cpu" else "")
    return str(rt.get("runtime"))


def _value_name(axis: str, value: Any, facts: dict[str, Any]) -> str:
    if axis == "threads":
        return f"{value} thread{'s' if value != 1 else ''}" if value else "default threads"
    if axis == "input_size":
        if value is None:
            rep = facts.get("representative_size")
            return "the task's own resizing" + (f" (~{rep[0]}x{rep[1]})" if rep else "")
        return f"input {value[0]}x{value[1]}"
    if axis == "input_scale":
        return f"resolution scale {value:g}" if value != 1.0 else "the task's own resolution"
    if axis == "simplify":
        return "simplified (onnxslim)" if value else "not simplified"
    if axis == "prune_ratio":
        return f"{value:.0%} channel pruning" if value else "no pruning"
    if axis == "sparsity":
        return f"{value:.0%} sparsity" if value else "dense weights"
    if axis == "quant":
        return {"none": "fp32"}.get(value, value)
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
    defaults = {"threads": None, "input_size": None, "input_scale": 1.0, "simplify": False, "prune_ratio": 0.0,
                "sparsity": 0.0, "quant": "none", "batch": 1}
    if axis == "runtime":
        return next((v for v in ("OpenCV new engine", "OpenCV auto engine", "OpenCV classic engine") if v in values),
                    None)
    if axis == "threads":
        return min(values) if values else None
    return defaults.get(axis)


def compute_findings(rows: list[dict[str, Any]], *, facts: dict[str, Any] | None = None,
                     metric_name: str = "metric") -> list[Finding]:
    """Findings from successful rows (one per candidate; see RunData.best_rows)."""
    facts = facts or {}
    ok = [r for r in rows if r["status"] == "ok" and r.get("p50_ms") and not _axes(r)["debug"]]
    described = [(r, _axes(r)) for r in ok]
    findings: list[Finding] = []
    for axis in AXES:
        values = {a[axis] for _, a in described}
        if len(values) < 2:
            continue
        ref = _reference(axis, values)
        if ref not in values:
            continue
        groups: dict[tuple, dict[Any, dict[str, Any]]] = defaultdict(dict)
        for row, a in described:
            rest = tuple(sorted((k, str(v)) for k, v in a.items() if k != axis))
            groups[rest][a[axis]] = row
        per_value: dict[tuple[Any, str], list[tuple[float, float | None]]] = defaultdict(list)
        for members in groups.values():
            if ref not in members:
                continue
            base = members[ref]
            for value, row in members.items():
                if value == ref:
                    continue
                context = _axes(row)["runtime"] if axis in ("quant", "simplify", "threads", "prune_ratio") else ""
                delta = None if row.get("metric") is None or base.get("metric") is None else \
                    row["metric"] - base["metric"]
                per_value[(value, context)].append((base["p50_ms"] / row["p50_ms"], delta))
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


def failure_findings(rows: list[dict[str, Any]]) -> list[str]:
    """What could not run, grouped by reason (probe rule-outs, crashes, build failures)."""
    reasons: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row["status"] != "ok":
            reasons[(row.get("error") or "unknown")[:200]].append(row["label"])
    lines = []
    for reason, labels in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
        verb = "ruled out" if "probe" in reason else "failed"
        lines.append(f"{len(labels)} candidate{'s' if len(labels) != 1 else ''} {verb}: {reason} (e.g. {labels[0]})")
    return lines
