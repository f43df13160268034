"""Adaptive accuracy: a candidate is evaluated on growing chunks of the evaluation split, paired image by image
with the baseline's cached results, and stops as soon as its metric drop is clearly inside or clearly outside the
budget. The drop's CI is a paired bootstrap over images of the task's own per-image sufficient statistics (the
same statistic the task's headline metric is computed from), so it is honest for ratio metrics such as hmean."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..budget import Budget

if TYPE_CHECKING:
    from .records import MetricResult

FIRST_CHUNK = 8  # images in the first chunk; each next chunk doubles what was seen
MIN_IMAGES_WITHIN = 16  # "clearly within" needs at least this many images (or outputs identical to the baseline's)

Statistic = Callable[[np.ndarray, int], np.ndarray]


def chunk_stops(n_eval: int) -> list[int]:
    """Cumulative image counts at which the test looks: 8, 16, 32, ... and finally every image."""
    stops, seen = [], FIRST_CHUNK
    while seen < n_eval:
        stops.append(seen)
        seen *= 2
    return [*stops, n_eval]


def statistic_of(metrics: dict[str, Any]) -> Statistic | None:
    """The task's per-image statistic for a Metrics dict, when the task recorded one."""
    name = metrics.get("statistic")
    if not name or not metrics.get("per_image"):
        return None
    from ..tasks import metrics as task_metrics

    return getattr(task_metrics, "STATISTICS", {}).get(name)


def _drop(budget: Budget, base: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Vectorized Budget.drop: positive = worse."""
    base, cand = np.asarray(base, np.float64), np.asarray(cand, np.float64)
    if not budget.relative:
        return base - cand
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (base - cand) / np.abs(base)
    return np.where(base == 0, np.where(cand >= base, 0.0, np.inf), rel)


@dataclass(frozen=True)
class DropEstimate:
    """The candidate's drop against the baseline on the same `n` images, with a 95% paired bootstrap CI."""

    drop: float
    low: float
    high: float
    n: int
    identical: bool  # every image's statistics equal the baseline's

    def verdict(self, budget: Budget, *, final: bool) -> str:
        """'within', 'outside', or 'undecided' (only before the last chunk)."""
        if self.low > budget.value + 1e-12:
            return "outside"
        if self.high <= budget.value + 1e-12 and (self.identical or self.n >= MIN_IMAGES_WITHIN or final):
            return "within"
        if final:
            return "within" if self.drop <= budget.value + 1e-12 else "outside"
        return "undecided"

    def to_dict(self) -> dict[str, Any]:
        return {"drop": self.drop, "ci": [self.low, self.high], "n": self.n, "identical": self.identical}


def paired_drop(base: np.ndarray, cand: np.ndarray, statistic: Statistic, budget: Budget, *,
                resamples: int = 1000, seed: int = 0) -> DropEstimate:
    """Drop of `statistic` from the baseline's per-image values to the candidate's (both (n, k), same images in
    the same order), with a paired bootstrap: every resample draws the same images for both."""
    from ..tasks.metrics import bootstrap_ci

    base, cand = np.atleast_2d(np.asarray(base, np.float64)), np.atleast_2d(np.asarray(cand, np.float64))
    if base.shape != cand.shape:
        raise ValueError(f"paired statistics differ in shape: {base.shape} vs {cand.shape}")
    n, k = base.shape
    point = float(_drop(budget, statistic(base.sum(0, keepdims=True), n), statistic(cand.sum(0, keepdims=True), n))[0])
    identical = bool(np.array_equal(base, cand))
    if identical:
        return DropEstimate(point, point, point, n, True)
    both = np.concatenate([base, cand], axis=1)
    low, high = bootstrap_ci(both, lambda sums, m: _drop(budget, statistic(sums[:, :k], m), statistic(sums[:, k:], m)),
                             n_resamples=resamples, seed=seed)
    return DropEstimate(point, point if low is None else low, point if high is None else high, n, False)


def drop_against(base: MetricResult, cand: MetricResult, budget: Budget) -> DropEstimate:
    """The candidate's drop on the images both were measured on: paired when the task keeps per-image rows, counted
    from the original's own rows for a label-free task (the reference against itself, 1.0), else from the
    baseline's; unpaired (the candidate's own CI) otherwise."""
    reference = base.reference_per_image or base.per_image
    statistic = statistic_of(base.to_dict())
    if statistic is not None and cand.per_image and len(cand.per_image) == len(reference):
        return paired_drop(np.asarray(reference), np.asarray(cand.per_image), statistic, budget)
    return unpaired_drop(base.level, cand.to_dict() | {"ci95": [cand.ci_low, cand.ci_high]}, budget)


def unpaired_drop(base_value: float, cand: dict[str, Any], budget: Budget) -> DropEstimate:
    """For tasks without per-image statistics: the point drop, with the candidate's own metric CI mapped to it."""
    point = budget.drop(base_value, cand["value"])
    ci = cand.get("ci95") or [None, None]
    low = point if ci[1] is None else budget.drop(base_value, ci[1])
    high = point if ci[0] is None else budget.drop(base_value, ci[0])
    return DropEstimate(point, min(low, point), max(high, point), int(cand.get("n_images") or 0), False)
