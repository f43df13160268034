"""Semantic segmentation: per-pixel classes from a score map, scored with mean IoU against label masks.

The model returns one score map: (1, C, H, W) or (1, H, W, C) class scores (argmax; C >= 2), or a single channel
(1, 1, H, W) / (1, H, W) foreground probability (thresholded at `threshold`; logits go through a sigmoid first), as
MediaPipe's selfie segmentation does. Images become tensors the way the preprocessing spec says
(`Preprocessing.to_tensor`; the option `resize` overrides its mode); the map is resized to the network input and the
spec's `Geometry` maps it back onto the original image (letterbox padding dropped, a center crop's lost margin
background), so masks line up with the labels pixel for pixel.
Labels: `segmentation` datasets (data/loaders.py: images/ + masks/ with the class index per pixel, 255 ignored).
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np

from ..data.base import Dataset, Sample
from ..errors import DatasetError, UsageError
from ..preprocess import Geometry, Preprocessing
from .base import Metrics, Task
from .common import output_error, parse_size
from .metrics import statistic_ci, statistic_value

RESIZE_MODES = ("stretch", "letterbox", "center_crop")
DEFAULT_SIZE = (256, 256)
IGNORE_INDEX = 255


def score_map(outputs: list[np.ndarray]) -> np.ndarray:
    """The model's score map as (H, W, C) float32 (C = 1 for a foreground map)."""
    out = np.asarray(outputs[0]) if outputs else np.zeros(0)
    if out.ndim == 3 and out.shape[0] == 1:
        return out[0][..., None].astype(np.float32)
    if out.ndim == 4 and out.shape[0] == 1:
        if out.shape[1] < min(out.shape[2:]):
            return np.ascontiguousarray(out[0].transpose(1, 2, 0), dtype=np.float32)
        if out.shape[3] < min(out.shape[1:3]):
            return np.ascontiguousarray(out[0], dtype=np.float32)
    raise output_error("segment", "one (1, C, H, W) / (1, H, W, C) score map or a (1, H, W) foreground map",
                       list(outputs), "use a semantic segmentation model")


def class_mask(scores: np.ndarray, geometry: Geometry, *, threshold: float = 0.5) -> np.ndarray:
    """(H, W, C) scores in network space -> (h, w) uint8 class indices on the original image (the spec's Geometry:
    pixels outside what the network saw are background)."""
    in_h, in_w = geometry.input_size
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    if scores.shape[2] == 1:
        fg = scores[..., 0]
        if fg.size and (fg.min() < 0 or fg.max() > 1):
            fg = 1.0 / (1.0 + np.exp(-fg))
        if fg.shape != (in_h, in_w):
            fg = cv2.resize(fg, (in_w, in_h), interpolation=cv2.INTER_LINEAR)
        return (geometry.mask_to_image(fg) >= threshold).astype(np.uint8)
    if scores.shape[:2] != (in_h, in_w):
        scores = cv2.resize(scores, (in_w, in_h), interpolation=cv2.INTER_LINEAR).reshape(in_h, in_w, -1)
    return geometry.mask_to_image(scores).argmax(axis=2).astype(np.uint8)


def iou_counts(pred: np.ndarray, truth: np.ndarray, num_classes: int, *, ignore_index: int = IGNORE_INDEX
               ) -> list[float]:
    """One image's (intersection per class..., union per class...) pixel counts; `ignore_index` pixels skipped."""
    if pred.shape != truth.shape:
        raise DatasetError(f"a predicted mask of {pred.shape[1]}x{pred.shape[0]} cannot be compared with a label "
                           f"mask of {truth.shape[1]}x{truth.shape[0]}; masks must have their image's size")
    valid = truth != ignore_index
    p, t = pred[valid].astype(np.int64), truth[valid].astype(np.int64)
    inter = np.bincount(t[p == t], minlength=num_classes)[:num_classes]
    area_p = np.bincount(p, minlength=num_classes)[:num_classes]
    area_t = np.bincount(t, minlength=num_classes)[:num_classes]
    return [float(v) for v in inter] + [float(v) for v in area_p + area_t - inter]


