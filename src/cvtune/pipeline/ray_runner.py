"""The same pipeline on Ray (optional extra: pip install 'cvtune[ray]'): Ray Data `map_batches` with a pool of
actors, each holding one Predictor (its own Session and Task), built from the same PredictorSpec as the local
workers, so the rows are identical to the local pipeline's. Results stream back in input order and go through the
same ResultWriter (incremental, resumable).

With no address a local Ray is started (2 CPUs, no dashboard) and shut down at the end. An address that does not
answer within a few seconds is a clear error, not a hang. Ray's own log lines (its C++ core and Python loggers write
to file descriptor 2) go to a temporary log file unless `verbose`, so cvtune's output stays cvtune's; a failure
names that file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import CvtuneError, RuntimeUnavailable, TrialFailed, UsageError
from .jsonl import ResultWriter
from .local import prepare_input
from .predictor import Predictor, PredictorSpec

INSTALL_HINT = "pip install 'cvtune[ray]'"
CONNECT_TIMEOUT_S = 3.0
DEFAULT_PORTS = {"ray": 10001, "": 6379}


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RuntimeUnavailable(f"--ray needs Ray Data, which is not installed; run: {INSTALL_HINT}") from None
    return ray


def check_address(address: str, *, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast when nothing listens at a Ray address ('HOST:PORT' or 'ray://HOST:PORT'; 'auto' is left to Ray)."""
    if address == "auto":
        return
    scheme, _, rest = address.rpartition("://")
    host, _, port_text = rest.rpartition(":")
    if not host:
        host, port_text = rest, ""
    try:
        port = int(port_text) if port_text else DEFAULT_PORTS.get(scheme, 6379)
    except ValueError:
        raise UsageError(f"bad Ray address '{address}': expected HOST:PORT or ray://HOST:PORT") from None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RuntimeUnavailable(f"no Ray cluster answers at {address} ({reason} after at most {timeout:g} s); "
                                 f"start one with `ray start --head`, or pass --ray without an address to run a "
                                 f"local Ray") from None


class _RayPredictor:
    """One actor: builds its Predictor once, then turns batches of {seq, key, path} into {seq, row(JSON)}."""

    def __init__(self, spec: dict[str, Any], key_field: str) -> None:
        self.predictor = Predictor(PredictorSpec.from_dict(spec))
        self.key_field = key_field

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from .local import _predict_batch

        items = []
        for seq, key, path in zip(batch["seq"], batch["key"], batch["path"], strict=True):
            key = key.item() if hasattr(key, "item") else key
            prepared, error = prepare_input(self.predictor.task, self.predictor.whole_image, Path(str(path)))
            items.append((int(seq), key, prepared, error))
        rows = _predict_batch(self.predictor, items, self.key_field)
        return {"seq": np.array([seq for seq, _ in rows], dtype=np.int64),
                "row": np.array([json.dumps(row, ensure_ascii=False) for _, row in rows], dtype=object)}


@contextlib.contextmanager
def ray_output(verbose: bool) -> Iterator[Path | None]:
    """While Ray runs: unless `verbose`, file descriptor 2 (where Ray's core and loggers write) goes to a temporary
    log file, and cvtune's own stderr console keeps writing to the terminal; Ray's environment switches are set
    for this run only. Yields the log file (None when verbose)."""
    env = {"RAY_USAGE_STATS_ENABLED": "0", **({} if verbose else {"RAY_BACKEND_LOG_LEVEL": "error"})}
    before = {k: os.environ.get(k) for k in env}
    for key, value in env.items():
        os.environ.setdefault(key, value)
    try:
        if verbose:
            yield None
        else:
            with _stderr_to_log() as log:
                yield log
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _stderr_to_log() -> Iterator[Path]:
    from ..console import err_console

    log = tempfile.NamedTemporaryFile(prefix="cvtune-ray-", suffix=".log", delete=False)
    try:
        err_console.file.flush()
    except (AttributeError, ValueError):
        pass
    terminal = os.dup(2)
    own = os.fdopen(os.dup(terminal), "w", buffering=1, encoding="utf-8", errors="replace")
    os.dup2(log.fileno(), 2)
    err_console.file = own
    try:
        yield Path(log.name)
    finally:
        err_console.file = None  # back to sys.stderr
        own.close()
        os.dup2(terminal, 2)
        os.close(terminal)
        log.close()


def run_ray(pending: Iterator[tuple[int, Any, Any]], spec: PredictorSpec, writer: ResultWriter, key_field: str, *,
            workers: int, address: str | None = None, on_rows: Callable[[int], None] | None = None,
            verbose: bool = False) -> None:
    """Process every pending (seq, key, Path) on Ray and write one row per input through `writer`; Ray's own log
    lines are shown only when `verbose`."""
    items = []
    for seq, key, payload in pending:
        if not isinstance(payload, Path):
            raise UsageError("--ray runs over image folders; for a video, run without --ray (frames decode in "
                             "order on one machine)")
        items.append({"seq": seq, "key": key, "path": str(payload.resolve())})
    if not items:
        return
    if address:
        check_address(address)  # before importing Ray: a dead address is reported the same with or without it
    with ray_output(verbose) as log:
        try:
            _run(import_ray(), items, spec, writer, key_field, workers=workers, address=address, on_rows=on_rows)
        except TrialFailed as exc:
            if log is None:
                raise
            raise TrialFailed(f"{exc} (Ray's log: {log}; rerun with --verbose to see it)") from None
        if log is not None:
            log.unlink(missing_ok=True)


def _run(ray, items: list[dict[str, Any]], spec: PredictorSpec, writer: ResultWriter, key_field: str, *,
         workers: int, address: str | None, on_rows: Callable[[int], None] | None) -> None:
    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, address, workers)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        dataset = ray.data.from_items(items).map_batches(
            _RayPredictor, batch_size=spec.batch, fn_constructor_kwargs={"spec": spec.to_dict(),
                                                                         "key_field": key_field},
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1, batch_format="numpy")
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            written = sum(writer.add(int(seq), json.loads(row)) for seq, row in zip(batch["seq"], batch["row"],
                                                                                 strict=True))
            writer.batch_end()
            if on_rows and written:
                on_rows(written)
    except CvtuneError:
        raise
    except Exception as exc:  # noqa: BLE001 - Ray wraps the actor's error; report its last line
        text = str(exc).strip().splitlines()
        cause = next((ln for ln in reversed(text) if "Error" in ln), text[-1] if text else type(exc).__name__)
        raise TrialFailed(f"the Ray pipeline failed: {cause.strip()[:300]}") from None
    finally:
        writer.sync()
        if started_here:
            ray.shutdown()


def _init(ray, address: str | None, workers: int) -> None:
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
                              "configure_logging": False}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=max(2, workers), object_store_memory=256 * 2**20, **kwargs)
    except Exception as exc:  # noqa: BLE001 - connection and start-up errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f"at {address}" if address else "locally"
        raise RuntimeUnavailable(f"cannot start or reach Ray {where}: {first[:300]}") from None
