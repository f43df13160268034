"""The final comparison: the baseline and the chosen candidate timed back to back in alternating child
processes, so the reported speed-up is measured in the same run under the same load."""

from __future__ import annotations

import time

from ..errors import TrialFailed
from ..timing import latency_stats
from .context import Rung
from .records import Measurement, Trial
from .trials import FINAL_ROUNDS, Search, run_child


def final_timing(search: Search, baseline: Trial, best: Trial, *, rounds: int = 0) -> tuple[Trial | None, Trial | None]:
    """Time the baseline and the chosen candidate back to back, alternating child processes (A B A B) so a change
    in machine load hits both alike; their full-rung metrics are reused. Recorded at rung final:<best key>."""
    rounds = rounds or FINAL_ROUNDS
    name = f"final:{best.key}"
    sources = [baseline] if best.key == baseline.key else [baseline, best]
    stored = [search.store.trial(t.key, name) for t in sources]
    if all(stored):
        return _final_pair(search, stored)  # type: ignore[arg-type]
    left = search.clock.until_end()
    total = search.config.final_min_time_s if left is None else max(0.6, min(search.config.final_min_time_s,
                                                                             (left - 4) / 2))
    rung = Rung(name, search.ctx.rungs["full"].images, warmup=1, min_runs=max(3, 10 // rounds),
                min_time_s=total / rounds)
    times: list[list[float]] = [[] for _ in sources]
    results: list[dict | None] = [None for _ in sources]
    errors = ["" for _ in sources]
    paths = [search.models.path(t.candidate) for t in sources]
    started = time.time()
    for _ in range(rounds):
        for i, source in enumerate(sources):
            if errors[i] or paths[i][0] is None:
                errors[i] = errors[i] or paths[i][2]
                continue
            try:
                result = run_child(search.ctx, source.candidate, paths[i][0], rung, measure_metric=False,
                                   timeout=search.config.trial_timeout_s)
            except TrialFailed as exc:
                errors[i] = str(exc)
                continue
            times[i] += list(result["timing"].get("times_ms") or [])
            results[i] = result
    rows = []
    for i, source in enumerate(sources):
        base = Trial(source.candidate, name, "failed", model_key=paths[i][1], metric_key=source.metric_key,
                     input_shape=source.input_shape, rung_images=rung.images, started=started,
                     extra={"rounds": rounds})
        result = results[i]
        if errors[i] or result is None:
            rows.append(search.runner.record(base.with_(error=errors[i] or "not measured")))
            continue
        timing = Measurement.from_dict(result["timing"])
        if times[i]:  # merge the rounds: one set of statistics over every run of this candidate
            stats = latency_stats(times[i], source.candidate.batch)
            timing = Measurement(stats.p50_ms, stats.p90_ms, stats.mean_ms, stats.throughput_ips, stats.runs,
                                 timing.load_ms, timing.peak_rss_mb, timing.timing_shapes, tuple(times[i]))
        rows.append(search.runner.record(base.with_(status="ok", timing=timing, metric=source.metric,
                                                    size_bytes=source.size_bytes, seconds=result["seconds"])))
    return _final_pair(search, rows)


def _final_pair(search: Search, rows: list[Trial]) -> tuple[Trial | None, Trial | None]:
    if any(not r.ok for r in rows):
        errors = "; ".join(r.error for r in rows if r.error)
        search.notes.append(f"the final back-to-back timing failed: {errors}")
        return None, None
    return rows[0], rows[-1]
