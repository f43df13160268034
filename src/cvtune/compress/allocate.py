"""Latency-driven allocation: per-group pruning ratios from measured cost (compress.cost) and sensitivity
(compress.curves), greedy over the curves.

The currency is the output NMSE of each single-group cut: continuous (no "free" cuts that a coarse metric on a
few images cannot see) and additive for small independent errors. Each step takes the move (one group to a
higher measured ratio) with the most predicted latency saved per unit of added NMSE:
- `target`: until the predicted saving reaches that fraction of latency (minimum damage for a speed-up);
- `max_drop`: while the predicted agreement drop stays within it (maximum speed-up for a damage).
The predicted drop of an allocation is `slope * sum(NMSE)` with `slope` fitted (least squares through the
origin) on every measured point (drop = 1 - agreement); `verify_allocation` measures the real one.

    alloc = allocate_channels(curves, [cost_ort, cost_opencv], target=0.3)
    alloc.ratios   # {'p2o.Conv.37': 0.5, ...}: give them to ChannelConfig(ratios=..., round_to=curves.round_to)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from .cost import CostModel
from .curves import ChannelCurves

__all__ = ["Allocation", "LatencyAllocation", "allocate_channels", "drop_slope", "latency_allocation",
           "verify_allocation"]


@dataclass(frozen=True)
class Allocation:
    """Per-group ratios (effective fractions cut) and what they are predicted to do."""

    ratios: tuple[tuple[str, float], ...]
    saving: dict[str, float]  # runtime -> predicted fraction of latency saved
    nmse: float  # predicted output NMSE (sum over groups)
    drop: float  # predicted agreement drop (slope * nmse)
    target: float | None = None
    max_drop: float | None = None
    notes: tuple[str, ...] = ()
    verified: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_saving(self) -> float:
        return float(np.mean(list(self.saving.values()))) if self.saving else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"ratios": dict(self.ratios), "predicted_saving": dict(self.saving), "predicted_nmse": self.nmse,
                "predicted_drop": self.drop, "target": self.target, "max_drop": self.max_drop,
                "notes": list(self.notes), "verified": dict(self.verified)}

    def describe(self) -> str:
        speed = ", ".join(f"{rt} -{s:.0%}" for rt, s in self.saving.items())
        return (f"{len(self.ratios)} groups cut; predicted latency {speed}; predicted agreement drop "
                f"{self.drop:.2%} (output NMSE {self.nmse:.2e})")


def drop_slope(curves: ChannelCurves, *, small: float = 0.1) -> float:
    """Agreement drop per unit of output NMSE, fitted through the origin on the measured points with small errors
    (NMSE < `small`: the regime an allocation sums; cuts that broke the model would steepen the slope 10x, as on
    PP-OCRv4 det). When no small-error point changed a prediction, every point below NMSE 1 is used; when no point
    changed one at all, the smallest drop the sample can show (one image in `images`) is assumed just past the
    largest error measured: conservative, never "free"."""
    pts = [(p.nmse, 1.0 - p.agreement) for c in curves.curves for p in c.points if 0 < p.nmse < 1]
    near = [(n, d) for n, d in pts if n < small]
    if any(d > 0 for _, d in near):
        pts = near
    if not pts:
        return 0.0
    if not any(d > 0 for _, d in pts):
        return (1.0 / max(curves.images, 1)) / max(n for n, _ in pts)
    n, d = np.asarray(pts, np.float64).T
    return float(max(0.0, np.sum(n * d) / np.sum(n * n)))


def allocate_channels(curves: ChannelCurves, costs: Sequence[CostModel], *, target: float | None = None,
                      max_drop: float | None = None, limit_ratio: float = 0.75) -> Allocation:
    """Greedy allocation (see the module doc). `costs`: one cost model per runtime the allocation should speed up
    (their predicted savings are averaged); `limit_ratio`: never cut more of a group than this."""
    if (target is None) == (max_drop is None):
        raise UsageError("allocate_channels takes exactly one of target (fraction of latency to save, e.g. 0.3) or "
                         "max_drop (agreement drop allowed, e.g. 0.01)")
    if target is not None and not 0 < target < 1:
        raise UsageError(f"the latency target is a fraction of the latency to save, in (0, 1) (got {target})")
    if max_drop is not None and max_drop < 0:
        raise UsageError(f"max_drop must be >= 0 (got {max_drop})")
    if not costs:
        raise UsageError("allocation needs the measured cost on at least one runtime")
    slope = drop_slope(curves)
    chosen: dict[str, float] = {}
    nmse_of: dict[str, float] = {}
    options = {c.name: sorted((p.ratio, p.nmse) for p in c.points if p.ratio <= limit_ratio + 1e-9)
               for c in curves.curves}
    options = {k: v for k, v in options.items() if v and all(k in cost.channels for cost in costs)}

    def saving(ratios: dict[str, float]) -> float:
        return float(np.mean([cost.saving(ratios) for cost in costs]))

    current = 0.0
    notes: list[str] = []
    while True:
        if target is not None and current >= target:
            break
        total_nmse = sum(nmse_of.values())
        best = None
        for name, points in options.items():
            have_ratio, have_nmse = chosen.get(name, 0.0), nmse_of.get(name, 0.0)
            for ratio, nmse in points:
                if ratio <= have_ratio:
                    continue
                extra = max(nmse - have_nmse, 0.0)
                if max_drop is not None and slope * (total_nmse + extra) > max_drop + 1e-12:
                    continue
                gained = saving({**chosen, name: ratio}) - current
                if gained <= 1e-6:
                    continue
                score = gained / (extra + 1e-9)
                if best is None or score > best[0]:
                    best = (score, name, ratio, max(nmse, have_nmse), gained)
        if best is None:
            if target is not None:
                notes.append(f"the measured levels reach only -{current:.0%} latency (target -{target:.0%})")
            break
        _, name, ratio, nmse, gained = best
        chosen[name], nmse_of[name] = ratio, nmse
        current += gained
    total = float(sum(nmse_of.values()))
    ordered = tuple((c.name, chosen[c.name]) for c in curves.curves if c.name in chosen)
    return Allocation(ordered, {cost.runtime: round(cost.saving(chosen), 4) for cost in costs}, total,
                      slope * total, target, max_drop, tuple(notes))


def verify_allocation(original, pruned, calib, *, task: str | None = None) -> dict[str, Any]:
    """The real agreement (with its CI) and output NMSE of `pruned` against `original` on `calib`: what the
    allocation's prediction is checked against."""
    from .agreement import agreement_for, output_nmse
    from .curves import evaluate_model

    reference = evaluate_model(original, calib)
    candidate = evaluate_model(pruned, calib)
    name, agree = agreement_for(task, reference[0])
    try:
        a = agree(reference, candidate)
    except Exception:  # noqa: BLE001 - outputs the task's decoder cannot read: raw outputs instead
        name, agree = agreement_for("cosine")
        a = agree(reference, candidate)
    nmse = float(np.mean([output_nmse(r, c) for r, c in zip(reference, candidate, strict=True)]))
    return {"measure": a.measure, "agreement": a.value, "drop": 1.0 - a.value, "ci95": [a.low, a.high],
            "nmse": nmse, "images": len(calib)}


