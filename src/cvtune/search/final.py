"""The final comparison: the baseline and the chosen candidate timed back to back in alternating child
processes, so the reported speed-up is measured in the same run under the same load."""

from __future__ import annotations

from .context import Rung
from .measure import interleaved
from .records import Trial
from .space import Candidate
from .trials import FINAL_ROUNDS, Search


def final_timing(search: Search, baseline: Candidate, best: Candidate) -> tuple[Trial | None, Trial | None]:
    """Time the baseline and the chosen candidate back to back (A B A B), recorded at rung final:<best key>; the
    time per side shrinks to fit what is left of the budget."""
    name = f"final:{best.key()}"
    cands = [baseline] if best.key() == baseline.key() else [baseline, best]
    stored = [search.store.trial(c.key(), name) for c in cands]
    if not all(stored):
        left = search.clock.until_end()
        total = search.config.final_min_time_s if left is None else \
            max(0.6, min(search.config.final_min_time_s, (left - 4) / (2 * len(cands))))
        rung = Rung(name, None, warmup=1, min_runs=max(3, 10 // FINAL_ROUNDS), min_time_s=total / FINAL_ROUNDS)
        stored = interleaved(search, cands, rung, FINAL_ROUNDS)
    if not all(t is not None and t.ok for t in stored):
        search.notes.append("the final back-to-back timing failed; the answer is the model as given")
        return None, None
    return stored[0], stored[-1]
