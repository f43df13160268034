"""The optimizer: search every technique together for the fastest configuration within the accuracy budget.

Cheap first: every candidate is screened on a few evaluation images with a short timing run; the promising ones
(feasible at screening, best objective) are re-measured on the whole evaluation split with more repetitions
(successive halving). The chosen candidate and the baseline (the model as given, OpenCV defaults: the way the
article runs it) are then timed again back to back, so the speed-up is measured in the same run.

Every trial runs in a child process and is committed to OUT/trials.sqlite before the next starts: rerunning on the
same OUT resumes. The search returns data; the caller writes the report (cvtune.report.write_report).
"""

from __future__ import annotations

import errno
import time
from pathlib import Path

from ..errors import CvtuneError, ModelError
from .clock import Clock, OutOfTime
from .config import OptimizeConfig, OptimizeResult
from .context import SearchContext
from .final import final_timing
from .pareto import pareto_front
from .space import baseline_candidate, build_space
from .store import STORE_NAME, Store, check_out_dir
from .strategy import choose, make_strategy, promote, screen
from .trials import FINAL_ROUNDS, EventFn, Search, check_fit


def optimize(config: OptimizeConfig, *, on_event: EventFn | None = None) -> OptimizeResult:
    """Run (or resume) the search described by `config` and export the chosen model (OUT/best). Raises
    KeyboardInterrupt after committing every finished trial when interrupted (Ctrl-C)."""
    try:
        return _optimize(config, on_event)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            where = exc.filename2 or config.out  # copyfile names its source (the input model) first
            raise CvtuneError(f"cannot write to {config.out}: {exc.strerror} ({where}); "
                              f"free space or fix permissions, then rerun the same command to resume") from None
        raise


def _optimize(config: OptimizeConfig, on_event: EventFn | None) -> OptimizeResult:
    from ..runtimes.devices import machine_info
    from .export import export_best

    clock = Clock(config.time_budget_s, config.trial_timeout_s)
    check_out_dir(config.out)
    if not Path(config.model).is_file():
        raise ModelError(f"model file not found: {config.model}")
    ctx = SearchContext.load(config)
    if (Path(config.out) / STORE_NAME).is_file():  # resuming: other settings are refused before any measuring
        with Store.open(config.out, create=False) as store:
            store.check_identity(ctx.identity(), record=False)
    check_fit(ctx, clock)
    with Store.open(config.out) as store:
        search = Search(ctx, store, clock, on_event)
        resumed = store.check_identity(ctx.identity())
        store.set_meta("config", config.to_dict())
        store.set_meta("machine", machine_info())
        store.set_meta("facts", {"representative_size": ctx.facts.representative_size,
                                 "resizable": ctx.facts.resizable, "model_name": ctx.source.name,
                                 "preprocessing": ctx.task.preprocessing.to_dict() if ctx.task.preprocessing
                                 else None, "preprocessing_source": ctx.task.preprocessing_source})
        emit = search.emit
        emit("start", resumed=resumed, config=config)
        space = build_space(config.space, ctx.facts, objective=config.objective)
        strategy_name = "enumerate" if len(space) <= config.enumerate_limit else "optuna-tpe"
        emit("space", size=len(space), strategy=strategy_name)
        stopped = ""
        baseline_full = best = None
        try:
            baseline_screen = search.run_baseline(ctx.rungs["screen"])
            emit("baseline", trial=baseline_screen)
            full_rung = ctx.rungs["full"]
            metric_rung = "screen" if full_rung.images == ctx.rungs["screen"].images else None
            # The baseline on the whole split first: every later verdict needs it, whatever time is left.
            baseline_full = search.measure(baseline_screen.candidate, full_rung, metric_rung=metric_rung)
            if baseline_full.ok:
                eval_s = (baseline_full.metric.seconds if baseline_full.metric else None) or 0.0
                clock.reserve_final(max(1.0, baseline_full.seconds - eval_s), FINAL_ROUNDS)
            strategy = make_strategy(search, space, baseline_screen)
            strategy_name = strategy.name
            stopped = screen(search, strategy)
            screened = [t for t in store.trials("screen") if t.key != baseline_screen.key]
            promoted = promote(search, screened, baseline_screen)
            phase_end = clock.phase_deadline(1.0)
            ratio = baseline_full.seconds / max(baseline_screen.seconds, 1e-3)
            for i, trial in enumerate(promoted):
                # The best-ranked candidate is always re-measured (within the budget); the rest while they fit.
                expected = trial.seconds * max(1.0, ratio)
                if i and phase_end is not None and time.monotonic() + expected >= phase_end:
                    stopped = stopped or f"time budget: re-measured {i} of {len(promoted)} promoted candidates"
                    break
                emit("progress", done=i, total=len(promoted), phase="full")
                search.measure(trial.candidate, full_rung, metric_rung=metric_rung)
        except OutOfTime:
            stopped = stopped or "time budget ran out"
        full = store.trials("full")
        if baseline_full is None or not baseline_full.ok:
            baseline_full = next((t for t in full if t.key == baseline_candidate().key() and t.ok), None) \
                or baseline_full
        met = False
        baseline_final = best_final = None
        if baseline_full is not None and baseline_full.ok:
            best, met = choose(search, full, baseline_full)
            if best is not None:
                baseline_final, best_final = final_timing(search, baseline_full, best)
        front = pareto_front([t for t in full if t.measured], cost=search.cost,
                             score=lambda t: t.metric.value)
        trials = store.trials()
        result = OptimizeResult(
            out=Path(config.out), objective=config.objective, budget=config.budget, baseline=baseline_full,
            best=best, met_budget=met, baseline_final=baseline_final, best_final=best_final, front=front,
            n_trials=len(trials), n_failed=sum(not t.ok for t in trials), n_candidates=len(space),
            strategy=strategy_name, resumed=resumed, stopped_early=stopped, notes=search.notes)
        if best is not None and baseline_full is not None:
            result.exported = export_best(result, search)
        result.seconds = time.monotonic() - clock.started
        store.set_meta("result", result.to_dict())
    emit("done", result=result)
    return result


__all__ = ["OptimizeConfig", "OptimizeResult", "optimize"]
