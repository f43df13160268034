"""Fidelity: how closely a candidate reproduces the original model's outputs, without any labels.

Each image goes through the candidate (the session under evaluation) and through the reference model (its own
session, ORT by default). Reference outputs are cached in memory per input tensor, so evaluating many candidates
with one task instance runs the reference once per image. Headline: mean cosine similarity (1.0 = identical).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from ..data.base import Dataset, Sample
from ..errors import ModelError, UsageError
from ..runtimes import Runtime
from ..zoo import Preprocessing
from .base import Metrics, Task
from .common import AuxModel, normalize, parse_size
from .metrics import mean_ci
from .textdet import det_resize_shape

ANY_KIND = ("images", "classification", "coco", "icdar", "ocr_lines")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two flattened arrays as 1 - |a/|a| - b/|b||^2 / 2: exactly 1.0 for identical inputs.
    Two all-zero arrays are identical (1.0); one all-zero array against another is 0.0."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(np.clip(1.0 - np.sum((a / na - b / nb) ** 2) / 2.0, -1.0, 1.0))


def compare_outputs(candidate: list[np.ndarray], reference: list[np.ndarray]) -> dict[str, float | None]:
    """Per-image agreement: cosine over all outputs together, max/mean absolute error, and top-1 agreement
    (argmax over the last axis) for classifier-shaped outputs ((N, C) or (N, T, C), C > 1); None when none is."""
    if len(candidate) != len(reference):
        raise ModelError(f"the candidate returns {len(candidate)} outputs but the reference returns "
                         f"{len(reference)}; fidelity needs the same outputs")
    for i, (c, r) in enumerate(zip(candidate, reference, strict=True)):
        if c.shape != r.shape:
            raise ModelError(f"candidate output {i} has shape {tuple(c.shape)} but the reference's is "
                             f"{tuple(r.shape)}; compare models with the same outputs")
    flat_c = np.concatenate([np.asarray(c, np.float64).ravel() for c in candidate])
    flat_r = np.concatenate([np.asarray(r, np.float64).ravel() for r in reference])
    diff = np.abs(flat_c - flat_r)
    agree = [np.mean(c.argmax(axis=-1) == r.argmax(axis=-1)) for c, r in zip(candidate, reference, strict=True)
             if c.ndim in (2, 3) and c.shape[-1] > 1]
    return {"cosine": cosine(flat_c, flat_r), "max_abs": float(diff.max()) if diff.size else 0.0,
            "mean_abs": float(diff.mean()) if diff.size else 0.0,
            "top1": float(np.mean(agree)) if agree else None}


class FidelityTask(Task):
    """Candidate vs reference outputs on the same inputs. Needs `reference_model`; works on any dataset kind."""

    name: ClassVar[str] = "fidelity"
    metric: ClassVar[str] = "cosine"
    dataset_kinds: ClassVar[tuple[str, ...]] = ANY_KIND

    def __init__(self, preprocessing: Preprocessing | None = None, *, input_size: tuple[int, int] | str | None = None,
                 reference_model: str | Path | None = None, reference_runtime: Runtime | str | None = None,
                 max_side: int = 960, cache_limit_mb: float = 1024.0, **options: Any) -> None:
        super().__init__(preprocessing, input_size=parse_size(input_size), **options)
        if reference_model is None:
            raise UsageError("task 'fidelity' needs a reference model (the original) to compare against; "
                             "give reference_model=PATH")
        self.reference = AuxModel(reference_model, reference_runtime)
        self.max_side = max_side
        self.cache_limit = int(cache_limit_mb * 2**20)
        self._cache: dict[bytes, list[np.ndarray]] = {}
        self._cached_bytes = 0

    def close(self) -> None:
        self.reference.close()

    def input_shape(self, height: int, width: int) -> tuple[int, int]:
        """Fixed-size models get their size; dynamic ones keep the image's aspect, long side <= max_side, rounded to
        the model's size multiple (32 when unknown: what most fully convolutional models need)."""
        size = self.input_size or self.preprocessing.input_size
        if size:
            return size
        multiple = self.preprocessing.size_multiple if self.preprocessing.size_multiple > 1 else 32
        return det_resize_shape(height, width, limit_side_len=self.max_side, limit_type="max", multiple=multiple,
                                max_side_len=None)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.input_shape(*image.shape[:2])
        tensor = normalize(cv2.resize(image, (w, h)), self.preprocessing)
        return tensor, tensor

    def reference_outputs(self, tensor: np.ndarray) -> list[np.ndarray]:
        """The reference model's outputs for this exact input, from the cache when seen before."""
        digest = hashlib.blake2b(np.asarray(tensor.shape, np.int64).tobytes(), digest_size=16)
        digest.update(np.ascontiguousarray(tensor).tobytes())
        key = digest.digest()
        if key in self._cache:
            return self._cache[key]
        outputs = [np.array(o, copy=True) for o in self.reference.run(tensor)]
        size = sum(o.nbytes for o in outputs)
        if self._cached_bytes + size <= self.cache_limit:
            self._cache[key] = outputs
            self._cached_bytes += size
        return outputs

    def postprocess(self, outputs: list[np.ndarray], meta: np.ndarray) -> dict[str, float | None]:
        return compare_outputs([np.asarray(o) for o in outputs], self.reference_outputs(meta))

    def score(self, predictions: list[Any], samples: list[Sample], dataset: Dataset) -> Metrics:
        cos = [p["cosine"] for p in predictions]
        n = len(cos)
        low, high = mean_ci(cos)
        details = {"cosine_min": float(min(cos)) if n else 0.0,
                   "max_abs_error": float(max(p["max_abs"] for p in predictions)) if n else 0.0,
                   "mean_abs_error": float(np.mean([p["mean_abs"] for p in predictions])) if n else 0.0}
        top1 = [p["top1"] for p in predictions if p["top1"] is not None]
        if top1:
            details["top1_agreement"] = float(np.mean(top1))
        return Metrics(self.name, self.metric, float(np.mean(cos)) if n else 0.0, low, high, n_images=n,
                       details=details)
