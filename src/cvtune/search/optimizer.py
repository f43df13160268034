"""The optimizer: an anytime search for the fastest configuration within the accuracy budget.

The model as given (OpenCV defaults: the way the article runs it) is measured first and exported as the answer,
so OUT/best always holds a valid one. Then candidates come in the strategy's order (by default the highest
expected gain per second of cost: planner.py), each measured cheapest verdict first (measure.py: time, adaptive
paired accuracy, interleaved confirmation); a candidate that is confirmed faster and within the budget replaces
the answer. When time runs out the best so far stands. At the end the baseline and the answer are timed back to
back, and the answer is re-measured through its own deploy.json (claim.py): if the claim does not hold, or the
answer is not faster back to back, the model as given is the answer again. The search returns data; the caller
writes the report (cvtune.report.write_report).

Every stage is committed to OUT/trials.sqlite before the next starts: rerunning on the same OUT resumes and
replays the same decisions without measuring anything twice.
"""

from __future__ import annotations

import errno
from pathlib import Path

from ..errors import CvtuneError, ModelError
from ..runtimes import make_runtime
from .claim import Claim, check_claim
from .clock import Clock, OutOfTime
from .config import EXIT_IMPROVED, EXIT_NO_IMPROVEMENT, OptimizeConfig, OptimizeResult
from .context import SearchContext
from .export import export_answer
from .final import final_timing
from .measure import Baseline, Incumbent, Outcome, as_incumbent, measure_candidate
from .pareto import pareto_front
from .ray_eval import ray_evaluation
from .space import Candidate, baseline_candidate, build_space, space_notes
from .store import STORE_NAME, Store, check_out_dir
from .strategy import make_strategy
from .trials import FINAL_ROUNDS, EventFn, Search, check_fit

REPORT_RESERVE_S = 5.0  # writing the report after the search


def optimize(config: OptimizeConfig, *, on_event: EventFn | None = None) -> OptimizeResult:
    """Run (or resume) the search described by `config`; OUT/best holds the answer. Raises KeyboardInterrupt after
    committing every finished stage when interrupted (Ctrl-C); OUT/best then holds the best answer so far."""
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

    clock = Clock(config.time_budget_s, config.trial_timeout_s)
    check_out_dir(config.out)
    if config.ray:  # no Ray, or a cluster that does not answer: one clear error before anything is written
        from ..pipeline.ray_runner import check_address, import_ray

        if config.ray_address:
            check_address(config.ray_address)
        import_ray()
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
        search.emit("start", resumed=resumed, config=config)
        with ray_evaluation(config):  # accuracy stages on a Ray cluster (--ray); nothing without it
            return _search(search, resumed)


def _search(search: Search, resumed: bool) -> OptimizeResult:
    config, clock, store = search.config, search.clock, search.store
    space = build_space(config.space, search.ctx.facts, objective=config.objective)
    search.notes.extend(space_notes(config.space, objective=config.objective))
    strategy = make_strategy(search, space)
    search.emit("space", size=len(space), strategy=strategy.name, candidates=len(strategy.order))
    with clock.unbounded():  # the model as given is the answer of last resort: it is always measured
        baseline = _baseline(search)
    base_cand, timing = baseline.candidate, baseline.timing
    clock.reserve(_final_reserve(search, baseline))
    incumbent = Incumbent(base_cand, timing, baseline.accuracy(), 1.0)
    exported = _export(search, incumbent, baseline)
    timeline = [{"t": round(clock.elapsed(), 2), "key": base_cand.key(), "label": base_cand.label(), "gain": 1.0}]
    search.emit("best", incumbent=incumbent)
    stopped = ""
    measured = 0
    try:
        for cand in strategy:
            if clock.expired():
                stopped = f"time budget: measured {measured} of {len(strategy.order)} candidates"
                break
            why = strategy.why(cand)
            search.emit("candidate", candidate=cand, why=why)
            outcome = measure_candidate(search, cand, incumbent, baseline, why, strategy.expected(cand))
            measured += 1
            _record_result(search, outcome)
            strategy.tell(cand, outcome)
            search.emit("outcome", outcome=outcome)
            if outcome.promoted:
                incumbent = as_incumbent(outcome)
                exported = _export(search, incumbent, baseline) or exported
                clock.reserve(_final_reserve(search, baseline))
                timeline.append({"t": round(clock.elapsed(), 2), "key": cand.key(), "label": cand.label(),
                                 "gain": incumbent.gain})
                search.emit("best", incumbent=incumbent)
        else:
            stopped = strategy.stopped
    except OutOfTime:
        stopped = f"time budget: measured {measured} of {len(strategy.order)} candidates"
    store.set_meta("timeline", timeline)
    store.set_meta("explain", strategy.explain(40))
    return _finish(search, space, strategy.name, resumed, stopped, baseline, incumbent, exported)


