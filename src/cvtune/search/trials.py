"""Measuring one candidate at one stage: build its model (cached), probe the runtime (cached), then a child process
that times it or evaluates it on a range of the evaluation split, committed to the store as a typed Trial. A stage
already in the store is never measured again (a killed search resumes). `Search` bundles the pieces of one run
(context, clock, store, model cache, trial runner, objective) for the strategy, the final timing and the export."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CvtuneError, DatasetError, ModelError, TrialFailed
from ..runtimes import make_runtime
from . import ray_eval
from .clock import Clock, OutOfTime
from .context import Rung, SearchContext
from .goals import Objective, get_objective
from .models import ModelCache
from .records import Measurement, MetricResult, Trial
from .runner import TrialSpec, run_trial
from .space import Candidate
from .store import Store

EventFn = Callable[..., None]
FINAL_ROUNDS = 2  # the final timing alternates baseline and chosen this many times each


def _noop(*_: Any, **__: Any) -> None:
    return None


def child_spec(ctx: SearchContext, cand: Candidate, path: Path, rung: Rung, *, measure_metric: bool,
               measure_timing: bool = True, eval_range: tuple[int, int] | None = None) -> TrialSpec:
    """What one child measures: the metric on evaluation images [start, stop) (when asked) and/or the timing."""
    start, stop = eval_range if eval_range is not None else (0, rung.images)
    return TrialSpec(
        model=str(path), runtime=cand.runtime.to_dict(), task=ctx.task_spec(cand).to_dict(),
        input_size=list(cand.input_size) if cand.input_size else None, data=str(ctx.config.data),
        data_kind=ctx.config.data_kind, calib_fraction=ctx.config.calib_fraction, seed=ctx.config.seed,
        eval_images=stop, eval_start=start, input_shape=ctx.input_shape(cand), timing_shapes=ctx.input_shapes(cand),
        warmup=rung.warmup, min_runs=rung.min_runs, min_time_s=rung.min_time_s, measure_metric=measure_metric,
        measure_timing=measure_timing, instances=cand.instances, debug=cand.debug)


def run_child(ctx: SearchContext, cand: Candidate, path: Path, rung: Rung, *, measure_metric: bool, timeout: float,
              measure_timing: bool = True, eval_range: tuple[int, int] | None = None) -> dict[str, Any]:
    """One child process: the metric on evaluation images [start, stop) (when asked) and/or the timing."""
    spec = child_spec(ctx, cand, path, rung, measure_metric=measure_metric, measure_timing=measure_timing,
                      eval_range=eval_range)
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
        cand = Candidate((), runtime)
        try:  # the evaluation split up to its first readable image (an unreadable one is skipped, not blamed)
            from ..convert import ensure_onnx  # a .tflite/.pb runs in ONNX Runtime as its ONNX conversion

            run_child(ctx, cand, ensure_onnx(ctx.source) if ctx.converted(cand) else ctx.source,
                      Rung("fit", first + 1, warmup=0, min_runs=1, min_time_s=0.0),
                      measure_metric=True, timeout=max(120.0, ctx.config.trial_timeout_s))
            return
        except (TrialFailed, CvtuneError) as exc:
            errors.append(str(exc))
    raise ModelError(f"{ctx.source.name} does not run with task '{ctx.config.task}' on {ctx.config.data}: "
                     f"{errors[0]}")


def merge_metrics(parts: list[MetricResult]) -> MetricResult:
    """Metrics of consecutive image ranges as one: per-image statistics concatenated and the headline value
    recomputed from them with the task's statistic (with its bootstrap CI); a single part is returned as it is."""
    if len(parts) == 1:
        return parts[0]
    from .sequential import statistic_of

    first = parts[0]
    rows = tuple(row for p in parts for row in p.per_image)
    n = sum(p.n_images for p in parts)
    statistic = statistic_of({"statistic": first.statistic, "per_image": rows})
    if statistic is None:  # no per-image statistics: an image-weighted mean of the parts
        value = sum(p.value * p.n_images for p in parts) / max(n, 1)
        return replace(first, value=value, ci_low=None, ci_high=None, n_images=n, details={}, per_image=(),
                       reference_per_image=())
    from ..tasks.metrics import bootstrap_ci

    values = np.asarray(rows, dtype=np.float64)
    value = float(statistic(values.sum(0, keepdims=True), len(rows))[0])
    low, high = bootstrap_ci(values, statistic)
    seconds = sum(p.seconds or 0.0 for p in parts)
    reference = tuple(row for p in parts for row in p.reference_per_image)
    return replace(first, value=value, ci_low=low, ci_high=high, n_images=n, details={}, per_image=rows,
                   seconds=seconds, reference_per_image=reference if len(reference) == len(rows) else ())


