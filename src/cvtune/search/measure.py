"""How the anytime search measures one candidate, cheapest verdict first:

1. **time** it alone (build and probe first, both cached): a candidate that is not faster than the best so far
   cannot improve the answer, so its accuracy is not measured;
2. **accuracy**, adaptively: growing chunks of the evaluation split, paired image by image with the baseline's
   cached results, until the drop is clearly inside or outside the budget (sequential.py);
3. **confirm**: timed again interleaved with the best so far (A B A B), so a busy machine hits both alike; it
   becomes the new best only when it is faster there too.

Every stage is a Trial in the store, so a resumed search replays the same decisions without measuring again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TrialFailed
from .context import Rung
from .records import Measurement, MetricResult, Trial
from .sequential import DropEstimate, chunk_stops, paired_drop, statistic_of, unpaired_drop
from .space import Candidate
from .trials import Search, run_child

TIME_RUNG = Rung("time", None, warmup=2, min_runs=5, min_time_s=0.5)
CONFIRM_ROUNDS = 2
PROMOTE_MARGIN = 0.02  # a candidate must be 2% better than the best so far in the interleaved timing


@dataclass(frozen=True)
class Incumbent:
    """The best answer so far: its timing, its accuracy, and its objective gain over the baseline."""

    candidate: Candidate
    timing: Trial
    accuracy: Trial | None
    gain: float
    drop: DropEstimate | None = None


@dataclass(frozen=True)
class Outcome:
    """What measuring one candidate found, stage by stage, and the decision taken."""

    candidate: Candidate
    timing: Trial
    accuracy: Trial | None = None
    drop: DropEstimate | None = None
    verdict: str = ""  # within | outside | undecided | not faster | failed
    gain: float | None = None  # objective gain over the baseline (>1 better)
    promoted: bool = False
    why: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.timing.ok and (self.accuracy is None or self.accuracy.ok)

    def summary(self) -> Trial:
        """One row for this candidate: timing, metric and the decision (the report's and the strategy's view)."""
        failed = self.accuracy if self.accuracy is not None and not self.accuracy.ok else None
        source = failed or self.timing
        extra = {**self.timing.extra, **(self.accuracy.extra if self.accuracy else {}), **self.extra,
                 "verdict": self.verdict, "gain": self.gain, "promoted": self.promoted, "why": self.why}
        if self.drop is not None:
            extra.update(drop=self.drop.drop, drop_ci=[self.drop.low, self.drop.high], drop_images=self.drop.n)
        return source.with_(rung="result", metric=self.accuracy.metric if self.accuracy else None,
                            timing=self.timing.timing, size_bytes=self.timing.size_bytes, extra=extra)


def measure_baseline(search: Search, cand: Candidate) -> tuple[Trial, Trial]:
    """The baseline's timing and its accuracy on the whole evaluation split, in the same chunks candidates use
    (their per-image results are what every candidate is paired with)."""
    timing = search.runner.timing(cand, TIME_RUNG)
    if not timing.ok:
        return timing, timing
    return timing, baseline_accuracy(search, cand)


def baseline_accuracy(search: Search, cand: Candidate) -> Trial:
    """Chunk by chunk when the task records per-image statistics (so candidates can stop early), else at once."""
    from .trials import merge_metrics

    stops = chunk_stops(search.ctx.n_eval) if search.config.eval_fn is None else [search.ctx.n_eval]
    first = search.runner.accuracy(cand, 0, stops[0])
    if not first.ok:
        return first
    if first.metric is None or statistic_of(first.metric.to_dict()) is None:
        stops = [search.ctx.n_eval]
    parts, seen = [], 0
    for stop in stops:
        part = search.runner.accuracy(cand, seen, stop)
        if not part.ok:
            return part
        parts.append(part)
        seen = stop
    merged = merge_metrics([p.metric for p in parts if p.metric is not None])
    return parts[-1].with_(rung="accuracy", metric=merged, rung_images=merged.n_images)


def objective_gain(search: Search, reference: Trial, trial: Trial) -> float | None:
    objective = search.objective
    return objective.gain(objective.value(reference), objective.value(trial))


def adaptive_accuracy(search: Search, cand: Candidate, baseline: Trial) -> tuple[Trial, DropEstimate, str]:
    """Evaluate `cand` chunk by chunk until the paired drop is clearly inside or outside the budget."""
    from .trials import merge_metrics

    budget = search.config.budget
    base_metric = baseline.metric
    assert base_metric is not None
    statistic = statistic_of(base_metric.to_dict())
    stops = chunk_stops(search.ctx.n_eval) if statistic is not None else [search.ctx.n_eval]
    parts: list[Trial] = []
    seen = 0
    estimate, verdict = None, "undecided"
    for i, stop in enumerate(stops):
        part = search.runner.accuracy(cand, seen, stop)
        if not part.ok:
            return part, DropEstimate(np.inf, np.inf, np.inf, seen, False), "failed"
        parts.append(part)
        seen = stop
        merged = merge_metrics([p.metric for p in parts if p.metric is not None])
        final = i == len(stops) - 1
        if statistic is not None and merged.per_image and len(merged.per_image) <= len(base_metric.per_image):
            base_rows = np.asarray(base_metric.per_image[:len(merged.per_image)])
            estimate = paired_drop(base_rows, np.asarray(merged.per_image), statistic, budget)
        else:
            estimate = unpaired_drop(base_metric.value, merged.to_dict() | {"ci95": [merged.ci_low, merged.ci_high]},
                                     budget)
        verdict = estimate.verdict(budget, final=final)
        if verdict != "undecided":
            break
    accuracy = parts[-1].with_(rung="accuracy", metric=merged, rung_images=seen,
                               extra={**parts[-1].extra, "accuracy_s": sum(p.extra.get("accuracy_s", 0)
                                                                          for p in parts)})
    return accuracy, estimate, verdict  # type: ignore[return-value]


def confirm(search: Search, cand: Candidate, incumbent: Incumbent) -> float | None:
    """The candidate's objective gain over the incumbent, timed interleaved (A B A B) in this run; None when
    either side fails. Size is a property of the file: no timing needed."""
    if search.objective.name == "size":
        timing = search.runner.timing(cand, TIME_RUNG)
        return objective_gain(search, incumbent.timing, timing)
    # one rung per pair: the incumbent is re-timed next to every challenger
    rung = Rung(f"confirm:{incumbent.candidate.key()}:{cand.key()}", None, warmup=1, min_runs=5, min_time_s=0.5)
    stored = [search.store.trial(c.key(), rung.name) for c in (incumbent.candidate, cand)]
    if not all(stored):
        stored = interleaved(search, [incumbent.candidate, cand], rung)
    if not all(t is not None and t.ok for t in stored):
        return None
    return objective_gain(search, stored[0], stored[1])  # type: ignore[arg-type]


def interleaved(search: Search, cands: list[Candidate], rung: Rung, rounds: int = CONFIRM_ROUNDS
                ) -> list[Trial | None]:
    """Time `cands` alternately (A B A B ...) for `rounds` rounds, so a change in machine load hits all alike;
    one Trial per candidate (at `rung.name`) with every round's runs; all None when one fails."""
    from ..timing import latency_stats

    name = rung.name
    times: list[list[float]] = [[] for _ in cands]
    firsts: list[Trial | None] = [None for _ in cands]
    for _ in range(rounds):
        for i, cand in enumerate(cands):
            path, _, _ = search.models.path(cand)
            if path is None:
                return [None for _ in cands]
            try:
                result = run_child(search.ctx, cand, path, rung, measure_metric=False, timeout=search.clock.timeout())
            except TrialFailed as exc:
                search.clock.check(exc)
                return [None for _ in cands]
            timing = Measurement.from_dict(result["timing"])
            times[i] += list(timing.times_ms)
            if firsts[i] is None:
                firsts[i] = Trial(cand, name, "ok", timing=timing)
    out: list[Trial | None] = []
    for i, cand in enumerate(cands):
        first = firsts[i]
        assert first is not None and first.timing is not None
        stats = latency_stats(times[i], cand.batch)
        timing = Measurement(stats.p50_ms, stats.p90_ms, stats.mean_ms, stats.throughput_ips, stats.runs,
                             first.timing.load_ms, first.timing.peak_rss_mb, first.timing.timing_shapes,
                             tuple(times[i]))
        out.append(search.runner.record(first.with_(timing=timing, extra={"rounds": rounds})))
    return out


