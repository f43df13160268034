"""Per-layer sensitivity: prune one layer (or one channel group) at a time at several levels, measure the task
metric (or fidelity) drop, and allocate per-layer sparsity under an accuracy budget from those curves.

Each point is one evaluation of a temporary model, so the curves are cached in a JSON file keyed by the model's
content and the settings: a killed run resumes where it stopped, and a finished one is never measured twice.
The allocation assumes drops add up across layers (a first-order approximation); check the allocated model
with `cvtune eval` before trusting it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..budget import Budget
from ..errors import UsageError
from ..files import write_json
from ..model import load_onnx, save_onnx
from .channels import cut_channels, plan_channels, probe_shape
from .graph import prepare
from .reconstruct import reconstruct
from .sparsify import SparsifyConfig, prunable_layers, sparsify

__all__ = ["SENSITIVITY_METHODS", "DEFAULT_LEVELS", "LayerCurve", "SensitivityResult", "analyze_sensitivity",
           "allocate", "load_sensitivity"]

SENSITIVITY_METHODS = ("magnitude", "channel")
DEFAULT_LEVELS = {"magnitude": (0.3, 0.5, 0.7, 0.9), "channel": (0.25, 0.5, 0.75)}
FORMAT = "cvtune-sensitivity/1"


@dataclass(frozen=True)
class LayerCurve:
    """Metric after pruning only this unit (a layer for magnitude, a channel group for channel) at each level."""

    name: str
    cost: int  # what pruning it saves per unit level: weights (magnitude), FLOPs or measured µs (channel, --cost)
    metrics: dict[float, float] = field(default_factory=dict)

    def drop(self, level: float, baseline: float) -> float:
        """Metric drop at `level`, made monotone (never smaller than at a lower level) and never negative."""
        drops = [max(0.0, baseline - m) for lv, m in sorted(self.metrics.items()) if lv <= level + 1e-9]
        return max(drops) if drops else 0.0


@dataclass(frozen=True)
class SensitivityResult:
    model: str
    key: str
    method: str
    task: str
    metric: str
    baseline: float
    levels: tuple[float, ...]
    curves: tuple[LayerCurve, ...]
    allocation: dict[str, float] = field(default_factory=dict)
    budget: Budget | None = None  # the accuracy budget the allocation was made for

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "model": self.model, "key": self.key, "method": self.method, "task": self.task,
                "metric": self.metric, "baseline": self.baseline, "levels": list(self.levels),
                "curves": [{"name": c.name, "cost": c.cost, "metrics": {str(k): v for k, v in c.metrics.items()}}
                           for c in self.curves],
                "allocation": dict(self.allocation), "budget": self.budget.to_dict() if self.budget else None}

    def table(self):
        from rich.table import Table

        table = Table(title=f"{self.method} sensitivity: {self.metric} (baseline {self.baseline:.4f}), drop per level")
        table.add_column("layer" if self.method == "magnitude" else "group")
        for lv in self.levels:
            table.add_column(f"{lv:g}", justify="right")
        if self.allocation:
            table.add_column("allocated", justify="right")
        for c in self.curves:
            row = [c.name] + [f"{self.baseline - c.metrics[lv]:+.4f}" if lv in c.metrics else "-"
                              for lv in self.levels]
            if self.allocation:
                row.append(f"{self.allocation.get(c.name, 0.0):g}")
            table.add_row(*row)
        return table


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_sensitivity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A saved sensitivity JSON (raises UsageError when the file is something else)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read sensitivity file {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path} is not a cvtune sensitivity file (no \"format\": \"{FORMAT}\")")
    return data


def analyze_sensitivity(model_path: str | os.PathLike[str], dataset, *, task: str = "fidelity",
                        method: str = "magnitude", levels: Sequence[float] | None = None, runtime=None,
                        limit: int | None = None, cache: str | os.PathLike[str] | None = None,
                        task_options: dict[str, Any] | None = None, units: Sequence[str] | None = None,
                        calib: Sequence[np.ndarray] | None = None, calib_id: str = "",
                        on_point: Callable[[int, int], None] | None = None) -> SensitivityResult:
    """Measure each unit's curve. `dataset` is a Dataset or a folder; `task` a registry name ('fidelity' compares
    against the original model, no labels needed). For method 'channel', calibration tensors (`calib`, named by
    `calib_id` in the cache key) make every point a cut *with* reconstruction, as prune would do; without them
    the points are plain cuts. Points already in `cache` are not measured again."""
    from ..evaluate import build_task, evaluate, load_eval_dataset
    from ..runtimes import make_runtime

    if method not in SENSITIVITY_METHODS:
        raise UsageError(f"unknown sensitivity method '{method}'; choose one of: {', '.join(SENSITIVITY_METHODS)}")
    levels = tuple(sorted(levels or DEFAULT_LEVELS[method]))
    if any(not 0 < lv < 1 for lv in levels):
        raise UsageError(f"sensitivity levels must lie in (0, 1) (got {list(levels)})")
    model_path = Path(model_path)
    original = load_onnx(model_path)
    runtime = runtime or make_runtime("ort")
    if isinstance(dataset, (str, os.PathLike)):
        dataset = load_eval_dataset(dataset)
    options = dict(task_options or {})
    if task == "fidelity":
        options.setdefault("reference_model", str(model_path))
    task_obj = build_task(task, model_path, **options)
    key_src = json.dumps({"model": _file_hash(model_path), "method": method, "task": task, "runtime":
                          runtime.to_dict(), "data": str(Path(dataset.root).resolve()), "limit": limit,
                          "options": {k: str(v) for k, v in options.items() if k != "reference_model"},
                          "calib": [calib_id, len(calib)] if calib and method == "channel" else None},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    stored = _read_cache(cache, key)
    all_units = _units(original, method, model_path)
    if units:
        unknown = [u for u in units if u not in all_units]
        if unknown:
            raise UsageError(f"unknown layer/group '{unknown[0]}'; choose from: {', '.join(list(all_units)[:8])}")
        all_units = {u: all_units[u] for u in units}
    cached = {c["name"]: c.get("metrics", {}) for c in stored.get("curves", [])}
    curves = {name: {str(float(k)): v for k, v in cached.get(name, {}).items()} for name in all_units}

    def measure(proto) -> float:
        with tempfile.TemporaryDirectory(prefix="cvtune-sens-") as tmp:
            path = Path(tmp) / "candidate.onnx"
            save_onnx(proto, path)
            return float(evaluate(path, runtime, task_obj, dataset, limit=limit, progress=False).value)

    baseline = stored.get("baseline")
    if baseline is None:
        baseline = float(evaluate(model_path, runtime, task_obj, dataset, limit=limit, progress=False).value)
    metric_name = task_obj.metric
    todo = [(u, lv) for u in all_units for lv in levels if str(float(lv)) not in curves[u]]
    for i, (unit, level) in enumerate(todo):
        if on_point:
            on_point(i, len(todo))
        curves[unit][str(float(level))] = measure(_prune_one(original, method, unit, level, model_path, calib))
        if cache is not None:
            _write_cache(cache, model_path, key, method, task, metric_name, baseline, levels, all_units, curves)
    result = SensitivityResult(
        str(model_path), key, method, task, metric_name, baseline, levels,
        tuple(LayerCurve(u, all_units[u], {float(k): v for k, v in curves[u].items()}) for u in all_units))
    if cache is not None:
        write_json(cache, result.to_dict(), schema="sensitivity")
    return result


def _units(original, method: str, model_path: Path) -> dict[str, int]:
    """Unit name -> cost: weight count per layer (magnitude) or FLOPs of the group's producers (channel)."""
    if method == "magnitude":
        work = prepare(original)
        from .graph import GraphIndex

        index = GraphIndex(work)
        return {node.name: int(index.array(w).size) for node, w in prunable_layers(work)}
    plan = plan_channels(original, ratio=0.5, input_shape=probe_shape(model_path))
    from ..model import Model

    flops = {layer.name: layer.flops for layer in
             Model(Path("m.onnx"), prepare(original)).flops(plan.input_shape)}
    return {g.name: int(sum(flops.get(p, 0) for p in (*g.producers, *g.consumers))) for g in plan.groups}


