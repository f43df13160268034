"""Small helpers the tasks share: image -> normalized tensor (plain or aspect-keeping padded), softmax-if-needed,
output shape checks, lazily opened helper models."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import ModelError, UsageError
from ..preprocess import Preprocessing
from ..runtimes import Runtime, Session, make_runtime


def normalize(image: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """A resized BGR uint8 (H, W, 3) image -> the (1, C, H, W) (or (1, H, W, C) for NHWC) tensor: the spec's
    channel order, x * scale, (x - mean) / std and dtype (Preprocessing.normalize)."""
    return preprocessing.normalize(image)


def resize_pad(crop: np.ndarray, height: int, width: int, preprocessing: Preprocessing) -> np.ndarray:
    """Resize a crop to `height` keeping its aspect (at most `width` wide), normalize, zero-pad on the right:
    (C, height, width) (or (height, width, C) for NHWC) in the spec's dtype, as PaddleOCR's resize_norm_img."""
    h, w = crop.shape[:2]
    new_w = min(width, max(1, int(math.ceil(height * w / max(h, 1)))))
    resized = cv2.resize(crop, (new_w, height))
    tensor = normalize(resized, preprocessing)[0]
    if preprocessing.layout == "NHWC":
        out = np.zeros((height, width, tensor.shape[2]), dtype=tensor.dtype)
        out[:, :new_w] = tensor
        return out
    out = np.zeros((tensor.shape[0], height, width), dtype=tensor.dtype)
    out[:, :, :new_w] = tensor
    return out


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def as_probabilities(rows: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rows that already are probabilities (in [0, 1], summing to 1) stay as they are; logits get a softmax."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.size and rows.min() >= 0 and rows.max() <= 1 and np.allclose(rows.sum(axis=axis), 1.0, atol=1e-3):
        return rows
    return softmax(rows, axis=axis)


def parse_size(value: Any, what: str = "input_size") -> tuple[int, int] | None:
    """(H, W) from a tuple/list or an 'HxW' string; None stays None. Bad values raise UsageError."""
    if value is None:
        return None
    try:
        parts = value.lower().split("x") if isinstance(value, str) else list(value)
        size = tuple(int(p) for p in parts)
    except (TypeError, ValueError, OverflowError):
        size = ()
    if len(size) != 2 or min(size) <= 0 or max(size) > 16384:
        raise UsageError(f"{what} must be HEIGHTxWIDTH with positive integers up to 16384, e.g. 640x640 "
                         f"(got {value!r})")
    return size  # type: ignore[return-value]


def output_error(task: str, expected: str, outputs: list[np.ndarray], hint: str) -> ModelError:
    """The one-line error for a model whose outputs do not fit the task."""
    shapes = ", ".join(str(tuple(o.shape)) for o in outputs) or "none"
    return ModelError(f"task '{task}' expects {expected}, but the model returned output shape(s) {shapes}; {hint}")


def resolve_runtime(runtime: Runtime | str | None) -> Runtime:
    """A Runtime from an instance, a registry name, or None (ONNX Runtime with its defaults)."""
    if runtime is None:
        return make_runtime("ort")
    if isinstance(runtime, str):
        return make_runtime(runtime)
    return runtime


class AuxModel:
    """A helper model a task runs itself (the OCR detector/classifier, the fidelity reference), opened lazily
    on first use so building a task stays cheap. One per task instance: sessions are not thread-safe."""

    def __init__(self, path: str | Path, runtime: Runtime | str | None = None) -> None:
        self.path = Path(path)
        self.runtime = resolve_runtime(runtime)
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            path = self.path
            if path.suffix.lower() != ".onnx" and not self.runtime.reads(path):  # a .tflite run by ORT/OpenVINO
                from ..convert import ensure_onnx

                path = ensure_onnx(path)
            self._session = self.runtime.open(path)
        return self._session

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(batch)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