def _baseline(search: Search) -> Baseline:
    """The model as given on its own runtime (baseline_candidate: LiteRT for a .tflite where installed, else
    OpenCV's defaults); if that cannot run it, OpenCV's defaults, then ONNX Runtime's."""
    own = baseline_candidate(search.ctx.source)
    chain = {c.key(): c for c in (own, Candidate((), make_runtime("opencv")), Candidate((), make_runtime("ort")))}
    first = None
    for cand in chain.values():
        baseline = Baseline(search, cand)
        first = first or baseline.failed
        if baseline.ok:
            if cand.key() != own.key():
                search.notes.append(f"{own.runtime.label()} could not run the model as given ({first.error}); the "
                                    f"baseline is {cand.runtime.label()} with its defaults")
            elif cand.runtime.name != "opencv":
                search.notes.append(f"the baseline is the model as given in {cand.runtime.label()}, the file's own "
                                    f"runtime: speed-ups count from it, not from OpenCV")
            search.emit("baseline", timing=baseline.timing, accuracy=baseline.accuracy())
            _check_baseline_fidelity(search, cand, baseline)
            return baseline
    raise ModelError(f"the model as given does not run with task '{search.config.task}' on {search.config.data}: "
                     f"{baseline.failed.error}")


def _check_baseline_fidelity(search: Search, cand: Candidate, baseline: Baseline) -> None:
    """Fidelity counts drops from the original as the reference runtime computes it (1.0 against itself), not from
    the baseline's runtime; a baseline already outside the budget of that (OpenCV 5's default engine got MTCNN
    O-Net's outputs wrong: 0.86) is said in the result, since the model as given is then no answer within budget."""
    measured = baseline.accuracy()
    metric = measured.metric if measured is not None else None
    if search.ctx.task.name != "fidelity" or search.config.eval_fn is not None or metric is None:
        return  # the user's own eval_fn has no "1.0 = the original"
    if search.config.budget.allows(metric.level, metric.value):
        return
    search.notes.append(f"the model as given, run as the baseline ({cand.label()}), already differs from the "
                        f"original as the reference runtime computes it ({metric.name} {metric.value:.4f}, where "
                        f"the original scores {metric.level:.4f}): drops are counted from the original, so that "
                        f"runtime's own outputs are outside the budget")


def _final_reserve(search: Search, baseline: Baseline) -> float:
    """Time kept after the search: the final back-to-back timing, completing the baseline's accuracy, the
    claim's re-measurement, the report (per-image costs from what the baseline's first chunk took)."""
    timing_s = max(1.0, baseline.timing.seconds)
    measured = baseline.accuracy()
    per_image = measured.extra.get("accuracy_s", measured.seconds) / max(1, measured.metric.n_images) \
        if measured is not None and measured.metric else 0.5
    n = search.ctx.n_eval
    unseen = n - (measured.metric.n_images if measured is not None and measured.metric else 0)
    return 2 * FINAL_ROUNDS * timing_s + per_image * (n + unseen) + 3.0 + REPORT_RESERVE_S


def _profiles(search: Search, baseline: Candidate, answer: Candidate | None) -> dict[str, dict[str, float]]:
    """Where the time goes in the baseline and the answer: ms per op type from the runtime's own profiler (one
    child each; a runtime without a profiler, or one that fails, is left out)."""
    from ..errors import TrialFailed, UsageError
    from ..profiling import profile_model

    out: dict[str, dict[str, float]] = {}
    for name, cand in (("baseline", baseline), ("best", answer)):
        path = search.models.path(cand)[0] if cand is not None else None
        if path is None:
            continue
        try:
            out[name] = profile_model(path, cand.runtime, search.ctx.input_shape(cand),
                                      timeout=search.clock.timeout(cap=120.0))
        except (TrialFailed, UsageError, CvtuneError):
            continue
    return out


def _record_result(search: Search, outcome: Outcome) -> None:
    """The candidate's one-row summary (derived from its stage trials: rewritten, never measured again)."""
    search.store.record_trial(outcome.summary(), replace=True)