class TrialRunner:
    """Measures candidates stage by stage and commits each Trial before the next starts."""

    def __init__(self, ctx: SearchContext, store: Store, clock: Clock, models: ModelCache, emit: EventFn) -> None:
        self.ctx, self.store, self.clock, self.models, self.emit = ctx, store, clock, models, emit

    def _start(self, cand: Candidate, name: str, images: int | None) -> tuple[Trial | None, Path | None]:
        """The stage's trial skeleton, or a finished failure (no model, ruled out by the probe)."""
        if self.clock.expired():
            raise OutOfTime()
        self.emit("trial_start", candidate=cand, rung=name)
        started = time.time()
        build_started = time.monotonic()
        path, model_key, error = self.models.path(cand)
        base = Trial(cand, name, "failed", model_key=model_key, metric_key=cand.metric_key(self.ctx.source_hash),
                     input_shape=tuple(self.ctx.input_shape(cand)), rung_images=images, started=started,
                     extra={"build_s": round(time.monotonic() - build_started, 3)})
        if path is None:
            return self.record(base.with_(error=error)), None
        ok, probe_error = self.models.probe(path, model_key, cand)
        if not ok:
            return self.record(base.with_(status="ruled_out", error=f"ruled out by probe: {probe_error}")), None
        return base, path

    def timing(self, cand: Candidate, rung: Rung) -> Trial:
        """Time `cand` alone (no accuracy workers run meanwhile); cached by (candidate, rung)."""
        existing = self.store.trial(cand.key(), rung.name)
        if existing is not None:
            return existing
        base, path = self._start(cand, rung.name, None)
        if path is None:
            return base  # type: ignore[return-value]
        assert base is not None
        try:
            result = run_child(self.ctx, cand, path, rung, measure_metric=False, timeout=self.clock.timeout())
        except TrialFailed as exc:
            self.clock.check(exc)
            return self.record(base.with_(error=str(exc)))
        return self.record(base.with_(status="ok", timing=Measurement.from_dict(result["timing"]),
                                      size_bytes=self.models.size(path, base.model_key), seconds=result["seconds"],
                                      extra={**base.extra, "timing_s": round(result["seconds"], 3)}))

    def accuracy(self, cand: Candidate, start: int, stop: int) -> Trial:
        """The task metric of `cand` on evaluation images [start, stop), in `eval_workers` children at once;
        shared by every candidate that computes the same outputs (same metric key)."""
        name = f"accuracy:{start}-{stop}"
        existing = self.store.trial(cand.key(), name)
        if existing is not None:
            return existing
        metric_key = cand.metric_key(self.ctx.source_hash)
        known = self.store.metric_for(metric_key, name)
        base, path = self._start(cand, name, stop - start)
        if path is None:
            return base  # type: ignore[return-value]
        assert base is not None
        if known is not None and known.metric is not None:
            metric = known.metric if known.metric.source else replace(known.metric, source=f"{known.key}@{name}")
            return self.record(base.with_(status="ok", metric=metric, size_bytes=self.models.size(path,
                                                                                                  base.model_key)))
        if self.ctx.config.eval_fn is not None:
            return self._user_metric(cand, path, base)
        workers = max(1, min(self.ctx.config.eval_workers, stop - start))
        bounds = np.linspace(start, stop, workers + 1).round().astype(int)
        ranges = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
        runner = cand  # accuracy does not depend on threads: parallel workers share the cores
        if len(ranges) > 1 and hasattr(cand.runtime, "threads"):
            threads = max(1, (os.cpu_count() or 1) // len(ranges))
            runner = replace(cand, runtime=replace(cand.runtime, threads=threads))
        rung = Rung(name, stop)
        started = time.perf_counter()
        try:
            if ray_eval.active():  # --ray: one Ray task per range, on the cluster's CPUs
                specs = [child_spec(self.ctx, cand, path, rung, measure_metric=True, measure_timing=False,
                                    eval_range=r) for r in ranges]
                results = ray_eval.run_on_ray(specs, timeout=self.clock.timeout(),
                                              memory_limit_mb=self.ctx.config.memory_limit_mb)
            else:
                with ThreadPoolExecutor(len(ranges)) as pool:
                    results = list(pool.map(lambda r: run_child(self.ctx, runner, path, rung, measure_metric=True,
                                                                measure_timing=False, eval_range=r,
                                                                timeout=self.clock.timeout()), ranges))
        except TrialFailed as exc:
            self.clock.check(exc)
            return self.record(base.with_(error=str(exc)))
        metric = merge_metrics([MetricResult.from_metrics(r["metric"]) for r in results])
        seconds = time.perf_counter() - started
        return self.record(base.with_(status="ok", metric=metric, size_bytes=self.models.size(path, base.model_key),
                                      seconds=seconds, extra={**base.extra, "accuracy_s": round(seconds, 3)}))

    def _user_metric(self, cand: Candidate, path: Path, base: Trial) -> Trial:
        """The user's eval_fn(deployed) on this candidate, in this process (it is the user's own code)."""
        from ..deploy import Deployed

        started = time.perf_counter()
        deployed = Deployed.from_model(path, cand.runtime, self.ctx.task_spec(cand), input_size=cand.input_size,
                                       batch=cand.batch)
        try:
            value = float(self.ctx.config.eval_fn(deployed))  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - the user's function may raise anything: the candidate fails
            return self.record(base.with_(error=f"eval_fn raised {type(exc).__name__}: {str(exc)[:200]}"))
        finally:
            deployed.close()
        seconds = time.perf_counter() - started
        metric = MetricResult("eval_fn", value, seconds=seconds)
        return self.record(base.with_(status="ok", metric=metric, size_bytes=self.models.size(path, base.model_key),
                                      seconds=seconds, extra={**base.extra, "accuracy_s": round(seconds, 3)}))

    def record(self, trial: Trial) -> Trial:
        finished = time.time()
        started = trial.started or finished
        trial = trial.with_(started=started, finished=finished, seconds=trial.seconds or finished - started)
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

    def cost(self, trial: Trial) -> float:
        return self.objective.sort_key(self.objective.value(trial))
