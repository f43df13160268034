"""Accuracy on a Ray cluster (`optimize --ray [--ray-address ADDR]`): the evaluation ranges of an accuracy stage run
as Ray tasks, one per range (`--workers` ranges), each in the same isolated child a local worker uses, so a crash
stays a failed trial. Latency is never measured there: it is timed alone, on this machine, the target.

The cluster's nodes must see the paths this machine uses (the model, the data, the search folder's built models):
a shared filesystem, as `cvtune run --ray` assumes. Without an address a local Ray is started for the search and
shut down after it; Ray's own log lines go to a temporary file, removed after the search (a range that fails on Ray
is a failed trial with its reason)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from ..errors import TrialFailed
from .runner import TrialSpec, run_trial

_ACTIVE: dict[str, Any] = {}  # the Ray module while a search holds a session (ray_evaluation)


@contextlib.contextmanager
def ray_evaluation(config) -> Iterator[None]:
    """While the search runs: Ray initialized (or connected to `config.ray_address`) when `config.ray`."""
    if not getattr(config, "ray", False):
        yield
        return
    from ..pipeline.ray_runner import _init, import_ray, ray_output

    with ray_output(False) as log:
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            _init(ray, config.ray_address, max(2, config.eval_workers))
        _ACTIVE["ray"] = ray
        try:
            yield
        finally:
            _ACTIVE.pop("ray", None)
            if started_here:
                ray.shutdown()
            if log is not None:  # a stage that failed on Ray is a failed trial with its reason, not this log
                log.unlink(missing_ok=True)


def active() -> bool:
    return "ray" in _ACTIVE


def _remote_trial(spec: dict[str, Any], timeout: float, memory_limit_mb: int | None) -> dict[str, Any]:
    """Runs on a Ray worker: the trial in its own isolated child, as locally."""
    return run_trial(TrialSpec(**spec), timeout=timeout, memory_limit_mb=memory_limit_mb)


def run_on_ray(specs: list[TrialSpec], *, timeout: float, memory_limit_mb: int | None) -> list[dict[str, Any]]:
    """Each spec as one Ray task (one CPU each); results in order. A failed range fails the stage with its reason."""
    ray = _ACTIVE["ray"]
    remote = ray.remote(num_cpus=1, max_retries=0)(_remote_trial)
    refs = [remote.remote(asdict(spec), timeout, memory_limit_mb) for spec in specs]
    try:
        return ray.get(refs, timeout=timeout + 60)
    except Exception as exc:  # noqa: BLE001 - Ray wraps the task's error (TrialFailed, or its own)
        for ref in refs:
            ray.cancel(ref, force=True)
        cause = getattr(exc, "cause", None) or exc
        if isinstance(cause, TrialFailed):
            raise TrialFailed(str(cause)) from None
        lines = [ln for ln in str(cause).strip().splitlines() if ln.strip()]
        raise TrialFailed(f"the Ray task failed: {(lines[-1] if lines else type(cause).__name__)[:300]}") from None
