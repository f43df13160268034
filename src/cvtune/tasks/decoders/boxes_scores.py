"""Models that output finished boxes (NMS inside the graph, DETR-style heads, exported post-processing):

- one output of (1, K, 6) rows x1, y1, x2, y2, score, class;
- two outputs: boxes (1, K, 4) and scores (1, K, C) or (1, K) (class 0 then);
- three outputs: boxes (1, K, 4), scores (1, K), classes (1, K).
Boxes are xyxy by default (`box_format`: xyxy, xywh, cxcywh, yxyx); normalized coordinates (all within [0, 1.5])
are scaled to input pixels unless `normalized` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...errors import UsageError
from .base import Decoder, Detections, OutputFacts, best_class

BOX_FORMATS = ("xyxy", "xywh", "cxcywh", "yxyx")


def _squeeze(o: np.ndarray) -> np.ndarray:
    """Drop a batch axis of 1: (1, K, 4) -> (K, 4), (1, K) -> (K,)."""
    return o[0] if o.ndim >= 2 and o.shape[0] == 1 else o


@dataclass(frozen=True)
class BoxesScoresDecoder(Decoder):
    name: ClassVar[str] = "boxes_scores"
    summary: ClassVar[str] = ("finished boxes: (1, K, 6) x1 y1 x2 y2 score class rows, or boxes (1, K, 4) + "
                              "scores (1, K[, C]) [+ classes (1, K)]")
    box_format: str = "xyxy"
    normalized: bool | None = None

    def __post_init__(self) -> None:
        if self.box_format not in BOX_FORMATS:
            raise UsageError(f"unknown box_format '{self.box_format}'; choose one of: {', '.join(BOX_FORMATS)}")

    def _parts(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        outs = [np.asarray(o) for o in outputs]
        if len(outs) == 1:
            rows = _squeeze(outs[0]) if outs[0].ndim == 3 else outs[0].reshape(-1, outs[0].shape[-1])
            if rows.ndim == 2 and rows.shape[1] == 6:
                return rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64)
            return None
        flat = [_squeeze(o) for o in outs]
        boxes = [f for f in flat if f.ndim == 2 and f.shape[1] == 4]
        rest = [f for f in flat if not (f.ndim == 2 and f.shape[1] == 4)]
        if len(boxes) != 1 or not rest:
            return None
        box = boxes[0]
        if len(outs) == 2 and rest[0].shape[0] == box.shape[0] and rest[0].ndim in (1, 2):
            scores = rest[0] if rest[0].ndim == 2 else rest[0][:, None]
            classes, best = best_class(scores.astype(np.float32))
            return box, best, classes
        if len(outs) == 3 and all(r.ndim == 1 and r.shape[0] == box.shape[0] for r in rest):
            a, b = rest  # scores hold fractions, class ids whole numbers
            whole = [bool(np.all(np.mod(r, 1) == 0)) for r in rest]
            scores, classes = (b, a) if whole[0] and not whole[1] else (a, b)
            return box, scores, classes.astype(np.int64)
        return None

    def candidates(self, outputs: list[np.ndarray], input_size: tuple[int, int]) -> Detections:
        parts = self._parts(outputs)
        if parts is None:
            raise self.shape_error("(1, K, 6) rows, or boxes (1, K, 4) with scores (1, K[, C]) [and classes]",
                                   outputs)
        box, scores, classes = parts
        box = box.astype(np.float32)
        if self.box_format == "yxyx":
            box = box[:, [1, 0, 3, 2]]
        elif self.box_format == "xywh":
            box = np.concatenate([box[:, :2], box[:, :2] + box[:, 2:]], axis=1)
        elif self.box_format == "cxcywh":
            box = np.concatenate([box[:, :2] - box[:, 2:] / 2, box[:, :2] + box[:, 2:] / 2], axis=1)
        normalized = self.normalized
        if normalized is None:
            normalized = bool(box.size) and float(np.abs(box).max()) <= 1.5
        if normalized:
            h, w = input_size
            box = box * np.array([w, h, w, h], np.float32)
        return Detections(box, np.asarray(scores, np.float32).reshape(-1), np.asarray(classes, np.int64).reshape(-1))

    @classmethod
    def fits(cls, facts: OutputFacts) -> bool:
        shapes = facts.shapes
        if len(shapes) == 1:
            return len(shapes[0]) == 3 and shapes[0][0] == 1 and shapes[0][2] == 6
        fours = [s for s in shapes if len(s) == 3 and s[0] == 1 and s[2] == 4]
        return len(shapes) == 3 and len(fours) == 1 and all(len(s) == 2 for s in shapes if s not in fours)
