"""The one timing path: the loop that times a session, the child-side measurement of a model file, and the latency
statistics every report uses (bench, throughput, the search).

    raw = time_model("model.onnx", make_runtime("ort", threads=1), [(1, 3, 224, 224)],
                     warmup=3, min_runs=10, min_time_s=1.0)
    stats = latency_stats(raw["times_ms"], batch=1)

`time_model` runs in the current process; callers that want isolation run it in a child (cvtune.isolate) by name,
"cvtune.timing:time_model", with JSON arguments.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import TrialFailed, UsageError
from .runtimes import Runtime, runtime_from_dict

__all__ = ["LatencyStats", "latency_stats", "time_model", "time_session"]


def _check_loop(warmup: int, min_runs: int, min_time_s: float, max_runs: int) -> None:
    if warmup < 0 or min_runs < 1 or min_time_s < 0 or max_runs < 1:
        raise UsageError(f"timing needs warmup >= 0, min_runs >= 1, min_time >= 0 and max_runs >= 1 (got warmup "
                         f"{warmup}, min_runs {min_runs}, min_time {min_time_s}, max_runs {max_runs})")


def time_session(session: Any, inputs: Sequence[np.ndarray], *, warmup: int, min_runs: int, min_time_s: float,
                 max_runs: int) -> list[float]:
    """Time `session.run` on `inputs`, in turn; return the milliseconds of each timed run.

    Warm-up first: every distinct input shape once (the first run at a new shape allocates), then `warmup` more runs
    cycling through `inputs`. Then timed runs, cycling through `inputs` (repeat an input to weigh its shape more),
    until at least `min_runs` runs and `min_time_s` seconds are done. Runs stop only after a whole cycle, so every
    input weighs the same in the times; `max_runs` is a hard cap that wins over everything else."""
    if not inputs:
        raise UsageError("timing needs at least one input")
    _check_loop(warmup, min_runs, min_time_s, max_runs)
    seen: set[tuple[tuple[int, ...], str]] = set()
    for x in inputs:
        key = (tuple(x.shape), x.dtype.str)
        if key not in seen:
            seen.add(key)
            session.run(x)
    for i in range(warmup):
        session.run(inputs[i % len(inputs)])
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < max_runs:
        i = len(times) % len(inputs)
        if i == 0 and len(times) >= min_runs and time.perf_counter() - began >= min_time_s:
            break
        t0 = time.perf_counter()
        session.run(inputs[i])
        times.append((time.perf_counter() - t0) * 1000)
    return times


def time_model(model: str, runtime: dict[str, Any] | Runtime, shapes: Sequence[Sequence[int]], *, warmup: int,
               min_runs: int, min_time_s: float, max_runs: int = 100_000, seed: int = 0) -> dict[str, Any]:
    """Open `model` with `runtime` and time it on random float32 inputs of `shapes` (see time_session), here, in
    this process. Opening plus the first run (which may compile and allocate) is the load time.

    Returns JSON-able raw numbers: {"times_ms": [...], "load_ms": ms, "peak_rss_mb": MB of this process,
    "shapes": [[...], ...] (the shapes as timed, in turn)}."""
    import resource

    if not shapes:
        raise UsageError("timing needs at least one input shape")
    _check_loop(warmup, min_runs, min_time_s, max_runs)
    rt = runtime_from_dict(runtime) if isinstance(runtime, dict) else runtime
    rng = np.random.default_rng(seed)
    inputs = [rng.random(tuple(int(d) for d in shape), dtype=np.float32) for shape in shapes]
    start = time.perf_counter()
    session = rt.open(model)
    session.run(inputs[0])
    load_ms = (time.perf_counter() - start) * 1000
    times = time_session(session, inputs, warmup=warmup, min_runs=min_runs, min_time_s=min_time_s,
                         max_runs=max_runs)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return {"times_ms": times, "load_ms": load_ms, "peak_rss_mb": rss_mb, "shapes": [list(x.shape) for x in inputs]}


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one run (one batch) over `runs` timed runs, and images/s = batch / mean latency."""

    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    throughput_ips: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def latency_stats(times_ms: Sequence[float], batch: int) -> LatencyStats:
    """Percentiles (linear interpolation), mean, population std and min of `times_ms`; raises TrialFailed when
    there is no time to summarize."""
    times = np.asarray(times_ms, dtype=np.float64)
    if times.size == 0:
        raise TrialFailed("no timed run to summarize")
    if batch < 1:
        raise UsageError(f"batch must be >= 1 (got {batch})")
    p50, p90, p99 = (float(v) for v in np.percentile(times, [50, 90, 99]))
    mean = float(times.mean())
    return LatencyStats(runs=int(times.size), p50_ms=p50, p90_ms=p90, p99_ms=p99, mean_ms=mean,
                        std_ms=float(times.std()), min_ms=float(times.min()),
                        throughput_ips=batch * 1000.0 / mean if mean > 0 else float("inf"))
