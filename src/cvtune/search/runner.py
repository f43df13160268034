"""One trial = one candidate measured at one rung, in a child process with a timeout and a memory limit: the
task metric on the evaluation images (when not already known for an equivalent candidate) and the latency of
the model at the candidate's input shape. A segfault, abort, OOM or hang becomes a failed trial with a reason.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import CvtuneError, TrialFailed
from ..isolate import run_isolated
from .space import TEST_HOOKS_ENV


@dataclass(frozen=True)
class Rung:
    """How hard a rung measures: how many evaluation images, and how long the timing runs."""

    name: str
    images: int | None  # None = the whole evaluation split
    warmup: int = 2
    min_runs: int = 5
    min_time_s: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "images": self.images, "warmup": self.warmup, "min_runs": self.min_runs,
                "min_time_s": self.min_time_s}


@dataclass(frozen=True)
class TrialSpec:
    """Everything the child needs, as plain JSON: no live objects cross the process boundary."""

    model: str
    source_model: str
    runtime: dict[str, Any]
    task: str
    task_options: dict[str, Any]
    input_size: list[int] | None
    data: str
    data_kind: str | None
    calib_fraction: float
    seed: int
    eval_images: int | None
    input_shape: list[int]  # the most common timing input (batch included)
    warmup: int = 2
    min_runs: int = 5
    min_time_s: float = 0.3
    measure_metric: bool = True
    instances: int = 1  # > 1: sustained throughput of that many processes (cvtune.throughput)
    timing_shapes: list[list[int]] = field(default_factory=list)  # several: timed over the mix, in turn
    debug: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def kwargs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def run_trial(spec: TrialSpec, *, timeout: float, memory_limit_mb: int | None) -> dict[str, Any]:
    """Run the trial in a child. Returns {'metric': Metrics dict or None, 'timing': {...}, 'seconds': s};
    raises TrialFailed with the reason when the child crashes, hangs, runs out of memory or raises."""
    start = time.perf_counter()
    env = {TEST_HOOKS_ENV: os.environ.get(TEST_HOOKS_ENV, "")}
    result = run_isolated("cvtune.search.runner:_trial_child", spec.kwargs(), timeout=timeout,
                          memory_limit_mb=memory_limit_mb, env=env)
    result["seconds"] = time.perf_counter() - start
    return result


def eval_split(data: str, data_kind: str | None, calib_fraction: float, seed: int):
    """(calibration, evaluation) splits of the dataset, the same in every process for the same arguments."""
    from ..data.loaders import load_dataset

    dataset = load_dataset(data, kind=data_kind)
    if len(dataset) < 2:
        raise CvtuneError(f"{data} has {len(dataset)} image(s); the search needs at least 2 (calibration and "
                          f"evaluation are disjoint)")
    return dataset.split(calib_fraction, seed=seed)


def make_task(task: str, source_model: str, input_size: list[int] | None, options: dict[str, Any]):
    """The task configured for the ORIGINAL model (zoo defaults, OCR charset from its metadata), at `input_size`.
    Transformed copies live under other file names, so they must not be what the task is built from."""
    from ..evaluate import build_task

    options = dict(options)
    if task == "fidelity":
        options.setdefault("reference_model", source_model)
    size = tuple(input_size) if input_size else None
    return build_task(task, source_model, input_size=size, **options)


def _trial_child(model: str, source_model: str, runtime: dict, task: str, task_options: dict,
                 input_size: list[int] | None, data: str, data_kind: str | None, calib_fraction: float, seed: int,
                 eval_images: int | None, input_shape: list[int], warmup: int, min_runs: int, min_time_s: float,
                 measure_metric: bool, instances: int, timing_shapes: list[list[int]], debug: str,
                 extra: dict) -> dict[str, Any]:
    """Runs in the child process (see cvtune.isolate)."""
    if debug and os.environ.get(TEST_HOOKS_ENV) == "1":
        if debug == "abort":
            os.abort()
        if debug == "hang":
            time.sleep(3600)
    from ..bench import _measure_here
    from ..runtimes import runtime_from_dict

    metric = None
    if measure_metric:
        from ..evaluate import evaluate

        _, evaluation = eval_split(data, data_kind, calib_fraction, seed)
        task_obj = make_task(task, source_model, input_size, task_options)
        started = time.perf_counter()
        metrics = evaluate(model, runtime_from_dict(runtime), task_obj, evaluation, limit=eval_images, progress=False)
        metric = {**metrics.to_dict(), "seconds": time.perf_counter() - started}
    if instances > 1:
        from ..throughput import Layout, ThroughputSettings, measure_throughput

        rt = runtime_from_dict(runtime)
        layout = Layout(instances=instances, threads=getattr(rt, "threads", None) or 1, batch=int(input_shape[0]))
        result = measure_throughput(model, rt, tuple(input_shape), layout=layout,
                                    settings=ThroughputSettings(duration_s=max(1.0, min_time_s), warmup=warmup))
        return {"metric": metric, "timing": {"throughput": result.to_dict()}}
    if len({tuple(s) for s in timing_shapes}) > 1:
        return {"metric": metric, "timing": _time_shape_mix(model, runtime, timing_shapes, warmup, min_runs,
                                                            min_time_s)}
    raw = _measure_here(model, runtime, list(input_shape), warmup, min_runs, min_time_s, 100_000)
    return {"metric": metric, "timing": raw}


def _time_shape_mix(model: str, runtime: dict, shapes: list[list[int]], warmup: int, min_runs: int,
                    min_time_s: float) -> dict[str, Any]:
    """Like bench's timing loop, but cycling through the input shapes a per-image-resizing task really feeds
    (each run one shape, in turn), so latency reflects the data rather than one representative size."""
    import resource

    import numpy as np

    from ..runtimes import runtime_from_dict

    start = time.perf_counter()
    session = runtime_from_dict(runtime).open(model)
    rng = np.random.default_rng(0)
    inputs = [rng.random(shape, dtype=np.float32) for shape in shapes]
    session.run(inputs[0])
    load_ms = (time.perf_counter() - start) * 1000
    for x in inputs[1:] + inputs[:1] * warmup:  # each shape once (first runs at a new shape allocate)
        session.run(x)
    times: list[float] = []
    began = time.perf_counter()
    runs = max(min_runs, len(inputs))
    while len(times) < runs or time.perf_counter() - began < min_time_s:
        x = inputs[len(times) % len(inputs)]
        t0 = time.perf_counter()
        session.run(x)
        times.append((time.perf_counter() - t0) * 1000)
        if len(times) >= 100_000:
            break
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"times_ms": times, "load_ms": load_ms, "peak_rss_mb": rss_mb, "shapes": len(inputs)}


def summarize_timing(raw: dict[str, Any], batch: int) -> dict[str, float]:
    """p50/p90/mean latency of one run (one batch) and images/s, from raw times or a throughput measurement."""
    import numpy as np

    if "throughput" in raw:
        t = raw["throughput"]
        return {"p50_ms": t["p50_ms"], "p90_ms": t["p90_ms"], "mean_ms": t["mean_ms"],
                "throughput_ips": t["images_per_s"], "runs": t["runs"], "load_ms": 0.0, "peak_rss_mb": 0.0}

    times = np.asarray(raw["times_ms"], dtype=np.float64)
    mean = float(times.mean())
    return {"p50_ms": float(np.percentile(times, 50)), "p90_ms": float(np.percentile(times, 90)),
            "mean_ms": mean, "throughput_ips": batch * 1000.0 / mean, "runs": int(times.size),
            "load_ms": float(raw.get("load_ms", 0.0)), "peak_rss_mb": float(raw.get("peak_rss_mb", 0.0))}


__all__ = ["Rung", "TrialSpec", "TrialFailed", "run_trial", "eval_split", "make_task", "summarize_timing"]
