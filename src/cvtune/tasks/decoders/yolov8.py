"""YOLOv8 / YOLO11 / YOLOv5u heads (Ultralytics): one (1, 4 + C, A) output of cx, cy, w, h in input pixels then C
class scores (sigmoid already applied), no objectness; anchor-free. (1, A, 4 + C) is read too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import Decoder, Detections, OutputFacts, best_class, xywh_center_to_xyxy


@dataclass(frozen=True)
class Yolov8Decoder(Decoder):
    name: ClassVar[str] = "yolov8"
    summary: ClassVar[str] = "YOLOv8/11 (Ultralytics): (1, 4+C, N) cx cy w h + class scores, no objectness"

    def candidates(self, outputs: list[np.ndarray], input_size: tuple[int, int]) -> Detections:
        raw = outputs[0] if len(outputs) == 1 else None
        if raw is None or raw.ndim != 3 or raw.shape[0] != 1 or min(raw.shape[1:]) < 5:
            raise self.shape_error("one (1, 4 + classes, anchors) output", outputs)
        pred = raw[0] if raw.shape[1] < raw.shape[2] else raw[0].T  # -> (4 + C, A): fewer channels than anchors
        classes, scores = best_class(pred[4:].T)
        return Detections(xywh_center_to_xyxy(*pred[:4]), scores, classes)

    @classmethod
    def fits(cls, facts: OutputFacts) -> bool:
        if len(facts.shapes) != 1 or len(facts.shapes[0]) != 3:
            return False
        _, rows, cols = facts.shapes[0]
        if facts.ultralytics_task == "detect":
            return True
        if facts.num_classes is not None:
            return 4 + facts.num_classes in (rows, cols) and 5 + facts.num_classes not in (rows, cols)
        return 5 <= rows < cols  # channels first: only Ultralytics heads are laid out this way
