"""Latency and throughput of one model + runtime configuration, each measured in its own child process.

The timing itself is cvtune.timing (warm-up, then repeated runs until both a minimum count and a minimum time are
reached). Reports p50/p90/p99/mean/std, throughput (images/s), peak RSS of the child, model load time and GFLOP/s
from cvtune's own FLOP count.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import CvtuneError, ModelError, UsageError
from .isolate import run_isolated
from .runtimes import Runtime
from .timing import LatencyStats, latency_stats


@dataclass(frozen=True)
class BenchSettings:
    """How long to measure: at least `min_runs` runs and `min_time_s` seconds, after `warmup` runs."""

    warmup: int = 3
    min_runs: int = 10
    min_time_s: float = 1.0
    max_runs: int = 10_000
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.min_runs < 1 or self.warmup < 0 or self.min_time_s < 0:
            raise UsageError("bench needs min_runs >= 1, warmup >= 0 and min_time >= 0")


@dataclass(frozen=True)
class BenchResult(LatencyStats):
    """One configuration's latency statistics (LatencyStats' fields) plus what was measured and how it loaded."""

    label: str
    runtime: dict[str, Any]
    model: str
    input_shape: tuple[int, ...]
    load_ms: float
    peak_rss_mb: float
    flops: int | None = None
    gflops_per_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data


def summarize(label: str, runtime: Runtime, model: str, input_shape: tuple[int, ...], raw: dict,
              flops: int | None) -> BenchResult:
    """A BenchResult from time_model's raw numbers (latency_stats of its times, batch = input_shape[0])."""
    stats = latency_stats(raw["times_ms"], input_shape[0])
    return BenchResult(
        label=label, runtime=runtime.to_dict(), model=model, input_shape=input_shape, **stats.to_dict(),
        load_ms=float(raw["load_ms"]), peak_rss_mb=float(raw["peak_rss_mb"]),
        flops=flops, gflops_per_s=(flops / (stats.mean_ms / 1000.0) / 1e9) if flops else None,
    )


def _load_model(model_path: Path):
    """Model.load, cached per file version: shape resolution and the FLOP count of one measurement share it."""
    stat = model_path.stat()
    return _load_model_cached(str(model_path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _load_model_cached(path: str, _mtime_ns: int, _size: int):
    from .model import Model

    return Model.load(path)


def resolve_input_shape(model_path: str | Path, input_shape: tuple[int, ...] | None, batch: int) -> tuple[int, ...]:
    """The shape to feed: given, or the model's default; with the batch dim set to `batch` (checked)."""
    if batch < 1:
        raise UsageError(f"batch must be >= 1 (got {batch})")
    model_path = Path(model_path)
    if model_path.suffix.lower() != ".onnx":  # .tflite / .pb: the shape the file declares, as NCHW
        from .model import default_input_shape

        shape = input_shape or default_input_shape(model_path)
        return (batch if batch > 1 else shape[0], *shape[1:])
    model = _load_model(model_path)
    shape = input_shape or model.default_input_shape()
    declared = model.inputs[0].shape
    if len(shape) != len(declared):
        raise UsageError(f"input shape {'x'.join(map(str, shape))} has {len(shape)} dims but the model's input "
                         f"'{model.inputs[0].name}' has {len(declared)}")
    for i, (want, have) in enumerate(zip(shape, declared, strict=True)):
        if i > 0 and isinstance(have, int) and have > 0 and want != have:
            raise UsageError(f"input shape {'x'.join(map(str, shape))} does not fit the model: dim {i} is fixed "
                             f"at {have}")
    effective = (batch if batch > 1 else shape[0], *shape[1:])
    first = declared[0]
    if effective[0] > 1 and isinstance(first, int) and first == 1:
        raise UsageError(f"the model's batch dim is fixed at 1, so batch {effective[0]} cannot run; make it dynamic "
                         f"first or use batch 1")
    return effective


def count_flops(model_path: str | Path, input_shape: tuple[int, ...]) -> int | None:
    if Path(model_path).suffix.lower() not in (".onnx", ".tflite"):  # a .tflite is counted on its ONNX conversion
        return None
    try:
        return _load_model(Path(model_path)).total_flops(input_shape) or None
    except CvtuneError:
        return None


def measure(model_path: str | Path, runtime: Runtime, input_shape: tuple[int, ...] | None = None, *, batch: int = 1,
            settings: BenchSettings | None = None, label: str | None = None) -> BenchResult:
    """Benchmark one configuration in a child process. Raises TrialFailed if it crashes or times out."""
    settings = settings or BenchSettings()
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"model file not found: {model_path}")
    runtime.check()  # refuse unavailable targets/providers before spawning
    shape = resolve_input_shape(model_path, input_shape, batch)
    raw = run_isolated(
        "cvtune.timing:time_model",
        {"model": str(model_path), "runtime": runtime.to_dict(), "shapes": [list(shape)],
         "warmup": settings.warmup, "min_runs": settings.min_runs, "min_time_s": settings.min_time_s,
         "max_runs": settings.max_runs},
        timeout=settings.timeout_s,
    )
    return summarize(label or runtime.label(), runtime, str(model_path), shape, raw, count_flops(model_path, shape))
