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

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import TrialFailed
from .context import Rung
from .records import Measurement, MetricResult, Trial
from .sequential import DropEstimate, chunk_stops, drop_against, statistic_of
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


class Baseline:
    """The model as given: its timing, and its accuracy chunk by chunk, measured only as far as some candidate's
    paired test needs it (the chunks candidates use); `full()` completes it for the final claim check."""

    def __init__(self, search: Search, cand: Candidate) -> None:
        self.search, self.candidate = search, cand
        self.timing = search.runner.timing(cand, TIME_RUNG)
        n = search.ctx.n_eval
        self.stops = chunk_stops(n) if search.config.eval_fn is None else [n]
        self.parts: list[Trial] = []
        self.failed: Trial | None = None if self.timing.ok else self.timing
        if self.failed is None:
            self.until(self.stops[0])
            if self.failed is None and self.stops[0] < n and (
                    self.parts[0].metric is None or statistic_of(self.parts[0].metric.to_dict()) is None):
                # no per-image statistics: the baseline and candidates are measured at once, on the same images
                # (the first chunk is dropped: a metric of 8 images is no baseline for one of n)
                self.stops, self.parts = [n], []

    @property
    def ok(self) -> bool:
        return self.failed is None

    def until(self, stop: int) -> Trial | None:
        """The baseline's accuracy on the first `stop` images (measuring the chunks still missing)."""
        from .trials import merge_metrics

        start = self.stops[len(self.parts) - 1] if self.parts else 0
        for chunk_stop in self.stops[len(self.parts):]:
            if start >= stop or self.failed is not None:
                break
            part = self.search.runner.accuracy(self.candidate, start, chunk_stop)
            if not part.ok:
                self.failed = part
                return None
            self.parts.append(part)
            start = chunk_stop
        if not self.parts:
            return None
        merged = merge_metrics([p.metric for p in self.parts if p.metric is not None])
        return self.parts[-1].with_(rung="accuracy", metric=merged, rung_images=merged.n_images)

    def accuracy(self) -> Trial | None:
        """What has been measured so far."""
        return self.until(0)

    def full(self) -> Trial | None:
        return self.until(self.stops[-1])


def objective_gain(search: Search, reference: Trial, trial: Trial) -> float | None:
    objective = search.objective
    return objective.gain(objective.value(reference), objective.value(trial))


def adaptive_accuracy(search: Search, cand: Candidate, baseline: Baseline) -> tuple[Trial, DropEstimate, str]:
    """Evaluate `cand` chunk by chunk until the paired drop is clearly inside or outside the budget."""
    from .trials import merge_metrics

    budget = search.config.budget
    parts: list[Trial] = []
    seen = 0
    estimate, verdict, merged = None, "undecided", None
    for i, stop in enumerate(baseline.stops):
        base = baseline.until(stop)
        if base is None or base.metric is None:
            failed = baseline.failed or parts[-1]
            return failed.with_(candidate=cand, error=f"the baseline's accuracy failed: {failed.error}"), \
                DropEstimate(np.inf, np.inf, np.inf, seen, False), "failed"
        part = search.runner.accuracy(cand, seen, stop)
        if not part.ok:
            return part, DropEstimate(np.inf, np.inf, np.inf, seen, False), "failed"
        parts.append(part)
        seen = stop
        merged = merge_metrics([p.metric for p in parts if p.metric is not None])
        final = i == len(baseline.stops) - 1
        estimate = drop_against(base.metric, merged, budget)
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
    seconds = [0.0 for _ in cands]
    firsts: list[Trial | None] = [None for _ in cands]
    started = time.time()
    for _ in range(rounds):
        for i, cand in enumerate(cands):
            path, model_key, _ = search.models.path(cand)
            if path is None:
                return [None for _ in cands]
            try:
                result = run_child(search.ctx, cand, path, rung, measure_metric=False, timeout=search.clock.timeout())
            except TrialFailed as exc:
                search.clock.check(exc)
                return [None for _ in cands]
            timing = Measurement.from_dict(result["timing"])
            times[i] += list(timing.times_ms)
            seconds[i] += result["seconds"]
            if firsts[i] is None:
                firsts[i] = Trial(cand, name, "ok", timing=timing, started=started,  # size: the size objective
                                  size_bytes=search.models.size(path, model_key), model_key=model_key)
    out: list[Trial | None] = []
    for i, cand in enumerate(cands):
        first = firsts[i]
        assert first is not None and first.timing is not None
        stats = latency_stats(times[i], cand.batch)
        timing = Measurement(stats.p50_ms, stats.p90_ms, stats.mean_ms, stats.throughput_ips, stats.runs,
                             first.timing.load_ms, first.timing.peak_rss_mb, first.timing.timing_shapes,
                             tuple(times[i]))
        out.append(search.runner.record(first.with_(timing=timing, seconds=seconds[i], extra={"rounds": rounds})))
    return out


def measure_candidate(search: Search, cand: Candidate, incumbent: Incumbent, baseline: Baseline,
                      why: str = "", expected: float | None = None) -> Outcome:
    """Time, then (only if it could beat the incumbent) accuracy, then (only if within budget) confirm."""
    outcome = _measure(search, cand, incumbent, baseline, why)
    if expected is not None:
        outcome = replace(outcome, extra={**outcome.extra, "expected_gain": round(expected, 4)})
    return outcome


def _measure(search: Search, cand: Candidate, incumbent: Incumbent, baseline: Baseline, why: str) -> Outcome:
    timing = search.runner.timing(cand, TIME_RUNG)
    if not timing.ok:
        return Outcome(cand, timing, verdict="failed", why=why)
    gain = objective_gain(search, baseline.timing, timing)
    if gain is None or gain <= incumbent.gain:
        return Outcome(cand, timing, verdict="not faster", gain=gain, why=why,
                       extra={"note": f"{gain or 0:.2f}x vs the best so far {incumbent.gain:.2f}x: accuracy not "
                                      f"measured"})
    accuracy, drop, verdict = adaptive_accuracy(search, cand, baseline)
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