def measure_candidate(search: Search, cand: Candidate, incumbent: Incumbent, baseline: tuple[Trial, Trial],
                      why: str = "") -> Outcome:
    """Time, then (only if it could beat the incumbent) accuracy, then (only if within budget) confirm."""
    base_timing, base_accuracy = baseline
    timing = search.runner.timing(cand, TIME_RUNG)
    if not timing.ok:
        return Outcome(cand, timing, verdict="failed", why=why)
    gain = objective_gain(search, base_timing, timing)
    if gain is None or gain <= incumbent.gain:
        return Outcome(cand, timing, verdict="not faster", gain=gain, why=why,
                       extra={"note": f"{gain or 0:.2f}x vs the best so far {incumbent.gain:.2f}x: accuracy not "
                                      f"measured"})
    accuracy, drop, verdict = adaptive_accuracy(search, cand, base_accuracy)
    if verdict != "within":
        return Outcome(cand, timing, accuracy, drop, verdict, gain, why=why)
    ratio = confirm(search, cand, incumbent)
    promoted = ratio is not None and ratio > 1.0 + PROMOTE_MARGIN
    confirmed = incumbent.gain * ratio if ratio is not None else gain
    return Outcome(cand, timing, accuracy, drop, verdict, confirmed, promoted, why,
                   extra={"vs_best": ratio})


def as_incumbent(outcome: Outcome) -> Incumbent:
    assert outcome.gain is not None
    return Incumbent(outcome.candidate, outcome.timing, outcome.accuracy, outcome.gain, outcome.drop)


def metric_of(trial: Trial | None) -> MetricResult | None:
    return None if trial is None else trial.metric
