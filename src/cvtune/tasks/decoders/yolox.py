"""YOLOX heads: one (1, N, 5 + C) output over the stride-8/16/32 grid (N = one box per cell), objectness and class
scores already through a sigmoid. The official ONNX export leaves the boxes raw (decode_in_inference=False):
x, y are offsets from the cell in stride units and w, h are log sizes, decoded here as
cx = (x + gx) * s, w = exp(w) * s. Exports that decode in the graph give input pixels; `decoded` says which
(None: decided per output: raw x offsets have a median within 4 cells, decoded centres lie further out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...errors import UsageError
from .base import Decoder, Detections, OutputFacts, best_class, grid_count, objectness_head, xywh_center_to_xyxy


@dataclass(frozen=True)
class YoloxDecoder(Decoder):
    name: ClassVar[str] = "yolox"
    summary: ClassVar[str] = "YOLOX: (1, N, 5+C) raw grid offsets (strides 8/16/32, one per cell), objectness, classes"
    strides: tuple[int, ...] = (8, 16, 32)
    decoded: bool | None = None

    def __post_init__(self) -> None:
        strides = tuple(int(s) for s in self.strides)
        if not strides or min(strides) < 1:
            raise UsageError(f"yolox strides must be positive integers, e.g. [8, 16, 32] (got {self.strides})")
        object.__setattr__(self, "strides", strides)

    def grid(self, input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) cell coordinates gx, gy and (N,) strides, in the export's order (stride by stride, row-major)."""
        h, w = input_size
        cells, strides = [], []
        for s in self.strides:
            gy, gx = np.meshgrid(np.arange(-(-h // s)), np.arange(-(-w // s)), indexing="ij")
            cells.append(np.stack([gx.ravel(), gy.ravel()], axis=1))
            strides.append(np.full(gx.size, s))
        return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)

    def candidates(self, outputs: list[np.ndarray], input_size: tuple[int, int]) -> Detections:
        raw = outputs[0] if len(outputs) == 1 else None
        if raw is None or raw.ndim != 3 or raw.shape[0] != 1 or raw.shape[2] < 6:
            raise self.shape_error("one (1, cells, 5 + classes) output", outputs)
        pred = raw[0].astype(np.float32, copy=False)
        cells, strides = self.grid(input_size)
        decoded = self.decoded
        if decoded is None:
            decoded = bool(pred.shape[0]) and float(np.median(np.abs(pred[:, 0]))) > 4.0
        if decoded:
            xy, wh = pred[:, :2], pred[:, 2:4]
        else:
            if pred.shape[0] != cells.shape[0]:
                raise self.shape_error(f"{cells.shape[0]} grid cells for a {input_size[0]}x{input_size[1]} input "
                                       f"with strides {list(self.strides)}", outputs)
            xy = (pred[:, :2] + cells) * strides[:, None]
            wh = np.exp(np.clip(pred[:, 2:4], -20.0, 20.0)) * strides[:, None]
        classes, scores = best_class(pred[:, 5:] * pred[:, 4:5])
        return Detections(xywh_center_to_xyxy(xy[:, 0], xy[:, 1], wh[:, 0], wh[:, 1]), scores, classes)

    @classmethod
    def fits(cls, facts: OutputFacts) -> bool:
        head = objectness_head(facts)
        return head is not None and head[0] == grid_count(facts.input_size, cls.strides)
