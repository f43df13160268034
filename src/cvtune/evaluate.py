"""Evaluate one model file with one runtime on one dataset: open a session, predict every image, score.

`evaluate()` is what `cvtune eval` and the search call. A task given by name is built for the model with
`build_task()` (tasks.spec.resolve_task: the zoo entry's preprocessing and defaults, the model's charset).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .data.base import Dataset, Sample, read_image_or_warn
from .errors import CvtuneError, DatasetError, ModelError
from .runtimes import Runtime, Session, make_runtime
from .tasks import Metrics, Task
from .tasks.spec import resolve_task

__all__ = ["build_task", "evaluate", "predict_dataset", "load_eval_dataset"]

def build_task(name: str, model_path: str | os.PathLike[str] | None = None, **options: Any) -> Task:
    """A Task registered as `name`, configured for the model at `model_path` (preprocessing, zoo defaults,
    OCR charset from the model's metadata). Explicit `options` win over every default. See tasks.spec."""
    return resolve_task(name, model_path, **options).build()


def load_eval_dataset(path: str | os.PathLike[str], kind: str | None = None) -> Dataset:
    """Load a dataset folder/file with the shared loaders (layout detected unless `kind` is given)."""
    from .data.loaders import load_dataset

    return load_dataset(path, kind=kind)


class _CheckedSession:
    """Wraps a session so that a runtime failure (wrong input size, wrong model for the task) becomes one
    ModelError line naming the model, the input shape and the task, instead of a runtime traceback."""

    def __init__(self, session: Session, model_path: Path, task: str) -> None:
        self.session, self.model_path, self.task = session, model_path, task
        self.input_name = getattr(session, "input_name", "")
        self.output_names = getattr(session, "output_names", [])

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        try:
            return self.session.run(batch)
        except CvtuneError:
            raise
        except Exception as exc:  # noqa: BLE001 - runtimes raise their own exception types
            first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise ModelError(f"{self.model_path} failed on an input of shape {tuple(batch.shape)} for task "
                             f"'{self.task}': {first[:240]}; does the model fit this task and input size?") from None

    def close(self) -> None:
        self.session.close()


def _check_kind(task: Task, dataset: Dataset) -> None:
    if dataset.kind not in task.dataset_kinds:
        raise DatasetError(f"task '{task.name}' needs a dataset of kind {' or '.join(task.dataset_kinds)}, but "
                           f"{dataset.root} was loaded as '{dataset.kind}'; give such a dataset or "
                           f"say its kind")


def predict_dataset(session: Session, task: Task, dataset: Dataset, *, progress: bool = True,
                    label: str = "") -> tuple[list[Any], list[Sample], list[tuple[Path, str]]]:
    """Predict every readable image: (predictions, the samples they belong to, images skipped in this pass)."""
    from .console import progress as progress_bar

    predictions: list[Any] = []
    used: list[Sample] = []
    skipped: list[tuple[Path, str]] = []
    bar = progress_bar() if progress else None
    start = time.perf_counter()
    try:
        if bar:
            bar.start()
            job = bar.add_task(label or f"eval {task.name}", total=len(dataset.samples), rate="")
        for i, sample in enumerate(dataset.samples, 1):
            image = read_image_or_warn(sample.path, skipped)
            if image is not None:
                predictions.append(task.predict(session, image))
                used.append(sample)
            if bar:
                bar.update(job, advance=1, rate=f"{i / max(time.perf_counter() - start, 1e-9):.1f} img/s")
    finally:
        if bar:
            bar.stop()
    return predictions, used, skipped


def evaluate(model_path: str | os.PathLike[str], runtime: Runtime | str, task: Task | str,
             dataset: Dataset | str | os.PathLike[str], *, limit: int | None = None, progress: bool = True,
             task_options: dict[str, Any] | None = None) -> Metrics:
    """Run `model_path` with `runtime` over `dataset` and score it with `task` (an instance, or a registry name
    built with build_task and `task_options`). Unreadable images are skipped and counted in n_skipped."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"model file not found: {model_path}")
    from .model import check_model_inputs

    check_model_inputs(model_path)  # a model the task cannot feed is refused before any runtime sees it
    if limit is not None and limit < 1:
        raise DatasetError(f"the image limit must be >= 1 (got {limit})")
    if isinstance(runtime, str):
        runtime = make_runtime(runtime)
    if not isinstance(dataset, Dataset):
        dataset = load_eval_dataset(dataset)
    if isinstance(task, str):
        task = build_task(task, model_path, **(task_options or {}))
    _check_kind(task, dataset)
    data = dataset.limit(limit)
    if not data.samples:
        raise DatasetError(f"dataset {dataset.root} has no samples to evaluate")
    task.bind(data)
    session = runtime.open(model_path)
    try:
        predictions, used, skipped = predict_dataset(_CheckedSession(session, model_path, task.name), task, data,
                                                     progress=progress)
    finally:
        session.close()
        task.close()
    known = {p for p, _ in dataset.skipped}
    dataset.skipped.extend(s for s in skipped if s[0] not in known)  # the loaders' contract: record, once
    if not used:
        raise DatasetError(f"none of the {len(data.samples)} images in {dataset.root} could be read; check the files")
    metrics = task.score(predictions, used, data)
    n_skipped = len({p for p, _ in dataset.skipped})
    return dataclasses.replace(metrics, n_images=len(used), n_skipped=n_skipped)
