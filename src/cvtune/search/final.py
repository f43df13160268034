"""The final comparison: the baseline and the chosen candidate timed back to back in alternating child
processes, so the reported speed-up is measured in the same run under the same load."""

from __future__ import annotations

import time
from typing import Any

from ..errors import TrialFailed
from .runner import Rung
from .space import Candidate
from .trials import FINAL_ROUNDS, Search


def final_timing(search: Search, baseline: dict[str, Any], best: dict[str, Any], *, rounds: int = 0
           ) -> tuple[dict | None, dict | None]:
    """Time the baseline and the chosen candidate back to back, alternating child processes (A B A B A B) so a
    change in machine load hits both alike; their full-rung metrics are reused. Recorded at rung final:<best key>."""
    rounds = rounds or FINAL_ROUNDS
    name = f"final:{best['key']}"
    sources = [baseline] if best["key"] == baseline["key"] else [baseline, best]
    cands = [Candidate.from_dict(r["candidate"]) for r in sources]
    stored = [search.store.trial(c.key(), name) for c in cands]
    if all(stored):
        return _final_pair(search, stored)
    left = None if search.end is None else search.end - time.monotonic()
    total = search.config.final_min_time_s if left is None else max(0.6, min(search.config.final_min_time_s,
                                                                             (left - 4) / 2))
    rung = Rung(name, search.rungs["full"].images, warmup=1, min_runs=max(3, 10 // rounds),
                min_time_s=total / rounds)
    timings: list[list[float]] = [[] for _ in cands]
    results: list[dict[str, Any] | None] = [None for _ in cands]
    errors = ["" for _ in cands]
    paths = [search.model_path(c) for c in cands]
    started = time.time()
    for _ in range(rounds):
        for i, cand in enumerate(cands):
            if errors[i] or paths[i][0] is None:
                errors[i] = errors[i] or paths[i][2]
                continue
            try:
                result = search.run_child(cand, paths[i][0], rung, measure_metric=False,
                                          timeout=search.config.trial_timeout_s)
            except TrialFailed as exc:
                errors[i] = str(exc)
                continue
            timings[i] += result["timing"].get("times_ms", [])
            results[i] = result
    rows = []
    for i, (cand, source) in enumerate(zip(cands, sources, strict=True)):
        row = {"key": cand.key(), "rung": name, "candidate": cand.to_dict(), "label": cand.label(),
               "started": started, "details": {"metric_key": source["details"].get("metric_key"),
                                               "model_key": paths[i][1], "input_shape": search.input_shape(cand),
                                               "rounds": rounds}}
        if errors[i] or results[i] is None:
            rows.append(search._record(row, "failed", errors[i] or "not measured"))
            continue
        timing = results[i]["timing"]
        merged = {**results[i], "timing": timing if "throughput" in timing else {**timing, "times_ms": timings[i]}}
        known = {k: source[k] for k in ("metric", "metric_ci_low", "metric_ci_high", "metric_name", "n_images",
                                        "key", "rung", "metric_from")}
        rows.append(search._finish(row, cand, paths[i][0], paths[i][1], merged, known))
    return _final_pair(search, rows)


def _final_pair(search: Search, rows: list[dict[str, Any]]) -> tuple[dict | None, dict | None]:
    if any(r["status"] != "ok" for r in rows):
        errors = "; ".join(r["error"] for r in rows if r["error"])
        search.notes.append(f"the final back-to-back timing failed: {errors}")
        return None, None
    return rows[0], rows[-1]
