"""The one calibration stream: the user's images, chosen, read and preprocessed the same way for every technique
that calibrates (channel pruning, static int8, sensitivity, the search).

- What a technique needs is data: `CalibrationNeed(count, max_side, split)`.
- One sampling rule: `count` images spread evenly over the sorted dataset (deterministic, representative).
- One preprocessing rule (`preprocessor`): the task's own `preprocess` for the model (tasks.spec), or,
  without a task, the model's Preprocessing (the user's --preprocess, else what the file says, else the guess:
  cvtune.preprocess) applied to the model's input size. For fully convolutional models a `max_side` need
  downscales the tensors, keeping the size multiple.
- Tensors are produced lazily: iterating a `CalibrationSet` (or its ORT `reader()`) reads and preprocesses one image
  at a time, so hundreds of 640x640 images are never all in memory; `tensors()` materializes them for the users
  that need them all at once (least-squares reconstruction).

    from cvtune.data.calibration import CalibrationNeed, calibration_set
    calib = calibration_set("model.onnx", "images/", CalibrationNeed(count=64), task="textdet")
    for tensor in calib: ...                      # one (1, C, H, W) float32 tensor at a time
    quantize_static(..., calibration_data_reader=calib.reader())
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import DatasetError, UsageError
from ..model import Model
from .base import Dataset, Sample, read_image_or_warn

if TYPE_CHECKING:
    from ..preprocess import Preprocessing
    from ..tasks.spec import TaskSpec

__all__ = ["SPLITS", "CalibrationNeed", "CalibrationReader", "CalibrationSet", "ImageTensors", "NoiseTensors",
           "calibration_set", "downscale", "preprocessor", "random_calibration", "spread"]

# Which split of the user's data a technique reads. "calib": the calibration split, disjoint from evaluation.
SPLITS = ("calib",)


@dataclass(frozen=True)
class CalibrationNeed:
    """What a technique needs from the calibration data: `count` images; for fully convolutional models, tensors
    downscaled so their longest side is at most `max_side` (None: the size the preprocessing gives); `split` names
    the split of the user's data it reads."""

    count: int
    max_side: int | None = None
    split: str = "calib"

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int | np.integer) or self.count < 1:
            raise UsageError(f"the calibration image count must be a whole number >= 1 (got {self.count!r}): how many "
                             f"calibration images to use, e.g. 16")
        if self.max_side is not None and (isinstance(self.max_side, bool)
                                          or not isinstance(self.max_side, int | np.integer) or self.max_side < 1):
            raise UsageError(f"calibration max_side must be a positive number of pixels, e.g. 736, or None to keep "
                             f"the preprocessed size (got {self.max_side!r})")
        if self.split not in SPLITS:
            raise UsageError(f"unknown calibration split '{self.split}'; choose one of: {', '.join(SPLITS)} "
                             f"(calibration never reads the evaluation split)")

    def to_dict(self) -> dict[str, Any]:
        return {"count": int(self.count), "max_side": self.max_side, "split": self.split}


# ---------------------------------------------------------------------------------------------- tensor sources