def _export(search: Search, incumbent: Incumbent, baseline: Baseline, *, expected: dict | None = None
            ) -> Path | None:
    improved = incumbent.candidate.key() != baseline.candidate.key()
    base_accuracy = baseline.accuracy()
    what = {"answer": "a confirmed improvement" if improved else "the model as given",
            "gain_vs_baseline": incumbent.gain,
            "drop": incumbent.drop.to_dict() if incumbent.drop is not None else None,
            "baseline_metric": base_accuracy.metric.value if base_accuracy and base_accuracy.metric else None}
    return export_answer(search, incumbent.candidate, timing=incumbent.timing,
                         accuracy=incumbent.accuracy or base_accuracy, expected={**what, **(expected or {})})


def _finish(search: Search, space: list[Candidate], strategy: str, resumed: bool, stopped: str,
            baseline: Baseline, incumbent: Incumbent, exported: Path | None) -> OptimizeResult:
    store, config = search.store, search.config
    base_cand = baseline.candidate
    improved = incumbent.candidate.key() != base_cand.key()
    baseline_final = best_final = None
    claim: Claim | None = None
    if improved:
        with search.clock.unbounded():  # what the answer claims is always checked, even past the budget
            baseline_final, best_final = final_timing(search, base_cand, incumbent.candidate)
            full = baseline.full()
        gain = None if best_final is None else search.objective.gain(search.objective.value(baseline_final),
                                                                     search.objective.value(best_final))
        if gain is None or gain <= 1.0:
            search.notes.append(f"back to back, {incumbent.candidate.label()} was not better than the model as "
                                f"given ({gain or 0:.2f}x): the answer is the model as given")
            improved = False
        elif exported is not None and incumbent.accuracy is not None and incumbent.accuracy.metric is not None \
                and full is not None and full.metric is not None:
            with search.clock.unbounded():
                claim = check_claim(search, exported, incumbent.accuracy.metric, full.metric)
            if not claim.holds:
                why = claim.error or (f"re-measured {claim.remeasured:.4f} vs claimed {claim.claimed:.4f}"
                                      f" (CI {claim.claimed_ci[0]}..{claim.claimed_ci[1]}), drop "
                                      f"{config.budget.describe(claim.drop)}")
                search.notes.append(f"the claim did not hold through deploy.json ({why}): the answer is the "
                                    f"model as given")
                improved = False
        if not improved:
            exported = _export(search, Incumbent(base_cand, baseline.timing, baseline.accuracy(), 1.0), baseline,
                               expected={"rejected": incumbent.candidate.label()})
    if not improved:
        baseline_final = best_final = None
    elif exported is not None:
        exported = _export(search, incumbent, baseline, expected={
            "speedup_vs_baseline": search.objective.gain(search.objective.value(baseline_final),
                                                         search.objective.value(best_final)),
            "baseline_p50_ms": baseline_final.p50_ms if baseline_final else None,
            "claim": claim.to_dict() if claim else None})
    _record_result(search, Outcome(base_cand, baseline.timing, baseline.accuracy(), verdict="baseline", gain=1.0,
                                   why="the model as given"))
    with search.clock.unbounded():
        store.set_meta("profiles", _profiles(search, base_cand, incumbent.candidate if improved else None))
    results = store.trials("result")
    summary = {t.key: t for t in results}
    # the front: every candidate with a paired drop (and the baseline, drop 0), fast and accurate against each other
    scored = [t for t in results if t.measured and (t.key == base_cand.key() or t.extra.get("drop") is not None)]
    front = pareto_front(scored, cost=search.cost, score=lambda t: -(t.extra.get("drop") or 0.0))
    answer = incumbent.candidate if improved else base_cand
    result = OptimizeResult(
        out=Path(config.out), objective=config.objective, budget=config.budget,
        baseline=summary.get(base_cand.key()), best=summary.get(answer.key()), met_budget=True,
        improved=improved, baseline_final=baseline_final, best_final=best_final, front=front,
        n_trials=len(results), n_failed=sum(not t.ok for t in results),
        n_candidates=1 + sum(c.key() != base_cand.key() for c in space),  # the model as given, once
        strategy=strategy, resumed=resumed, stopped_early=stopped, notes=search.notes, exported=exported,
        claim=claim.to_dict() if claim else None, seconds=search.clock.elapsed())
    result.exit_code = EXIT_IMPROVED if improved else EXIT_NO_IMPROVEMENT
    store.set_meta("result", result.to_dict())
    search.emit("done", result=result)
    return result


__all__ = ["OptimizeConfig", "OptimizeResult", "optimize"]
