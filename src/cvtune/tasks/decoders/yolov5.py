"""YOLOv5 / YOLOv7 heads (anchor-based, decoded in the graph): one (1, N, 5 + C) output of cx, cy, w, h in input
pixels, objectness, C class probabilities; the score is objectness x class probability. N = 3 anchors per cell of
the stride-8/16/32 grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import Decoder, Detections, OutputFacts, best_class, grid_count, objectness_head, xywh_center_to_xyxy

STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class Yolov5Decoder(Decoder):
    name: ClassVar[str] = "yolov5"
    summary: ClassVar[str] = "YOLOv5/v7: (1, N, 5+C) cx cy w h, objectness, class probabilities (N = 3 per cell)"

    def candidates(self, outputs: list[np.ndarray], input_size: tuple[int, int]) -> Detections:
        raw = outputs[0] if len(outputs) == 1 else None
        if raw is None or raw.ndim != 3 or raw.shape[0] != 1 or raw.shape[2] < 6:
            raise self.shape_error("one (1, boxes, 5 + classes) output", outputs)
        pred = raw[0].astype(np.float32, copy=False)
        classes, scores = best_class(pred[:, 5:] * pred[:, 4:5])
        return Detections(xywh_center_to_xyxy(*pred[:, :4].T), scores, classes)

    @classmethod
    def fits(cls, facts: OutputFacts) -> bool:
        head = objectness_head(facts)
        return head is not None and head[0] == 3 * grid_count(facts.input_size, STRIDES)
