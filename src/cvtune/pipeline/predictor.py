"""What one pipeline worker holds: its own Session and its own Task, built from a JSON-able PredictorSpec (so the
same spec can travel to a thread, a process or a Ray actor). Batches are stacked, run once, split along dim 0 and
postprocessed one image at a time, so a prediction never depends on which batch an image landed in.

Tasks that override `predict()` (OCR: orientation, end-to-end) run image by image through their own predict.
The "raw" task needs no labels or task code: it reports each output's shape and values (small outputs) or summary
statistics (large ones); any model works with it, preprocessed the way its spec says (cvtune.preprocess: the
user's, the file's, or a guess that the command warns about).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import UsageError
from ..preprocess import Preprocessing
from ..runtimes import Session, runtime_from_dict
from ..tasks.base import Task

RAW = "raw"
SMALL_OUTPUT = 64  # raw outputs up to this many values are written out in full


class RawTask(Task):
    """Model outputs as JSON: {'outputs': [{'shape', 'values'} or {'shape', 'mean', 'std', 'min', 'max',
    'argmax'}]}. Input: the spec's resize (letterbox, center crop, ...) to the model's fixed size; with no fixed size
    and a plain stretch, the image's own size (longest side at most max_side) rounded to the size multiple."""

    name: ClassVar[str] = RAW
    metric: ClassVar[str] = "none"

    def __init__(self, preprocessing: Preprocessing | None = None, *, input_size: tuple[int, int] | None = None,
                 max_side: int = 960, decimals: int = 6, **options: Any) -> None:
        super().__init__(preprocessing, input_size=tuple(input_size) if input_size else None, **options)
        self.max_side, self.decimals = int(max_side), int(decimals)

    def input_shape(self, height: int, width: int) -> tuple[int, int]:
        size = self.input_size or self.preprocessing.input_size
        if size or self.preprocessing.resize != "stretch":
            return self.preprocessing.target_size(height, width, size)
        multiple = max(self.preprocessing.size_multiple, 1)
        ratio = min(1.0, self.max_side / max(height, width))
        return (max(multiple, round(height * ratio / multiple) * multiple),
                max(multiple, round(width * ratio / multiple) * multiple))

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, None]:
        size = self.input_shape(*image.shape[:2]) if self.preprocessing.resize == "stretch" else self.input_size
        return self.preprocessing.to_tensor(image, input_size=size)[0], None

    def postprocess(self, outputs: list[np.ndarray], meta: Any = None) -> dict[str, list]:
        rows = []
        for out in outputs:
            arr = np.asarray(out, dtype=np.float64)
            row: dict[str, Any] = {"shape": list(arr.shape)}
            if arr.size <= SMALL_OUTPUT:
                row["values"] = np.round(arr.ravel(), self.decimals).tolist()
            else:
                row.update(mean=round(float(arr.mean()), self.decimals), std=round(float(arr.std()), self.decimals),
                           min=round(float(arr.min()), self.decimals), max=round(float(arr.max()), self.decimals),
                           argmax=int(arr.argmax()))
            rows.append(row)
        return {"outputs": rows}


@dataclass(frozen=True)
class PredictorSpec:
    """Everything a worker needs to build its own predictor; JSON-serializable (to_dict/from_dict)."""

    model: str
    runtime: dict[str, Any]
    task: str = RAW
    task_options: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] | None = None  # Preprocessing.to_dict(); None: what the model file says, or a guess
    input_size: tuple[int, int] | None = None
    batch: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.batch, int) or self.batch < 1:
            raise UsageError(f"--batch must be >= 1 (got {self.batch})")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "runtime": dict(self.runtime), "task": self.task,
                "task_options": dict(self.task_options), "preprocessing": self.preprocessing,
                "input_size": list(self.input_size) if self.input_size else None, "batch": self.batch}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictorSpec:
        size = data.get("input_size")
        return cls(model=data["model"], runtime=dict(data["runtime"]), task=data.get("task", RAW),
                   task_options=dict(data.get("task_options") or {}), preprocessing=data.get("preprocessing"),
                   input_size=tuple(size) if size else None, batch=int(data.get("batch", 1)))

    def build_task(self) -> Task:
        return build_task(self.task, self.model, preprocessing=self.preprocessing, input_size=self.input_size,
                          options=self.task_options)


