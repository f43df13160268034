"""The local pipeline: decoding threads -> bounded queue -> N inference workers (threads, each with its own
Session and Task) -> the writer (caller's thread). OpenCV, ONNX Runtime and OpenVINO release the GIL while they
compute, so threads overlap decode, preprocessing and inference; no Session is ever shared between threads.

A corrupt input becomes a row with "error". A failure of the model itself (it cannot load, or a forward pass
raises) stops the run with one clear error; the rows written so far stay valid and a rerun continues after them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..data.base import decode_image_file
from ..errors import CvtuneError, TrialFailed
from .jsonl import ResultWriter
from .predictor import Predictor, PredictorSpec, overrides_predict

_DONE = object()
POLL_S = 0.1


def make_row(key_field: str, key: Any, *, prediction: Any = None, error: str | None = None) -> dict[str, Any]:
    """One results line: {"file"|"frame": key, "prediction": ...} or {..., "error": "why it was skipped"}."""
    return {key_field: key, "error": error} if error is not None else {key_field: key, "prediction": prediction}


def prepare_input(task, whole_image: bool, payload: Any) -> tuple[Any, str | None]:
    """Decode (a Path) and preprocess one input: (prepared, None), or (None, why it cannot be used)."""
    image, why = decode_image_file(payload) if isinstance(payload, Path) else (payload, "")
    if image is None:
        return None, why or "unreadable or corrupt image"
    if image.ndim != 3 or min(image.shape[:2]) < 1:
        return None, f"unusable image of shape {tuple(image.shape)}"
    if whole_image:
        return (image, None), None
    try:
        return task.preprocess(image), None
    except CvtuneError as exc:
        return None, f"preprocessing failed: {exc}"
    except Exception as exc:  # noqa: BLE001 - one odd input must not stop the run
        return None, f"preprocessing failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            continue
    return False


def run_local(pending: Iterator[tuple[int, Any, Any]], spec: PredictorSpec, writer: ResultWriter, key_field: str, *,
              workers: int, decoders: int | None = None,
              on_rows: Callable[[int], None] | None = None) -> None:
    """Process every pending (seq, key, payload) and write one row per input through `writer`."""
    decoders = decoders or max(1, min(workers, 4))
    inbox: queue.Queue = queue.Queue(maxsize=max(4, 2 * workers * spec.batch))
    outbox: queue.Queue = queue.Queue()
    stop = threading.Event()
    lock = threading.Lock()
    producers_left = [decoders]

    def produce() -> None:
        task = None
        try:
            task = spec.build_task()
            whole = overrides_predict(task)
            while not stop.is_set():
                with lock:  # videos decode frames inside next(): keep them in order
                    item = next(pending, None)
                if item is None:
                    break
                seq, key, payload = item
                prepared, error = prepare_input(task, whole, payload)
                if not _put(inbox, (seq, key, prepared, error), stop):
                    break
        except Exception as exc:  # noqa: BLE001 - e.g. a video read error: stop the run, report it
            outbox.put(("fatal", exc))
            stop.set()
        finally:
            if task is not None:
                task.close()
            with lock:
                producers_left[0] -= 1
                last = producers_left[0] == 0
            if last:
                for _ in range(workers):
                    _put(inbox, _DONE, stop)

    def work() -> None:
        predictor = None
        try:
            predictor = Predictor(spec)
            finished = False
            while not finished and not stop.is_set():
                try:
                    first = inbox.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if first is _DONE:
                    break
                batch = [first]
                while len(batch) < spec.batch:
                    try:
                        more = inbox.get(timeout=0.01)
                    except queue.Empty:
                        break
                    if more is _DONE:
                        finished = True
                        break
                    batch.append(more)
                outbox.put(("rows", _predict_batch(predictor, batch, key_field)))
        except Exception as exc:  # noqa: BLE001 - reported by the writer thread as one clear error
            outbox.put(("fatal", exc))
            stop.set()
        finally:
            if predictor is not None:
                predictor.close()
            outbox.put(("worker_done", None))

    threads = [threading.Thread(target=produce, name=f"cvtune-decode-{i}", daemon=True) for i in range(decoders)]
    threads += [threading.Thread(target=work, name=f"cvtune-infer-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    fatal: BaseException | None = None
    finished_workers = 0
    try:
        while finished_workers < workers:
            try:
                kind, payload = outbox.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if kind == "rows":
                written = sum(writer.add(seq, row) for seq, row in payload)
                writer.batch_end()
                if on_rows and written:
                    on_rows(written)
            elif kind == "fatal":
                fatal = fatal or payload
                stop.set()
            else:
                finished_workers += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        writer.sync()
    if fatal is not None:
        raise _as_cvtune_error(fatal)


def _predict_batch(predictor: Predictor, batch: list[tuple], key_field: str) -> list[tuple[int, dict]]:
    good = [(seq, key, prepared) for seq, key, prepared, error in batch if error is None]
    rows = [(seq, make_row(key_field, key, error=error)) for seq, key, _, error in batch if error is not None]
    if good:
        try:
            predictions = predictor.predict_prepared([prepared for _, _, prepared in good])
        except CvtuneError:
            raise
        except Exception as exc:  # noqa: BLE001
            keys = ", ".join(str(key) for _, key, _ in good[:3])
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise TrialFailed(f"inference failed on {keys}: {first[:300]}") from None
        rows += [(seq, make_row(key_field, key, prediction=p)) for (seq, key, _), p in zip(good, predictions,
                                                                                           strict=True)]
    return rows


def _as_cvtune_error(exc: BaseException) -> BaseException:
    if isinstance(exc, CvtuneError | KeyboardInterrupt):
        return exc
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return TrialFailed(f"pipeline failed: {type(exc).__name__}: {first[:300]}")