class Tensors(Protocol):
    """What a CalibrationSet holds: a sized collection of (1, C, H, W) float32 tensors that can be iterated again
    and again (a tuple of ready tensors, or a lazy view that preprocesses on iteration)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[np.ndarray]: ...


class ImageTensors:
    """Images preprocessed on iteration, one at a time: nothing is cached, so memory holds one image and one
    tensor whatever the count. Remembers the tensor shapes of its last complete pass (for the sidecar)."""

    def __init__(self, paths: Sequence[Path], preprocess: Callable[[np.ndarray], np.ndarray]) -> None:
        self.paths = tuple(paths)
        self.preprocess = preprocess
        self._shapes: tuple[tuple[int, ...], ...] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[np.ndarray]:
        shapes: set[tuple[int, ...]] = set()
        for path in self.paths:
            image = read_image_or_warn(path)  # readable when the set was made; warned about if not any more
            if image is None:
                continue
            tensor = self.preprocess(image)
            del image
            shapes.add(tuple(tensor.shape))
            yield tensor
            del tensor  # hold nothing while the consumer works on the next one
        self._shapes = tuple(sorted(shapes))

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        if self._shapes is None:
            for _ in self:  # one streaming pass
                pass
        return self._shapes or ()


class NoiseTensors:
    """`n` seeded uniform [-1, 1) tensors, the same ones on every iteration."""

    def __init__(self, shape: tuple[int, ...], n: int, seed: int) -> None:
        self.shape, self.n, self.seed = tuple(int(d) for d in shape), n, seed

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        for _ in range(self.n):
            yield rng.random(self.shape, dtype=np.float32) * 2 - 1

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return (self.shape,) if self.n else ()


class CalibrationReader:
    """ONNX Runtime's CalibrationDataReader protocol (get_next / rewind), duck-typed so importing cvtune does not
    import ORT. Streams: each get_next() produces the next tensor and holds no earlier one."""

    def __init__(self, input_name: str, tensors: Tensors) -> None:
        self.input_name = input_name
        self.tensors = tensors
        self._iterator: Iterator[np.ndarray] | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iterator is None:
            self._iterator = iter(self.tensors)
        tensor = next(self._iterator, None)
        return None if tensor is None else {self.input_name: tensor}

    def rewind(self) -> None:
        self._iterator = None

    def __len__(self) -> int:
        return len(self.tensors)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        return iter(self.get_next, None)


@dataclass(frozen=True, eq=False)
class CalibrationSet:
    """Calibration tensors for one model input, and where they came from. `stream` is any sized, re-iterable
    collection of (1, C, H, W) float32 tensors: an ImageTensors view for images (read lazily), or a tuple of ready
    tensors. Iterate it for one tensor at a time; `reader()` for ORT; `tensors()` to hold them all."""

    input_name: str
    stream: Tensors
    source: str
    task: str | None = None
    skipped: int = 0
    need: CalibrationNeed | None = None
    preprocessing: Preprocessing | None = None  # what made the tensors (None: random tensors)

    def __len__(self) -> int:
        return len(self.stream)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.stream)

    def reader(self) -> CalibrationReader:
        return CalibrationReader(self.input_name, self.stream)

    def tensors(self) -> list[np.ndarray]:
        """Every tensor in memory at once (for least-squares reconstruction, which revisits them per layer)."""
        return list(self.stream)

    def head(self, n: int) -> list[np.ndarray]:
        """The first `n` tensors (a few inputs for fidelity checks), reading only those."""
        return list(itertools.islice(self.stream, n))

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        shapes = getattr(self.stream, "shapes", None)
        if callable(shapes):
            return tuple(shapes())
        return tuple(sorted({tuple(t.shape) for t in self.stream}))

    def to_dict(self) -> dict[str, Any]:
        shapes = ["x".join(map(str, s)) for s in self.shapes()]
        pre = self.preprocessing
        return {"source": self.source, "images": len(self), "task": self.task, "skipped": self.skipped,
                "need": self.need.to_dict() if self.need else None,
                "preprocessing": pre.to_string() if pre else None,
                "preprocessing_source": pre.source if pre else None,
                "shapes": shapes[:8] + ([f"... {len(shapes) - 8} more"] if len(shapes) > 8 else [])}


# ---------------------------------------------------------------------------------------------- the rules


def spread(dataset: Dataset, count: int) -> Dataset:
    """At most `count` samples spread evenly over the (sorted) dataset: deterministic and representative."""
    if count < 1:
        raise UsageError(f"the calibration image count must be >= 1 (got {count})")
    n = len(dataset.samples)
    if n <= count:
        return dataset
    return dataset.subset(sorted({int(i) for i in np.linspace(0, n - 1, count).round()}))


def downscale(tensor: np.ndarray, max_side: int, multiple: int) -> np.ndarray:
    """A (1, C, H, W) tensor resized (area interpolation) so its longest side is at most `max_side`, each side
    rounded to a multiple of `multiple` (and at least one multiple)."""
    import cv2

    h, w = tensor.shape[2:4]
    ratio = max_side / max(h, w)
    if ratio >= 1:
        return tensor
    multiple = max(1, int(multiple))
    nh = max(multiple, int(round(h * ratio / multiple)) * multiple)
    nw = max(multiple, int(round(w * ratio / multiple)) * multiple)
    hwc = np.ascontiguousarray(tensor[0].transpose(1, 2, 0))
    out = cv2.resize(hwc, (nw, nh), interpolation=cv2.INTER_AREA)
    out = out[..., None] if out.ndim == 2 else out
    return np.ascontiguousarray(out.transpose(2, 0, 1)[None], dtype=np.float32)


def preprocessor(model: str | os.PathLike[str] | Model, *, task: str | TaskSpec | None = None,
                 task_options: dict[str, Any] | None = None, input_shape: tuple[int, ...] | None = None,
                 max_side: int | None = None, preprocessing: Preprocessing | str | None = None
                 ) -> Callable[[np.ndarray], np.ndarray]:
    """BGR uint8 image -> input tensor, the one rule every calibration uses: the task's own preprocessing for this
    model (a TaskSpec resolved by the caller, or a task name resolved here; at `input_shape`'s H x W when given), or
    without a task the model's Preprocessing (`preprocessing` from the user, else what the file says, else the
    guess) at `input_shape` / its fixed size / the model's default input size. With `max_side`, tensors of a fully
    convolutional model (dynamic H and W, no fixed size anywhere) are downscaled so the longest side is at most
    `max_side`, keeping the preprocessing's size multiple. The tensor's dtype is the spec's (float32 mostly)."""
    return _preprocessor(model, task=task, task_options=task_options, input_shape=input_shape, max_side=max_side,
                         preprocessing=preprocessing)[0]


