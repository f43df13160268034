"""Sustained throughput under load: N instances (processes, each with its own session of T threads) run batches of
B images for a fixed time from a shared start, so users can choose between latency- and throughput-optimal layouts.

Each instance is a child process (cvtune.isolate). They load and warm up first, then wait at a file barrier; the
parent releases them all at one start time. Work is counted inside the [start, start + duration] window only: a
run that straddles the end counts for the fraction of it that lies inside, so no instance's tail inflates the rate.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bench import resolve_input_shape
from .errors import CvtuneError, ModelError, TrialFailed, UsageError
from .isolate import run_isolated
from .runtimes import Runtime, runtime_from_dict
from .runtimes.devices import usable_cores
from .timing import latency_stats

__all__ = ["Layout", "ThroughputSettings", "ThroughputResult", "measure_throughput", "sweep_layouts", "sweep"]


@dataclass(frozen=True)
class Layout:
    """How the cores are used: `instances` processes x `threads` threads each, `batch` images per run."""

    instances: int = 1
    threads: int = 1
    batch: int = 1

    def __post_init__(self) -> None:
        for what, value in (("instances", self.instances), ("threads", self.threads), ("batch", self.batch)):
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"--{what} must be a whole number >= 1 (got {value})")

    def label(self) -> str:
        return f"{self.instances}x{self.threads}" + (f" b{self.batch}" if self.batch > 1 else "")


@dataclass(frozen=True)
class ThroughputSettings:
    """Measure for `duration_s` seconds after `warmup` untimed runs per instance; give up after `timeout_s`."""

    duration_s: float = 3.0
    warmup: int = 2
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.warmup < 0:
            raise UsageError(f"throughput needs a duration > 0 and warmup >= 0 (got {self.duration_s}, {self.warmup})")


@dataclass(frozen=True)
class ThroughputResult:
    """Images/s over the window, and per-run (one batch) latency while all instances were busy."""

    label: str
    runtime: dict[str, Any]
    model: str
    input_shape: tuple[int, ...]
    layout: Layout
    duration_s: float
    images: float
    images_per_s: float
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    per_instance_ips: tuple[float, ...]

    @property
    def ms_per_image(self) -> float:
        return self.mean_ms / self.layout.batch

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(input_shape=list(self.input_shape), per_instance_ips=list(self.per_instance_ips),
                    layout={**dataclasses.asdict(self.layout), "label": self.layout.label()},
                    ms_per_image=self.ms_per_image)
        return data


def sweep_layouts(cores: int | None = None, *, batched: bool = True, batch: int = 4) -> list[Layout]:
    """The sensible layouts for `cores`: 1x1 (baseline), 1xC (one session, all cores), Cx1, every other
    instances x threads split that fills the cores, then the filling ones again with `batch` images per run."""
    cores = max(1, cores or usable_cores())
    pairs = [(1, 1), (1, cores), (cores, 1)] + [(i, cores // i) for i in range(2, cores) if cores % i == 0]
    seen: list[tuple[int, int]] = []
    for pair in pairs:
        if pair not in seen:
            seen.append(pair)
    layouts = [Layout(i, t) for i, t in seen]
    if batched and batch > 1:
        layouts += [Layout(i, t, batch) for i, t in seen if i * t == cores]
    return layouts


def _with_threads(runtime: Runtime, threads: int) -> Runtime:
    if any(f.name == "threads" for f in dataclasses.fields(runtime)):  # type: ignore[arg-type]
        return dataclasses.replace(runtime, threads=threads)  # type: ignore[type-var]
    return runtime


def _load_worker(model: str, runtime: dict, input_shape: list[int], warmup: int, sync_dir: str, index: int,
                 duration_s: float, wait_s: float) -> dict:
    """Runs inside one instance's child process: load, warm up, signal ready, wait for 'go', run until the end."""
    session = runtime_from_dict(runtime).open(model)
    batch = np.random.default_rng(index).random(input_shape, dtype=np.float32)
    for _ in range(warmup + 1):
        session.run(batch)
    sync = Path(sync_dir)
    (sync / f"ready-{index}").touch()
    go, abort, give_up = sync / "go", sync / "abort", time.time() + wait_s
    while not go.exists():
        if abort.exists():
            return {"spans": [], "aborted": True}
        if time.time() > give_up:
            raise TrialFailed(f"instance {index} waited {wait_s:.0f} s for the others to load")
        time.sleep(0.002)
    start = float(go.read_text())
    end = start + duration_s
    while time.time() < start:
        time.sleep(0.0005)
    spans = []
    while (t0 := time.time()) < end:
        session.run(batch)
        spans.append((t0, time.time()))
    return {"spans": spans}


