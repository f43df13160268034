"""Calibration images for compression: a folder of images preprocessed into the model's input tensors.

Images come from cvtune.data.loaders.load_images when available (else a sorted recursive scan), are preprocessed
by the model's task (cvtune.tasks.TASKS[name](preprocessing, input_size=(H, W)).preprocess) or, for a model without
a task, resized to the model's input size with its Preprocessing spec. Every tensor has the same shape, so the
statistics and least-squares fits see the resolution the model will run at.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.base import IMAGE_SUFFIXES, read_image_or_warn
from ..errors import DatasetError, UsageError
from ..model import Model
from ..zoo import Preprocessing, find_by_path

__all__ = ["image_files", "load_calibration", "preprocess_image"]


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Sorted image files under `folder` (recursive); DatasetError when there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(f"calibration folder {folder} does not exist")
    if not folder.is_dir():
        raise DatasetError(f"--calib needs a folder of images; {folder} is a file")
    try:
        from ..data.loaders import load_images  # written by the datasets helper; optional until it lands

        return [s.path for s in load_images(folder).samples]
    except ImportError:
        pass
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no images found in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return files


def preprocess_image(image: np.ndarray, preprocessing: Preprocessing, size: tuple[int, int]) -> np.ndarray:
    """BGR uint8 image -> (1, 3, H, W) float32 with the model's scale/mean/std/channel order."""
    import cv2

    resized = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    if preprocessing.rgb:
        resized = resized[:, :, ::-1]
    x = resized.astype(np.float32) * np.float32(preprocessing.scale)
    x = (x - np.asarray(preprocessing.mean, np.float32)) / np.asarray(preprocessing.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def _task_preprocess(task: str | None, preprocessing: Preprocessing, size: tuple[int, int]):
    if task is None:
        return None
    try:
        from ..tasks import TASKS
    except ImportError:  # pragma: no cover - the registry always imports
        return None
    if task not in TASKS:
        if TASKS:
            raise UsageError(f"unknown task '{task}'; choose one of: {', '.join(TASKS)}")
        return None
    instance = TASKS[task](preprocessing, input_size=size)
    return lambda image: np.asarray(instance.preprocess(image)[0], dtype=np.float32)


def load_calibration(model_path: str | os.PathLike[str], folder: str | os.PathLike[str], *, size: int = 16,
                     input_shape: tuple[int, ...] | None = None, task: str | None = None, seed: int = 0
                     ) -> list[np.ndarray]:
    """Up to `size` preprocessed images from `folder` as (1, C, H, W) float32 tensors (a seeded choice when the
    folder holds more). Unreadable images are skipped with a warning; none readable is a DatasetError."""
    if size < 1:
        raise UsageError(f"--calib-size must be >= 1 (got {size})")
    files = image_files(folder)
    if len(files) > size:
        order = np.random.default_rng(seed).permutation(len(files))[:size]
        files = [files[i] for i in sorted(order)]
    model = Model.load(model_path)
    shape = tuple(input_shape) if input_shape else model.default_input_shape()
    if len(shape) != 4:
        raise UsageError(f"calibration needs a 4-D image input (N, C, H, W); the model's input is {list(shape)}")
    hw = (int(shape[2]), int(shape[3]))
    zoo_entry = find_by_path(model_path)
    chosen_task = task or (zoo_entry.task if zoo_entry else None)
    try:
        task_fn = _task_preprocess(chosen_task, model.preprocessing, hw)
    except UsageError:
        if task is not None:
            raise
        task_fn = None
    tensors = []
    skipped: list = []
    for path in files:
        image = read_image_or_warn(path, skipped)
        if image is None:
            continue
        tensor = task_fn(image) if task_fn else preprocess_image(image, model.preprocessing, hw)
        if tensor.shape[2:] != hw:  # a task that ignores input_size: fall back to the plain resize
            tensor = preprocess_image(image, model.preprocessing, hw)
        tensors.append(tensor)
    if not tensors:
        raise DatasetError(f"none of the {len(files)} images in {folder} could be read")
    return tensors