def _preprocessor(model: str | os.PathLike[str] | Model, *, task: str | TaskSpec | None,
                  task_options: dict[str, Any] | None, input_shape: tuple[int, ...] | None, max_side: int | None,
                  preprocessing: Preprocessing | str | None) -> tuple[Callable[[np.ndarray], np.ndarray],
                                                                      Preprocessing]:
    """preprocessor() and the Preprocessing it applies."""
    from ..preprocess import resolve_preprocessing

    model = model if isinstance(model, Model) else Model.load(model)
    model_path = Path(model.path)
    if input_shape is not None and len(input_shape) != 4:
        raise UsageError(f"image calibration needs a 4-dim input shape NxCxHxW, e.g. 1x3x640x640 "
                         f"(got {'x'.join(map(str, input_shape))})")
    options = dict(task_options or {})
    if preprocessing is not None:
        options["preprocessing"] = preprocessing
    if task is not None:
        from ..tasks.spec import TaskSpec, resolve_task

        if isinstance(task, TaskSpec):  # resolved once by the caller (the search): no lookups here
            spec = task.with_options(**options)
            if "preprocessing" in options:
                spec = resolve_task(spec.name, model_path, **spec.options)
        else:
            if task == "fidelity":
                options.setdefault("reference_model", str(model_path))
            spec = resolve_task(task, model_path, **options)
        size = _hw(input_shape, spec.preprocessing) if input_shape is not None else None
        instance = spec.build(input_size=size)
        options = dict(spec.options, **({"input_size": size} if size else {}))
        pre = instance.preprocessing

        def base(image: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(instance.preprocess(image)[0])
    else:
        pre = resolve_preprocessing(model_path, preprocessing) if preprocessing is not None else model.preprocessing
        shape = tuple(input_shape) if input_shape is not None else model.default_input_shape()
        if len(shape) != 4:
            raise UsageError(f"image calibration needs a 4-D image input (N, C, H, W); the model's input is "
                             f"{list(shape)}: give the input shape NxCxHxW")
        size = _hw(shape, pre) if input_shape is not None or pre.input_size is None else pre.input_size

        def base(image: np.ndarray) -> np.ndarray:
            return pre.to_tensor(image, input_size=size)[0]

    fixed_size = input_shape is not None or options.get("input_size") or pre.input_size
    fully_convolutional = {2, 3} <= set(model.inputs[0].dynamic_dims) and not fixed_size
    if max_side is None or not fully_convolutional or pre.layout == "NHWC":
        return base, pre
    multiple = max(1, pre.size_multiple)
    return (lambda image: downscale(base(image), max_side, multiple)), pre


def _hw(shape: tuple[int, ...], pre: Preprocessing | None) -> tuple[int, int]:
    """(H, W) of a 4-D input shape in the preprocessing's layout."""
    if pre is not None and pre.layout == "NHWC":
        return int(shape[1]), int(shape[2])
    return int(shape[2]), int(shape[3])


# ---------------------------------------------------------------------------------------------- entry points


def _as_dataset(images: str | os.PathLike[str] | Dataset | Sequence[str | os.PathLike[str]]) -> Dataset:
    from .loaders import load_images

    if isinstance(images, Dataset):
        return images
    if isinstance(images, str | os.PathLike):
        path = Path(images)
        if not path.exists():
            raise DatasetError(f"calibration folder {path} does not exist; give a folder of calibration images "
                               f"like the ones the model will see")
        return load_images(path)
    paths = [Path(p) for p in images]
    if not paths:
        raise DatasetError("no calibration images given; give a folder of calibration images like the ones the "
                           "model will see")
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return Dataset("images", root, [Sample(p) for p in paths])


def calibration_set(model_path: str | os.PathLike[str],
                    images: str | os.PathLike[str] | Dataset | Sequence[str | os.PathLike[str]],
                    need: CalibrationNeed, *, task: str | TaskSpec | None = None,
                    task_options: dict[str, Any] | None = None, input_shape: tuple[int, ...] | None = None,
                    preprocessing: Preprocessing | str | None = None) -> CalibrationSet:
    """`need.count` images spread over `images` (a folder, a loaded Dataset, e.g. the calibration split, or a
    list of image files), preprocessed by `preprocessor` on demand (`preprocessing`: the user's spec, a
    Preprocessing or a --preprocess string; the set records which spec made its tensors and its source). Every
    chosen image is decoded once here (and dropped) so unreadable ones are skipped with a warning and counted now;
    none readable is a DatasetError."""
    from .loaders import iter_images

    if not isinstance(need, CalibrationNeed):
        raise UsageError(f"calibration_set takes a CalibrationNeed, e.g. CalibrationNeed(count=16) "
                         f"(got {type(need).__name__})")
    model = Model.load(model_path)
    dataset = _as_dataset(images)
    chosen = spread(dataset, need.count)
    preprocess, spec = _preprocessor(model, task=task, task_options=task_options, input_shape=input_shape,
                                     max_side=need.max_side, preprocessing=preprocessing)
    before = len(chosen.skipped)
    readable = [sample.path for sample, _ in iter_images(chosen)]  # decode, check, drop: nothing is kept
    skipped = len(chosen.skipped) - before
    if not readable:
        raise DatasetError(f"no calibration images could be read from {dataset.root}; give a folder "
                           f"of images like the ones the model will see")
    name = task if isinstance(task, str) or task is None else task.name
    return CalibrationSet(model.inputs[0].name, ImageTensors(readable, preprocess), str(dataset.root), name, skipped,
                          need, spec)


def random_calibration(model_path: str | os.PathLike[str], input_shape: tuple[int, ...] | None = None, *,
                       n: int = 4, seed: int = 0) -> CalibrationSet:
    """Uniform [-1, 1) tensors: only for checks and tests that have no images (ranges from noise are not what a
    deployed model should use)."""
    model = Model.load(model_path)
    shape = tuple(input_shape) if input_shape else model.default_input_shape()
    return CalibrationSet(model.inputs[0].name, NoiseTensors(shape, n, seed), "random", None, 0)
