"""Batch inference over an image folder or a video: decode/preprocess overlapped with inference (bounded queues,
one Session per worker), postprocessing by the task, one JSON line per input written as it is done.

Results file (JSONL), one row per input, in input order:
    {"file": "sub/a.png", "prediction": {...}}      an image, keyed by its path relative to the input folder
    {"frame": 12, "prediction": {...}}              a video frame, keyed by its 0-based index
    {"file": "bad.jpg", "error": "unreadable or corrupt image"}   a corrupt input, logged and skipped
Run it again with the same --out and it continues: rows already there are skipped, a torn last line is redone.
A file at --out that is not such a results file is refused (and left as it is) unless --force; two runs into the
same --out at once: the second is refused, naming the first (a lock).
Locally (threads) or on Ray (`ray=True`): the same PredictorSpec, so the same rows.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..files import check_output, check_unlocked, display_path, output_lock
from ..runtimes.devices import usable_cores
from .jsonl import ResultWriter, Resume, scan_results
from .predictor import RAW, Predictor, PredictorSpec, RawTask, build_task, default_task, task_names
from .sources import ImageSource, VideoSource, open_source

__all__ = ["PipelineResult", "Predictor", "PredictorSpec", "RAW", "RawTask", "build_task", "check_batch",
           "default_task", "open_source", "resolve_workers", "run_pipeline", "task_names"]


@dataclass(frozen=True)
class PipelineResult:
    """What one run did: rows written now, rows already there (resumed), of which errors, and the rate."""

    out: Path
    written: int
    errors: int
    already_done: int
    total: int | None
    seconds: float
    workers: int
    backend: str

    @property
    def images_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "written": self.written, "errors": self.errors,
                "already_done": self.already_done, "total": self.total, "seconds": round(self.seconds, 3),
                "images_per_s": round(self.images_per_s, 2), "workers": self.workers, "backend": self.backend}


def resolve_workers(workers: int | str | None, *, default: int | None = None) -> int:
    """'auto'/None -> `default` or one worker per usable core; else an int >= 1 (UsageError otherwise)."""
    if workers is None or workers == "auto":
        return max(1, default or usable_cores())
    try:
        count = int(workers)
    except (TypeError, ValueError):
        raise UsageError(f"--workers must be 'auto' or a whole number >= 1 (got {workers!r})") from None
    if count < 1:
        raise UsageError(f"--workers must be >= 1 (got {count}); use 'auto' for one per core")
    return count


def check_batch(model_path: str | Path, batch: int) -> None:
    """Refuse a batch size the model's first input cannot take (a fixed batch dim), before any work starts."""
    if batch < 1:
        raise UsageError(f"--batch must be >= 1 (got {batch})")
    if batch == 1 or Path(model_path).suffix.lower() != ".onnx":
        return
    from ..model import Model

    dim = Model.load(model_path).inputs[0].shape[0]
    if isinstance(dim, int) and dim > 0 and dim != batch:
        raise UsageError(f"the model's batch dim is fixed at {dim}, so --batch {batch} cannot run; use --batch "
                         f"{dim}, or make the batch dim dynamic first")


def run_pipeline(spec: PredictorSpec, source: ImageSource | VideoSource | str | Path, out: str | Path, *,
                 workers: int = 1, ray: bool = False, ray_address: str | None = None,
                 progress: bool = True, verbose: bool = False, limit: int | None = None,
                 force: bool = False) -> PipelineResult:
    """Predict every input of `source` (the first `limit` only, when given) not yet in `out` and append one row per
    input to `out`; `verbose` shows Ray's own log lines. An existing `out` must be cvtune's own results for the same
    kind of input (then the run continues after its rows), unless `force` (then it starts over and the file is
    replaced when the first new row is written). One writer per `out` at a time (a lock); the file is created only
    when the first row is ready, so a model that cannot load leaves nothing behind."""
    if not isinstance(source, ImageSource | VideoSource):
        source = open_source(source)
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out {display_path(out)} is a folder; give a file name such as results.jsonl")
    check_output(out, force=True, inputs=(spec.model, source.path if isinstance(source, VideoSource) else None),
                 option="--out")
    check_unlocked(out)  # another run writing it: say so before loading anything
    workers = resolve_workers(workers)
    if limit is not None:
        if limit < 1:
            raise UsageError(f"--limit must be >= 1 (got {limit})")
        if isinstance(source, ImageSource):
            source = dataclasses.replace(source, files=source.files[:limit])
    check_batch(spec.model, spec.batch)
    spec.build_task().close()  # bad task options fail here, once, before any thread or actor starts
    with output_lock(out):
        resume = Resume(frozenset(), 0, out.exists()) if force else scan_results(out, source.key_field)
        done = set(resume.done)
        pending = source.pending(done)
        total = source.total
        if limit is not None and isinstance(source, VideoSource):  # the first `limit` frames
            pending = itertools.takewhile(lambda item: item[1] < limit, pending)
            total = min(total or limit, limit)
            done = {d for d in done if isinstance(d, int) and d < limit}
        remaining = None if total is None else max(total - len(done), 0)
        writer = ResultWriter(out, keep_bytes=resume.valid_bytes if resume.exists else None,
                              fresh=force and resume.exists)
        start = time.perf_counter()
        backend = "ray" if ray else "local"
        bar, on_rows = _progress(progress, remaining, backend, start)
        try:
            if ray:
                from .ray_runner import run_ray

                run_ray(pending, spec, writer, source.key_field, workers=workers, address=ray_address,
                        on_rows=on_rows, verbose=verbose)
            else:
                from .local import run_local

                run_local(pending, spec, writer, source.key_field, workers=workers, on_rows=on_rows)
        finally:
            writer.close()
            if bar is not None:
                bar.stop()
    return PipelineResult(out=out, written=writer.written, errors=writer.errors, already_done=len(done),
                          total=total, seconds=time.perf_counter() - start, workers=workers, backend=backend)


def _progress(enabled: bool, total: int | None, backend: str, start: float):
    if not enabled:
        return None, None
    from ..console import progress

    bar = progress()
    job = bar.add_task(f"run ({backend})", total=total, rate="")
    bar.start()
    count = [0]

    def on_rows(n: int) -> None:
        count[0] += n
        rate = count[0] / max(time.perf_counter() - start, 1e-9)
        bar.update(job, advance=n, rate=f"{rate:.1f} images/s")

    return bar, on_rows