def task_names() -> list[str]:
    from ..tasks import TASKS

    return [*TASKS, RAW]


def build_task(name: str, model_path: str | Path, *, preprocessing: dict[str, Any] | None = None,
               input_size: tuple[int, int] | None = None, options: dict[str, Any] | None = None) -> Task:
    """The task `name` ("raw" or a cvtune.tasks name) configured for the model (zoo defaults, charset, ...)."""
    options = dict(options or {})
    if input_size:
        options["input_size"] = tuple(input_size)
    if preprocessing:
        options["preprocessing"] = Preprocessing.from_dict(preprocessing)
    if name == RAW:
        if "preprocessing" not in options:
            options["preprocessing"] = _model_preprocessing(model_path)
        return RawTask(options.pop("preprocessing"), **options)
    from ..tasks import TASKS

    if name not in TASKS:
        raise UsageError(f"unknown task '{name}'; choose one of: {', '.join(task_names())}")
    from ..evaluate import build_task as build_registered

    return build_registered(name, model_path, **options)


def default_task(model_path: str | Path) -> str:
    """The zoo's task for a zoo model, else "raw" (cvtune cannot guess what an arbitrary model's outputs mean)."""
    from ..tasks import TASKS
    from ..zoo import find_by_path

    entry = find_by_path(model_path)
    return entry.task if entry and entry.task in TASKS else RAW


def _model_preprocessing(model_path: str | Path) -> Preprocessing:
    from ..preprocess import model_preprocessing

    return model_preprocessing(model_path)


def overrides_predict(task: Task) -> bool:
    return type(task).predict is not Task.predict


class Predictor:
    """One worker's session + task. Not thread-safe (neither is the session): one Predictor per worker."""

    def __init__(self, spec: PredictorSpec, *, session: Session | None = None) -> None:
        self.spec = spec
        self.session = session or runtime_from_dict(spec.runtime).open(spec.model)
        self.task = spec.build_task()
        self.whole_image = overrides_predict(self.task)

    def preprocess(self, image: np.ndarray) -> tuple[Any, Any]:
        """What decoding threads do ahead of inference: the task's preprocess (or nothing, for whole-image tasks)."""
        if self.whole_image:
            return image, None
        return self.task.preprocess(image)

    def predict_prepared(self, items: list[tuple[Any, Any]]) -> list[Any]:
        """Predictions for preprocessed items, batched by equal input shape, in the order given."""
        if self.whole_image:
            return [self.task.predict(self.session, image) for image, _ in items]
        results: list[Any] = [None] * len(items)
        start = 0
        while start < len(items):  # consecutive runs of equal shape, at most `batch` long
            stop = start + 1
            while (stop < len(items) and stop - start < self.spec.batch
                   and items[stop][0].shape == items[start][0].shape):
                stop += 1
            tensors = [items[i][0] for i in range(start, stop)]
            outputs = self.session.run(tensors[0] if len(tensors) == 1 else np.concatenate(tensors, axis=0))
            for offset, per_image in enumerate(split_outputs(outputs, len(tensors))):
                results[start + offset] = self.task.postprocess(per_image, items[start + offset][1])
            start = stop
        return results

    def predict(self, images: list[np.ndarray]) -> list[Any]:
        return self.predict_prepared([self.preprocess(image) for image in images])

    def close(self) -> None:
        self.task.close()
        self.session.close()


def split_outputs(outputs: list[np.ndarray], n: int) -> list[list[np.ndarray]]:
    """Outputs of a batch of n -> n lists of (1, ...) outputs, as a batch-1 run would have returned them."""
    if n == 1:
        return [list(outputs)]
    for i, out in enumerate(outputs):
        if out.ndim == 0 or out.shape[0] != n:
            raise UsageError(f"output {i} has shape {tuple(out.shape)} for a batch of {n}: this model does not "
                             f"batch along dim 0; use --batch 1")
    return [[out[i:i + 1] for out in outputs] for i in range(n)]