def miou_metrics(task: str, name: str, pairs: list[tuple[np.ndarray, np.ndarray]], *,
                 ignore_index: int = IGNORE_INDEX, class_names: list[str] | None = None) -> Metrics:
    """Mean IoU over (prediction, truth) mask pairs, with per-image rows (statistic 'miou') and a bootstrap CI."""
    num_classes = max([int(m[m != ignore_index].max(initial=0)) for pair in pairs for m in pair] + [0]) + 1
    if class_names:
        num_classes = max(num_classes, len(class_names))
    rows = [iou_counts(p, t, num_classes, ignore_index=ignore_index) for p, t in pairs]
    value = statistic_value("miou", rows) if rows else 0.0
    low, high = statistic_ci("miou", rows)
    details: dict[str, float] = {"classes": float(num_classes)}
    if rows:
        sums = np.sum(rows, axis=0)
        inter, union = sums[:num_classes], sums[num_classes:]
        total = float(np.sum([np.sum(t != ignore_index) for _, t in pairs]))
        details["pixel_acc"] = float(inter.sum() / total) if total else 1.0
        for c in range(num_classes):
            if union[c] > 0:
                label = class_names[c] if class_names and c < len(class_names) else str(c)
                details[f"iou_{label}"] = float(inter[c] / union[c])
    return Metrics(task, name, value, low, high, n_images=len(rows), details=details, per_image=rows,
                   statistic="miou")


class SegmentTask(Task):
    """Semantic segmentation. Prediction: {'mask': (h, w) uint8 class indices on the original image}.
    Metric: mIoU over the classes present in the labels or the predictions; details: pixel accuracy, IoU per class."""

    name: ClassVar[str] = "segment"
    metric: ClassVar[str] = "miou"
    dataset_kinds: ClassVar[tuple[str, ...]] = ("segmentation",)

    def __init__(self, preprocessing: Preprocessing | None = None, *, input_size: tuple[int, int] | str | None = None,
                 resize: str | None = None, threshold: float = 0.5, ignore_index: int = IGNORE_INDEX,
                 class_names: list[str] | None = None, **options: Any) -> None:
        super().__init__(preprocessing, input_size=parse_size(input_size), **options)
        if resize is not None and resize not in RESIZE_MODES:
            raise UsageError(f"unknown resize mode '{resize}'; choose one of: {', '.join(RESIZE_MODES)}")
        if not 0 < threshold < 1:
            raise UsageError(f"threshold must be in (0, 1) (got {threshold})")
        self.threshold, self.ignore_index = threshold, ignore_index
        self.class_names = list(class_names) if class_names else None
        self.preprocessing = self.preprocessing.for_task(resize, self.input_size, default_size=DEFAULT_SIZE)
        self.resize, self.size = self.preprocessing.resize, self.preprocessing.input_size

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        return self.preprocessing.to_tensor(image)

    def postprocess(self, outputs: list[np.ndarray], meta: Geometry) -> dict[str, Any]:
        return {"mask": class_mask(score_map(outputs), meta, threshold=self.threshold)}

    def score(self, predictions: list[Any], samples: list[Sample], dataset: Dataset) -> Metrics:
        from ..data.loaders import read_mask

        pairs = []
        for prediction, sample in zip(predictions, samples, strict=True):
            if sample.target is None:
                raise DatasetError(f"task 'segment' needs a label mask for {sample.path}; load the data with "
                                   f"kind 'segmentation' (images/ + masks/ folders)")
            pairs.append((prediction["mask"], read_mask(sample.target)))
        return miou_metrics(self.name, self.metric, pairs, ignore_index=self.ignore_index,
                            class_names=self.class_names or dataset.classes or None)
