"""The child side of a trial: one candidate measured at one rung, in a child process with a timeout and a memory
limit: the task metric on the evaluation images (when not already known for an equivalent candidate) and the
latency of the model at the candidate's input shapes. A segfault, abort, OOM or hang becomes a failed trial with
a reason (cvtune.isolate)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import DatasetError
from ..isolate import run_isolated


@dataclass(frozen=True)
class TrialSpec:
    """Everything the child needs, as plain JSON: no live objects cross the process boundary."""

    model: str
    runtime: dict[str, Any]
    task: dict[str, Any]  # tasks.spec.TaskSpec.to_dict(), resolved once by the parent
    input_size: list[int] | None
    data: str
    data_kind: str | None
    calib_fraction: float
    seed: int
    eval_images: int | None  # the first N images of the evaluation split (None: all)
    input_shape: list[int]  # the most common timing input (batch included)
    warmup: int = 2
    min_runs: int = 5
    min_time_s: float = 0.3
    measure_metric: bool = True
    instances: int = 1  # > 1: sustained throughput of that many processes (cvtune.throughput)
    timing_shapes: list[list[int]] = field(default_factory=list)  # several: timed over the mix, in turn
    debug: str = ""
    eval_start: int = 0  # evaluate images [eval_start, eval_images) of the evaluation split (adaptive chunks)
    measure_timing: bool = True


def run_trial(spec: TrialSpec, *, timeout: float, memory_limit_mb: int | None) -> dict[str, Any]:
    """Run the trial in a child. Returns {'metric': Metrics dict or None, 'timing': Measurement dict, 'seconds'};
    raises TrialFailed with the reason when the child crashes, hangs, runs out of memory or raises."""
    from .space import TEST_HOOKS_ENV

    start = time.perf_counter()
    env = {TEST_HOOKS_ENV: os.environ.get(TEST_HOOKS_ENV, "")}
    result = run_isolated("cvtune.search.runner:_trial_child", asdict(spec), timeout=timeout,
                          memory_limit_mb=memory_limit_mb, env=env)
    result["seconds"] = time.perf_counter() - start
    return result


def eval_split(data: str, data_kind: str | None, calib_fraction: float, seed: int):
    """(calibration, evaluation) splits of the dataset, the same in every process for the same arguments."""
    from ..data.loaders import load_dataset

    dataset = load_dataset(data, kind=data_kind)
    if len(dataset) < 2:
        raise DatasetError(f"{data} has {len(dataset)} image(s); the search needs at least 2 (calibration and "
                           f"evaluation are disjoint)")
    return dataset.split(calib_fraction, seed=seed)


def _claim_child(deploy: str, data: str, data_kind: str | None, calib_fraction: float, seed: int,
                 eval_images: int | None) -> dict[str, Any]:
    """Runs in a child (claim.check_claim): load the deploy.json as a user would and score it on the evaluation
    split."""
    from ..deploy import load_deployed
    from ..evaluate import evaluate

    _, evaluation = eval_split(data, data_kind, calib_fraction, seed)
    deployed = load_deployed(deploy)
    try:
        metrics = evaluate(deployed.model_path, deployed.runtime, deployed.task, evaluation, limit=eval_images,
                           progress=False)
    finally:
        deployed.close()
    return metrics.to_dict(per_image=True)


def _trial_child(model: str, runtime: dict, task: dict, input_size: list[int] | None, data: str,
                 data_kind: str | None, calib_fraction: float, seed: int, eval_images: int | None,
                 input_shape: list[int], warmup: int, min_runs: int, min_time_s: float, measure_metric: bool,
                 instances: int, timing_shapes: list[list[int]], debug: str, eval_start: int,
                 measure_timing: bool) -> dict[str, Any]:
    """Runs in the child process (see cvtune.isolate)."""
    if debug and os.environ.get("CVTUNE_TEST_HOOKS") == "1":  # space.TEST_HOOKS_ENV (not imported: a light child)
        if debug == "abort":
            os.abort()
        if debug == "hang":
            time.sleep(3600)
    from ..runtimes import runtime_from_dict
    from ..tasks.spec import TaskSpec
    from ..timing import latency_stats, time_model

    metric = None
    if measure_metric:
        from ..evaluate import evaluate

        _, evaluation = eval_split(data, data_kind, calib_fraction, seed)
        stop = len(evaluation) if eval_images is None else min(eval_images, len(evaluation))
        chunk = evaluation.subset(list(range(min(eval_start, stop), stop)))
        task_obj = TaskSpec.from_dict(task).build(input_size=input_size)
        started = time.perf_counter()
        metrics = evaluate(model, runtime_from_dict(runtime), task_obj, chunk, progress=False)
        # per-image rows: the paired test compares candidate and baseline image by image
        metric = {**metrics.to_dict(per_image=True), "seconds": time.perf_counter() - started}
    if not measure_timing:
        return {"metric": metric, "timing": None}
    batch = int(input_shape[0])
    if instances > 1:
        from ..throughput import Layout, ThroughputSettings, measure_throughput

        rt = runtime_from_dict(runtime)
        layout = Layout(instances=instances, threads=getattr(rt, "threads", None) or 1, batch=batch)
        result = measure_throughput(model, rt, tuple(input_shape), layout=layout,
                                    settings=ThroughputSettings(duration_s=max(1.0, min_time_s), warmup=warmup))
        timing = {"p50_ms": result.p50_ms, "p90_ms": result.p90_ms, "mean_ms": result.mean_ms,
                  "throughput_ips": result.images_per_s, "runs": result.runs}
        return {"metric": metric, "timing": timing}
    shapes = timing_shapes or [input_shape]
    raw = time_model(model, runtime, shapes, warmup=warmup, min_runs=min_runs, min_time_s=min_time_s)
    stats = latency_stats(raw["times_ms"], batch)
    # the fields of records.Measurement (plain, so the child does not import the optimizer)
    timing = {"p50_ms": stats.p50_ms, "p90_ms": stats.p90_ms, "mean_ms": stats.mean_ms,
              "throughput_ips": stats.throughput_ips, "runs": stats.runs, "load_ms": raw["load_ms"],
              "peak_rss_mb": raw["peak_rss_mb"], "timing_shapes": len({tuple(s) for s in shapes}),
              "times_ms": list(raw["times_ms"])}
    return {"metric": metric, "timing": timing}


__all__ = ["TrialSpec", "run_trial"]
