"""Measuring one candidate at one rung: build its model (cached), probe the runtime (cached), then a trial in a
child process, committed to the store as a typed Trial. `Search` bundles the pieces of one run (context, clock,
store, model cache, trial runner, objective) for the strategy, the final timing and the export."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DatasetError, ModelError, TrialFailed
from ..runtimes import make_runtime
from .clock import Clock, OutOfTime
from .context import Rung, SearchContext
from .goals import Objective, get_objective
from .models import ModelCache
from .records import Measurement, MetricResult, Trial
from .runner import TrialSpec, run_trial
from .space import Candidate, baseline_candidate
from .store import Store

EventFn = Callable[..., None]
FINAL_ROUNDS = 2  # the final timing alternates baseline and chosen this many times each


def _noop(*_: Any, **__: Any) -> None:
    return None


def run_child(ctx: SearchContext, cand: Candidate, path: Path, rung: Rung, *, measure_metric: bool, timeout: float,
              ) -> dict[str, Any]:
    """One child process: the metric (when asked) and the timing of `cand` at `rung`."""
    spec = TrialSpec(
        model=str(path), runtime=cand.runtime.to_dict(), task=ctx.task_spec(cand).to_dict(),
        input_size=list(cand.input_size) if cand.input_size else None, data=str(ctx.config.data),
        data_kind=ctx.config.data_kind, calib_fraction=ctx.config.calib_fraction, seed=ctx.config.seed,
        eval_images=rung.images, input_shape=ctx.input_shape(cand), timing_shapes=ctx.input_shapes(cand),
        warmup=rung.warmup, min_runs=rung.min_runs, min_time_s=rung.min_time_s, measure_metric=measure_metric,
        instances=cand.instances, debug=cand.debug)
    return run_trial(spec, timeout=timeout, memory_limit_mb=ctx.config.memory_limit_mb)


def check_fit(ctx: SearchContext, clock: Clock) -> None:
    """One image through the model as given (ONNX Runtime, else OpenCV; in a child): a model the task does not
    fit is one clear error before anything is written, not a search full of failed trials."""
    from ..data.base import read_image

    first = next((i for i, s in enumerate(ctx.evaluation.samples) if read_image(s.path) is not None), None)
    if first is None:
        raise DatasetError(f"none of the {len(ctx.evaluation)} evaluation images in {ctx.config.data} can be read")
    errors = []
    for runtime in (make_runtime("ort"), make_runtime("opencv")):
        try:  # the evaluation split up to its first readable image (an unreadable one is skipped, not blamed)
            run_child(ctx, Candidate((), runtime), ctx.source,
                      Rung("fit", first + 1, warmup=0, min_runs=1, min_time_s=0.0),
                      measure_metric=True, timeout=min(120.0, ctx.config.trial_timeout_s))
            return
        except TrialFailed as exc:
            errors.append(str(exc))
    raise ModelError(f"{ctx.source.name} does not run with task '{ctx.config.task}' on {ctx.config.data}: "
                     f"{errors[0]}")


class TrialRunner:
    """Measures candidates and commits each Trial before the next starts (a killed search resumes from them)."""

    def __init__(self, ctx: SearchContext, store: Store, clock: Clock, models: ModelCache, emit: EventFn) -> None:
        self.ctx, self.store, self.clock, self.models, self.emit = ctx, store, clock, models, emit

    def measure(self, cand: Candidate, rung: Rung, *, metric_rung: str | None = None,
                rung_name: str | None = None) -> Trial:
        """Measure `cand` at `rung` unless the store already has it; commit the trial; return it."""
        name = rung_name or rung.name
        existing = self.store.trial(cand.key(), name)
        if existing is not None:
            return existing
        if self.clock.expired():
            raise OutOfTime()
        self.emit("trial_start", candidate=cand, rung=name)
        started = time.time()
        path, model_key, error = self.models.path(cand)
        base = Trial(cand, name, "failed", model_key=model_key, metric_key=cand.metric_key(self.ctx.source_hash),
                     input_shape=tuple(self.ctx.input_shape(cand)), rung_images=rung.images, started=started)
        if path is None:
            return self.record(base.with_(error=error))
        ok, probe_error = self.models.probe(path, model_key, cand)
        if not ok:
            return self.record(base.with_(status="ruled_out", error=f"ruled out by probe: {probe_error}"))
        known = self.store.metric_for(base.metric_key, metric_rung or name)
        try:
            result = run_child(self.ctx, cand, path, rung, measure_metric=known is None, timeout=self.clock.timeout())
        except TrialFailed as exc:
            self.clock.check(exc)
            return self.record(base.with_(error=str(exc)))
        return self.record(self.finish(base, path, result, known))

    def finish(self, base: Trial, path: Path, result: dict[str, Any], known: Trial | None) -> Trial:
        """A successful trial from a child's result; the metric comes from `known` when an equivalent candidate
        (same outputs) already measured it."""
        if known is not None and known.metric is not None:
            metric = known.metric if known.metric.source else \
                MetricResult(**{**known.metric.to_dict(), "source": f"{known.key}@{known.rung}", "details": {},
                                "seconds": None})
        else:
            m = result["metric"]
            ci = m.get("ci95") or [None, None]
            metric = MetricResult(m["metric"], m["value"], ci[0], ci[1], m["n_images"], "", m.get("details", {}),
                                  m.get("seconds"))
        return base.with_(status="ok", timing=Measurement.from_dict(result["timing"]), metric=metric,
                          size_bytes=self.models.size(path, base.model_key), seconds=result["seconds"])

    def record(self, trial: Trial) -> Trial:
        finished = time.time()
        trial = trial.with_(finished=finished, seconds=trial.seconds or finished - trial.started)
        self.store.record_trial(trial)
        self.emit("trial_done", trial=trial)
        return trial


class Search:
    """The pieces of one optimize run, for the strategy, the final timing and the export."""

    def __init__(self, ctx: SearchContext, store: Store, clock: Clock, on_event: EventFn | None = None) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.store = store
        self.clock = clock
        self.emit = on_event or _noop
        self.models = ModelCache(ctx, store, clock, self.emit)
        self.runner = TrialRunner(ctx, store, clock, self.models, self.emit)
        self.objective: Objective = get_objective(ctx.config.objective)
        self.notes: list[str] = []

    def measure(self, cand: Candidate, rung: Rung, **kwargs: Any) -> Trial:
        return self.runner.measure(cand, rung, **kwargs)

    def run_baseline(self, rung: Rung) -> Trial:
        """The model as given with OpenCV's defaults; if OpenCV cannot run it, ONNX Runtime's defaults."""
        first = None
        for cand in (baseline_candidate(), Candidate((), make_runtime("ort"))):
            trial = self.measure(cand, rung)
            first = first or trial
            if trial.ok:
                if cand != baseline_candidate():
                    self.notes.append(f"OpenCV could not run the model as given ({first.error}); the baseline is "
                                      f"ONNX Runtime with its defaults")
                return trial
        raise ModelError(f"the model as given does not run with task '{self.config.task}' on {self.config.data}: "
                         f"{trial.error}")

    def feasible(self, trial: Trial, baseline: Trial, *, slack: float = 0.0) -> bool:
        return trial.measured and baseline.metric is not None and \
            self.config.budget.allows(baseline.metric.value, trial.metric.value, slack=slack)  # type: ignore[union-attr]

    def drop(self, trial: Trial, baseline: Trial) -> float:
        if trial.metric is None or baseline.metric is None:
            return float("inf")
        return self.config.budget.drop(baseline.metric.value, trial.metric.value)

    def cost(self, trial: Trial) -> float:
        return self.objective.sort_key(self.objective.value(trial))
