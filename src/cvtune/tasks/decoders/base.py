"""What every detection decoder shares: the Detections record, the Decoder base class and the selection step
(score threshold, class-aware NMS with cv2.dnn.NMSBoxesBatched, max_det).

Decoders work in model-input pixels, independent of how the image was resized: the task maps boxes back to the
original image with its own geometry (letterbox, stretch) after decoding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from ...errors import ModelError, UsageError

__all__ = ["Detections", "Decoder", "OutputFacts", "best_class", "empty", "grid_count", "select",
           "xywh_center_to_xyxy"]


@dataclass(frozen=True)
class Detections:
    """Boxes in model-input pixels: (n, 4) x1 y1 x2 y2 float32, (n,) scores float32, (n,) class indices int64."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, index: np.ndarray) -> Detections:
        return Detections(self.boxes[index], self.scores[index], self.classes[index])


def empty() -> Detections:
    return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


@dataclass(frozen=True)
class OutputFacts:
    """What a decoder may look at to say whether it fits a model: output shapes (batch included), the model-input
    (H, W), and the class count when the model file names its classes (Ultralytics `names`), else None."""

    shapes: tuple[tuple[int, ...], ...]
    input_size: tuple[int, int]
    num_classes: int | None = None
    ultralytics_task: str | None = None


@dataclass(frozen=True)
class Decoder:
    """Base of the registered decoders (frozen dataclasses: their fields are the layout's options).

    Subclasses set `name` and `summary` (one line, listed in errors) and implement `candidates` (every box the head
    proposes with its best class score, before thresholding) and `fits` (True when the outputs are unambiguously
    laid out as this decoder expects)."""

    name: ClassVar[str] = "base"
    summary: ClassVar[str] = ""

    def candidates(self, outputs: list[np.ndarray], input_size: tuple[int, int]) -> Detections:
        raise NotImplementedError

    @classmethod
    def fits(cls, facts: OutputFacts) -> bool:
        return False

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_options(cls, **options: Any) -> Decoder:
        """The decoder with these options; an option it does not have is a UsageError listing the ones it has."""
        unknown = sorted(set(options) - set(cls.option_names()))
        if unknown:
            takes = ", ".join(cls.option_names()) or "no options"
            raise UsageError(f"decoder '{cls.name}' has no option {', '.join(unknown)}; it takes: {takes}")
        return cls(**options)

    def decode(self, outputs: list[np.ndarray], input_size: tuple[int, int], *, conf_thresh: float = 0.25,
               iou_thresh: float = 0.45, max_det: int = 300, nms: bool = True) -> Detections:
        """Final detections for one image: candidates, score >= conf_thresh, class-aware NMS, best max_det."""
        return select(self.candidates(outputs, input_size), conf_thresh=conf_thresh, iou_thresh=iou_thresh,
                      max_det=max_det, nms=nms)

    def shape_error(self, expected: str, outputs: list[np.ndarray]) -> ModelError:
        shapes = ", ".join(str(tuple(o.shape)) for o in outputs) or "none"
        return ModelError(f"decoder '{self.name}' expects {expected}, but the model returned output shape(s) "
                          f"{shapes}; choose the decoder that fits the model with the task option decoder=NAME")


def select(found: Detections, *, conf_thresh: float, iou_thresh: float, max_det: int, nms: bool = True
           ) -> Detections:
    """Keep scores >= conf_thresh, suppress overlaps per class (cv2.dnn.NMSBoxesBatched), best `max_det` first.
    Sorting is stable, so equal inputs always give equal outputs."""
    keep = np.flatnonzero(found.scores >= conf_thresh)
    found = found.take(keep)
    if len(found) and nms:
        xywh = np.concatenate([found.boxes[:, :2], found.boxes[:, 2:] - found.boxes[:, :2]], axis=1)
        idx = cv2.dnn.NMSBoxesBatched(xywh.astype(np.float64).tolist(), found.scores.astype(np.float64).tolist(),
                                      found.classes.astype(np.int64).tolist(), float(conf_thresh), float(iou_thresh))
        found = found.take(np.sort(np.asarray(idx, dtype=np.int64).reshape(-1)))
    order = np.argsort(-found.scores, kind="stable")[:max_det]
    return found.take(order)


def xywh_center_to_xyxy(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1).astype(np.float32)


def best_class(class_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A, C) per-anchor class scores -> (best class index, its score) per anchor."""
    if class_scores.shape[1] == 0:
        return np.zeros(class_scores.shape[0], np.int64), np.zeros(class_scores.shape[0], np.float32)
    classes = class_scores.argmax(axis=1)
    return classes.astype(np.int64), class_scores[np.arange(class_scores.shape[0]), classes].astype(np.float32)


def objectness_head(facts: OutputFacts) -> tuple[int, int] | None:
    """(boxes, channels) of a single (1, boxes, 5 + classes) head with objectness (YOLOv5, YOLOX) that fits the
    model's class count when its file names its classes; None otherwise (or an Ultralytics-tagged model)."""
    if len(facts.shapes) != 1 or len(facts.shapes[0]) != 3 or facts.ultralytics_task:
        return None
    _, boxes, channels = facts.shapes[0]
    if channels < 6 or (facts.num_classes is not None and channels != 5 + facts.num_classes):
        return None
    return boxes, channels


def grid_count(input_size: tuple[int, int], strides: tuple[int, ...]) -> int:
    """Cells of a multi-stride grid (ceil division, as strided convolutions with padding produce)."""
    h, w = input_size
    return sum(-(-h // s) * -(-w // s) for s in strides)