@dataclass(frozen=True)
class LatencyAllocation:
    """An allocation with the measurements it came from."""

    allocation: Allocation
    curves: Any  # ChannelCurves
    costs: tuple[CostModel, ...]
    unmeasured: tuple[str, ...] = ()  # groups too cheap to be worth a sensitivity curve


def latency_allocation(model, calib: Sequence[np.ndarray], *, target: float | None = None,
                       max_drop: float | None = None, runtimes: Sequence[str] = ("ort", "opencv"),
                       cost_shape: tuple[int, ...] | None = None, task: str | None = None,
                       levels: Sequence[float] = (0.25, 0.5, 0.75), importance: str = "activation",
                       round_to: int = 8, min_share: float = 0.01) -> LatencyAllocation:
    """The whole latency-driven computation, one path for the pass, `cvtune prune --save-latency` and the bench:
    measure each group's cost on `runtimes` at `cost_shape` (default: the calibration shape), measure curves on
    `calib` only for groups worth at least `min_share` of the latency on some runtime, then allocate."""
    from .cost import profile_cost
    from .curves import channel_curves

    shape = tuple(cost_shape) if cost_shape else tuple(calib[0].shape)
    costs = tuple(profile_cost(model, rt, shape, round_to=round_to) for rt in runtimes)
    worth = sorted({g for c in costs for g, ms in c.ranking() if c.profiled_ms and ms / c.profiled_ms >= min_share})
    cheap = tuple(sorted(set(costs[0].channels) - set(worth)))
    curves = channel_curves(model, calib, task=task, levels=levels, importance=importance, round_to=round_to,
                            groups=worth)
    allocation = allocate_channels(curves, list(costs), target=target, max_drop=max_drop)
    return LatencyAllocation(allocation, curves, costs, cheap)
