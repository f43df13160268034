"""Calibration data: the user's images, preprocessed exactly as the task (or the model's own preprocessing) feeds
them, held as tensors so one set feeds every quantization of the same model (formats, exclusion steps)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..data.base import Dataset
from ..errors import DatasetError, UsageError
from ..model import Model


class TensorReader:
    """An ORT CalibrationDataReader over ready tensors (duck-typed, so importing cvtune does not import ORT)."""

    def __init__(self, input_name: str, tensors: tuple[np.ndarray, ...]) -> None:
        self.input_name = input_name
        self.tensors = tensors
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.tensors):
            return None
        self._next += 1
        return {self.input_name: self.tensors[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self.tensors)

    def __iter__(self):
        self.rewind()
        return iter(lambda: self.get_next(), None)


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed (1, C, H, W) float32 tensors for one model input, and where they came from."""

    input_name: str
    tensors: tuple[np.ndarray, ...]
    source: str
    task: str | None = None
    skipped: int = 0

    def reader(self) -> TensorReader:
        return TensorReader(self.input_name, self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def to_dict(self) -> dict[str, Any]:
        shapes = sorted({"x".join(map(str, t.shape)) for t in self.tensors})
        return {"source": self.source, "images": len(self.tensors), "task": self.task, "skipped": self.skipped,
                "shapes": shapes[:8] + ([f"... {len(shapes) - 8} more"] if len(shapes) > 8 else [])}


def spread(dataset: Dataset, size: int) -> Dataset:
    """At most `size` samples spread evenly over the (sorted) dataset: deterministic and representative."""
    if size < 1:
        raise UsageError(f"--calib-size must be >= 1 (got {size})")
    n = len(dataset.samples)
    if n <= size:
        return dataset
    return dataset.subset(sorted({int(i) for i in np.linspace(0, n - 1, size).round()}))


def _model_preprocess(model: Model, shape: tuple[int, ...]):
    """Plain resize to the model's input H x W with its preprocessing (when no task says otherwise)."""
    from ..tasks.common import normalize

    height, width = int(shape[2]), int(shape[3])

    def preprocess(image: np.ndarray) -> np.ndarray:
        return normalize(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), model.preprocessing)

    return preprocess


def _task_preprocess(task: str, model_path: Path, shape: tuple[int, ...] | None):
    from ..evaluate import build_task

    options: dict[str, Any] = {}
    if shape is not None and len(shape) == 4:
        options["input_size"] = (int(shape[2]), int(shape[3]))
    instance = build_task(task, model_path, **options)
    return lambda image: instance.preprocess(image)[0]


def load_calibration(model_path: str | os.PathLike[str], images: str | os.PathLike[str] | Dataset, *,
                     size: int = 64, task: str | None = None,
                     input_shape: tuple[int, ...] | None = None) -> CalibrationSet:
    """Up to `size` images from a folder (or a loaded Dataset), preprocessed by `task` (a cvtune.tasks name) or,
    without one, resized to `input_shape` / the model's default input shape with the model's preprocessing."""
    from ..data.loaders import iter_images, load_images

    model_path = Path(model_path)
    model = Model.load(model_path)
    dataset = images if isinstance(images, Dataset) else load_images(images)
    chosen = spread(dataset, size)
    if task and task != "fidelity":
        preprocess = _task_preprocess(task, model_path, input_shape)
    else:
        preprocess = _model_preprocess(model, input_shape or model.default_input_shape())
    before = len(chosen.skipped)
    tensors = tuple(np.ascontiguousarray(preprocess(image), dtype=np.float32) for _, image in iter_images(chosen))
    if not tensors:
        raise DatasetError(f"no calibration images could be read from {dataset.root}; point --calib at a folder "
                           f"of images like the ones the model will see")
    return CalibrationSet(model.inputs[0].name, tensors, str(dataset.root), task, len(chosen.skipped) - before)


def random_calibration(model_path: str | os.PathLike[str], input_shape: tuple[int, ...] | None = None, *,
                       n: int = 4, seed: int = 0) -> CalibrationSet:
    """Uniform [-1, 1) tensors: only for checks and tests that have no images (ranges from noise are not what a
    deployed model should use)."""
    model = Model.load(model_path)
    shape = input_shape or model.default_input_shape()
    rng = np.random.default_rng(seed)
    tensors = tuple((rng.random(shape, dtype=np.float32) * 2 - 1) for _ in range(n))
    return CalibrationSet(model.inputs[0].name, tensors, "random", None, 0)