def _prune_one(original, method: str, unit: str, level: float, model_path: Path, calib=None):
    if method == "magnitude":
        config = SparsifyConfig(method="magnitude", layer_sparsity=((unit, level),), skip_first=False,
                                skip_last=False)
        return sparsify(original, config)[0]
    shape = tuple(calib[0].shape) if calib else probe_shape(model_path)
    plan = plan_channels(original, ratios={unit: level}, input_shape=shape)
    cut = cut_channels(original, plan)
    return reconstruct(original, cut, plan, calib)[0] if calib else cut


def _read_cache(cache, key: str) -> dict[str, Any]:
    if cache is None or not Path(cache).exists():
        return {}
    data = load_sensitivity(cache)
    if data.get("key") != key:
        raise UsageError(f"{cache} holds sensitivity curves for another model or other settings; choose another "
                         f"cache file, or delete it to start over")
    return data


def _write_cache(cache, model_path, key, method, task, metric, baseline, levels, units, curves) -> None:
    write_json(cache, {"format": FORMAT, "model": str(model_path), "key": key, "method": method, "task": task,
                       "metric": metric, "baseline": baseline, "levels": list(levels),
                       "curves": [{"name": u, "cost": units[u], "metrics": curves[u]} for u in units],
                       "allocation": {}, "budget": None}, schema="sensitivity")


def allocate(result: SensitivityResult, budget: Budget) -> dict[str, float]:
    """Per-unit levels that save the most (weights or FLOPs) while the summed metric drop stays within `budget`
    (Budget.parse("1%"): relative to the baseline; "0.01abs": absolute, in metric units). Greedy on saving per
    unit of drop."""
    if not isinstance(budget, Budget):
        raise UsageError(f"allocate takes a Budget, e.g. Budget.parse('1%') or Budget.parse('0.01abs') "
                         f"(got {budget!r})")
    allowed = budget.value * abs(result.baseline) if budget.relative else budget.value
    chosen = {c.name: 0.0 for c in result.curves}
    spent = 0.0
    curves = {c.name: c for c in result.curves}
    while True:
        best = None
        for name, curve in curves.items():
            current = chosen[name]
            drop_now = curve.drop(current, result.baseline) if current else 0.0
            for level in sorted(curve.metrics):
                if level <= current:
                    continue
                extra_drop = curve.drop(level, result.baseline) - drop_now
                if spent + extra_drop > allowed + 1e-12:
                    continue
                gain = curve.cost * (level - current) / (extra_drop + 1e-6)
                if best is None or gain > best[0]:
                    best = (gain, name, level, extra_drop)
        if best is None:
            break
        _, name, level, extra = best
        chosen[name] = level
        spent += extra
    return {k: v for k, v in chosen.items() if v > 0}