def _release(sync: Path, delay_s: float = 0.05) -> float:
    """Write the shared start time atomically (temp + rename) so no instance reads half a number."""
    start = time.time() + delay_s
    tmp = sync / ".go.tmp"
    tmp.write_text(repr(start))
    os.replace(tmp, sync / "go")
    return start


def _wait_ready(sync: Path, futures: list[Future], deadline: float) -> None:
    while True:
        if all((sync / f"ready-{i}").exists() for i in range(len(futures))):
            return
        failed = next((f for f in futures if f.done() and f.exception() is not None), None)
        if failed is not None or time.time() > deadline:
            (sync / "abort").touch()
            for f in futures:
                try:
                    f.result()
                except CvtuneError as exc:
                    raise TrialFailed(f"an instance failed to start: {exc}") from None
            raise TrialFailed("instances did not get ready in time")
        time.sleep(0.01)


def measure_throughput(model_path: str | Path, runtime: Runtime, input_shape: tuple[int, ...] | None = None, *,
                       layout: Layout | None = None, settings: ThroughputSettings | None = None,
                       label: str | None = None) -> ThroughputResult:
    """Run `layout.instances` processes of `runtime` (with `layout.threads` threads each) on batches of
    `layout.batch` for `settings.duration_s` seconds from a shared start; raise TrialFailed if any crashes."""
    layout = layout or Layout()
    settings = settings or ThroughputSettings()
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"model file not found: {model_path}")
    runtime = _with_threads(runtime, layout.threads)
    runtime.check()
    shape = resolve_input_shape(model_path, input_shape, layout.batch)
    with tempfile.TemporaryDirectory(prefix="cvtune-load-") as tmp, ThreadPoolExecutor(layout.instances) as pool:
        sync = Path(tmp)
        kwargs = {"model": str(model_path), "runtime": runtime.to_dict(), "input_shape": list(shape),
                  "warmup": settings.warmup, "sync_dir": tmp, "duration_s": settings.duration_s,
                  "wait_s": settings.timeout_s}
        futures = [pool.submit(run_isolated, "cvtune.throughput:_load_worker", {**kwargs, "index": i},
                               timeout=settings.timeout_s + settings.duration_s) for i in range(layout.instances)]
        _wait_ready(sync, futures, time.time() + settings.timeout_s)
        start = _release(sync)
        raws = [f.result() for f in futures]
    return _summarize(raws, start, settings.duration_s, label or f"{runtime.label()} {layout.label()}", runtime,
                      str(model_path), shape, layout)


def _summarize(raws: list[dict], start: float, duration: float, label: str, runtime: Runtime, model: str,
               shape: tuple[int, ...], layout: Layout) -> ThroughputResult:
    end = start + duration
    per_instance, latencies = [], []
    for raw in raws:
        images = 0.0
        for t0, t1 in raw["spans"]:
            inside = max(0.0, min(t1, end) - max(t0, start))
            images += layout.batch * (inside / (t1 - t0) if t1 > t0 else 1.0)
            latencies.append((t1 - t0) * 1000)
        per_instance.append(images / duration)
    if not latencies:
        raise TrialFailed("no run finished inside the measuring window; measure for longer")
    stats = latency_stats(latencies, layout.batch)  # per-run latency; images/s comes from the window, not 1/mean
    total = float(sum(per_instance))
    return ThroughputResult(
        label=label, runtime=runtime.to_dict(), model=model, input_shape=tuple(shape), layout=layout,
        duration_s=duration, images=total * duration, images_per_s=total, runs=stats.runs,
        p50_ms=stats.p50_ms, p90_ms=stats.p90_ms, p99_ms=stats.p99_ms, mean_ms=stats.mean_ms,
        per_instance_ips=tuple(round(x, 3) for x in per_instance),
    )


def sweep(model_path: str | Path, runtime: Runtime, input_shape: tuple[int, ...] | None = None, *,
          layouts: list[Layout] | None = None, settings: ThroughputSettings | None = None,
          on_result=None) -> list[ThroughputResult | str]:
    """Measure every layout (default: sweep_layouts() for this machine, batched ones only when the model takes a
    batch). A layout that fails becomes a one-line string instead of stopping the sweep."""
    if layouts is None:
        layouts = sweep_layouts(batched=_takes_batch(model_path, input_shape))
    results: list[ThroughputResult | str] = []
    for layout in layouts:
        try:
            result: ThroughputResult | str = measure_throughput(model_path, runtime, input_shape, layout=layout,
                                                                settings=settings)
        except (TrialFailed, UsageError) as exc:
            result = f"{runtime.label()} {layout.label()}: failed: {exc}"
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _takes_batch(model_path: str | Path, input_shape: tuple[int, ...] | None) -> bool:
    try:
        resolve_input_shape(model_path, input_shape, 2)
        return True
    except UsageError:
        return False
