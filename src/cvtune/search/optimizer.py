"""The optimizer: search every technique together for the fastest configuration within the accuracy budget.

Cheap first: every candidate is screened on a few evaluation images with a short timing run; the promising ones
(feasible at screening, best objective) are re-measured on the whole evaluation split with more repetitions
(successive halving). The chosen candidate and the baseline (the model as given, OpenCV defaults: the way the
article runs it) are then timed again back to back, so the speed-up is measured in the same run.

Small spaces are enumerated; large ones are sampled with optuna's seeded TPE. Every trial runs in a child
process and is committed to OUT/trials.sqlite before the next starts: rerunning on the same OUT resumes.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path

from ..errors import CvtuneError, ModelError
from .config import OptimizeConfig, OptimizeResult
from .final import final_timing
from .pareto import pareto_front
from .space import Candidate, available_techniques, baseline_candidate, build_space
from .store import Store, check_out_dir
from .strategy import choose, promote, screen
from .trials import EventFn, Search, _OutOfTime


def optimize(config: OptimizeConfig, *, on_event: EventFn | None = None) -> OptimizeResult:
    """Run (or resume) the search described by `config`; export the chosen model and write the report.
    Raises KeyboardInterrupt after committing every finished trial when interrupted (Ctrl-C)."""
    try:
        return _optimize(config, on_event)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            raise CvtuneError(f"cannot write to {config.out}: {exc.strerror} ({exc.filename or config.out}); "
                              f"free space or fix permissions, then rerun the same command to resume") from None
        raise


def _optimize(config: OptimizeConfig, on_event: EventFn | None) -> OptimizeResult:
    from .export import export_best

    began = time.monotonic()
    check_out_dir(config.out)
    if not Path(config.model).is_file():
        raise ModelError(f"model file not found: {config.model}")
    search = Search(config, None, on_event)
    search.load()
    with Store.open(config.out) as store:
        search.store = store
        resumed = search.setup()
        emit = search.emit
        emit("start", resumed=resumed, config=config)
        space = build_space(config.space, search.facts, objective=config.objective)
        strategy = "enumerate" if len(space) <= config.enumerate_limit else "optuna-tpe"
        emit("space", size=len(space), strategy=strategy, techniques=available_techniques())
        stopped = ""
        baseline_full = best = None
        try:
            baseline_screen = search.run_baseline(search.rungs["screen"])
            emit("baseline", row=baseline_screen)
            full_rung = search.rungs["full"]
            same_images = full_rung.images == search.rungs["screen"].images
            metric_rung = "screen" if same_images else None
            # The baseline on the whole split first: every later verdict needs it, whatever time is left.
            baseline_full = search.measure(Candidate.from_dict(baseline_screen["candidate"]), full_rung,
                                           metric_rung=metric_rung)
            search.reserve_final(baseline_full)
            strategy, stopped = screen(search, space, baseline_screen)
            screened = [r for r in store.trials("screen") if r["key"] != baseline_screen["key"]]
            promoted = promote(search, screened, baseline_screen)
            phase_end = search.phase_deadline(1.0)
            for i, row in enumerate(promoted):
                # The best-ranked candidate is always re-measured (within the budget); the rest while they fit.
                expected = search.expected_seconds(row, baseline_screen, baseline_full)
                if i and phase_end is not None and time.monotonic() + expected >= phase_end:
                    stopped = stopped or f"time budget: re-measured {i} of {len(promoted)} promoted candidates"
                    break
                emit("progress", done=i, total=len(promoted), phase="full")
                search.measure(Candidate.from_dict(row["candidate"]), full_rung, metric_rung=metric_rung)
        except _OutOfTime:
            stopped = stopped or "time budget ran out"
        full = store.trials("full")
        if baseline_full is None or baseline_full.get("status") != "ok":
            baseline_full = next((r for r in full if r["key"] == baseline_candidate().key() and r["status"] == "ok"),
                                 None) or baseline_full
        met = False
        baseline_final = best_final = None
        if baseline_full is not None and baseline_full["status"] == "ok":
            best, met = choose(search, full, baseline_full)
            if best is not None:
                baseline_final, best_final = final_timing(search, baseline_full, best)
        front = pareto_front([r for r in full if r["status"] == "ok" and r["metric"] is not None],
                             cost=search.cost, score=lambda r: r["metric"])
        trials = store.trials()
        result = OptimizeResult(
            out=Path(config.out), objective=config.objective, budget=config.budget, baseline=baseline_full,
            best=best, met_budget=met, baseline_final=baseline_final, best_final=best_final, front=front,
            n_trials=len(trials), n_failed=sum(r["status"] != "ok" for r in trials), n_candidates=len(space),
            strategy=strategy, resumed=resumed, stopped_early=stopped, notes=search.notes)
        if best is not None and baseline_full is not None:
            result.exported = export_best(result, search)
        result.seconds = time.monotonic() - began
        store.set_meta("result", result.to_dict())
    from ..report import write_report

    result.report = write_report(config.out)
    emit("done", result=result)
    return result


__all__ = ["OptimizeConfig", "OptimizeResult", "Search", "optimize"]
