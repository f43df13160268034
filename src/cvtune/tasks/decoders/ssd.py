"""SSD-style anchor decoders: a boxes output (1, N, 4 [+ keypoints]) of offsets from N anchors and a scores output
(1, N, C) of logits. Anchors come from MediaPipe's SsdAnchorsCalculator (reimplemented: `ssd_anchors`), the
decoding follows its TensorsToDetectionsCalculator. Two presets:

- `ssd`: TensorFlow Object Detection API SSD (MobileNet SSD): anchors over strides 16..512 with aspect ratios
  1, 2, 1/2, 3, 1/3, offsets (ty, tx, th, tw) scaled by 10, 10, 5, 5 with exponential sizes, class 0 background.
- `blazeface`: MediaPipe BlazeFace / palm / pose detectors: fixed-size anchors, offsets (x, y, w, h [, keypoints])
  in input pixels. Unless `strides` is given, the anchor layout is the one of MediaPipe's published graphs whose
  anchor count matches the output (strides 8,16,16,16; 4; or 8,16,32,32,32).
Outputs are told apart by shape (the boxes have 4 + 2k values per anchor), not by their order, which runtimes
do not keep.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from ...errors import ModelError, UsageError
from .base import Decoder, Detections, OutputFacts, best_class

__all__ = ["SsdAnchorOptions", "ssd_anchors", "SsdDecoder", "BlazefaceDecoder", "BLAZE_LAYOUTS"]


@dataclass(frozen=True)
class SsdAnchorOptions:
    """MediaPipe's SsdAnchorsCalculatorOptions (the fields cvtune uses), input size in pixels."""

    input_size: tuple[int, int]  # (height, width)
    strides: tuple[int, ...]
    num_layers: int | None = None  # None: one per stride
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0,)
    anchor_offset: tuple[float, float] = (0.5, 0.5)  # (x, y) inside a cell
    reduce_boxes_in_lowest_layer: bool = False
    interpolated_scale_aspect_ratio: float = 1.0
    fixed_anchor_size: bool = False


def _scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    if count == 1:
        return (min_scale + max_scale) * 0.5
    return min_scale + (max_scale - min_scale) * index / (count - 1.0)


@functools.lru_cache(maxsize=16)
def ssd_anchors(options: SsdAnchorOptions) -> np.ndarray:
    """(N, 4) anchors x_center, y_center, w, h, normalized to [0, 1], in the order the model's outputs use
    (cached per options, read-only)."""
    strides = options.strides
    num_layers = options.num_layers or len(strides)
    anchors: list[tuple[float, float, float, float]] = []
    layer = 0
    while layer < num_layers:
        ratios, scales = [], []
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            scale = _scale(options.min_scale, options.max_scale, last, len(strides))
            if last == 0 and options.reduce_boxes_in_lowest_layer:
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, scale, scale]
            else:
                ratios += list(options.aspect_ratios)
                scales += [scale] * len(options.aspect_ratios)
                if options.interpolated_scale_aspect_ratio > 0:
                    nxt = 1.0 if last == len(strides) - 1 else _scale(options.min_scale, options.max_scale,
                                                                     last + 1, len(strides))
                    scales.append(math.sqrt(scale * nxt))
                    ratios.append(options.interpolated_scale_aspect_ratio)
            last += 1
        sizes = [(s * math.sqrt(r), s / math.sqrt(r)) for s, r in zip(scales, ratios, strict=True)]  # (w, h)
        fm_h = math.ceil(options.input_size[0] / strides[layer])
        fm_w = math.ceil(options.input_size[1] / strides[layer])
        for y in range(fm_h):
            for x in range(fm_w):
                cx = (x + options.anchor_offset[0]) / fm_w
                cy = (y + options.anchor_offset[1]) / fm_h
                for w, h in sizes:
                    anchors.append((cx, cy, 1.0, 1.0) if options.fixed_anchor_size else (cx, cy, w, h))
        layer = last
    out = np.asarray(anchors, dtype=np.float32).reshape(-1, 4)
    out.flags.writeable = False
    return out


def _split(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """(boxes (N, K), scores (N, C)) from two outputs with the same N, told apart by shape; None if they do not fit."""
    if len(outputs) != 2:
        return None
    a, b = (o[0] if o.ndim == 3 and o.shape[0] == 1 else o for o in outputs)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        return None
    ka, kb = a.shape[1], b.shape[1]
    if (ka == 4) != (kb == 4):
        return (a, b) if ka == 4 else (b, a)
    if (ka == 1) != (kb == 1):
        return (b, a) if ka == 1 else (a, b)
    return None


def _shapes_split(shapes: tuple[tuple[int, ...], ...]) -> tuple[int, int, int] | None:
    """(anchors, box values, classes) from output shapes, or None."""
    fake = [np.empty(s, np.uint8) for s in shapes] if all(len(s) in (2, 3) for s in shapes) else []
    parts = _split(fake)
    if parts is None:
        return None
    return parts[0].shape[0], parts[0].shape[1], parts[1].shape[1]


@dataclass(frozen=True)
class SsdDecoder(Decoder):
    """Anchor options (see SsdAnchorOptions) and TensorsToDetections options as fields; scales None = input size."""

    name: ClassVar[str] = "ssd"
    summary: ClassVar[str] = ("SSD (TF Object Detection API): boxes (1, N, 4) ty tx th tw + scores (1, N, C), "
                              "anchors over strides 16..512")
    strides: tuple[int, ...] | None = (16, 32, 64, 128, 256, 512)
    num_layers: int | None = None
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333)
    anchor_offset: tuple[float, float] = (0.5, 0.5)
    reduce_boxes_in_lowest_layer: bool = True
    interpolated_scale_aspect_ratio: float = 1.0
    fixed_anchor_size: bool = False
    x_scale: float | None = 10.0
    y_scale: float | None = 10.0
    w_scale: float | None = 5.0
    h_scale: float | None = 5.0
    reverse_output_order: bool = False  # False: y, x, h, w (TF); True: x, y, w, h (MediaPipe models)
    apply_exponential_on_box_size: bool = True
    sigmoid_score: bool = True
    score_clipping_thresh: float | None = None
    ignore_classes: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        for name in ("strides", "aspect_ratios", "anchor_offset", "ignore_classes"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if self.strides is not None and (not self.strides or min(self.strides) < 1):
            raise UsageError(f"decoder '{self.name}' strides must be positive integers, e.g. [8, 16, 16, 16] "
                             f"(got {self.strides})")

    def anchor_options(self, input_size: tuple[int, int], count: int) -> SsdAnchorOptions:
        if self.strides is None:
            raise UsageError(f"decoder '{self.name}' needs anchor strides, e.g. the task option strides=[8,16,16,16]")
        return SsdAnchorOptions(tuple(input_size), tuple(self.strides), self.num_layers, self.min_scale,
                                self.max_scale, tuple(self.aspect_ratios), tuple(self.anchor_offset),
                                self.reduce_boxes_in_lowest_layer, self.interpolated_scale_aspect_ratio,
                                self.fixed_anchor_size)

    def candidates(self, outputs: list[np.ndarray], input_size: tuple[int, int]) -> Detections:
        parts = _split([np.asarray(o) for o in outputs])
        if parts is None:
            raise self.shape_error("two outputs: boxes (1, N, 4 [+ keypoints]) and scores (1, N, classes)", outputs)
        raw_boxes, raw_scores = (p.astype(np.float32, copy=False) for p in parts)
        anchors = ssd_anchors(self.anchor_options(input_size, raw_boxes.shape[0]))
        if anchors.shape[0] != raw_boxes.shape[0]:
            raise ModelError(f"decoder '{self.name}' generates {anchors.shape[0]} anchors for a "
                             f"{input_size[0]}x{input_size[1]} input with strides {list(self.strides or [])}, but "
                             f"the model returns {raw_boxes.shape[0]} boxes; give the model's anchor options "
                             f"(task options strides=[...], num_layers=..., aspect_ratios=[...])")
        h, w = input_size
        sx, sy = self.x_scale or w, self.y_scale or h
        sw, sh = self.w_scale or w, self.h_scale or h
        if self.reverse_output_order:
            x, y, bw, bh = raw_boxes[:, 0], raw_boxes[:, 1], raw_boxes[:, 2], raw_boxes[:, 3]
        else:
            y, x, bh, bw = raw_boxes[:, 0], raw_boxes[:, 1], raw_boxes[:, 2], raw_boxes[:, 3]
        ax, ay, aw, ah = anchors.T
        cx, cy = x / sx * aw + ax, y / sy * ah + ay
        if self.apply_exponential_on_box_size:
            bw, bh = np.exp(np.clip(bw / sw, -20, 20)) * aw, np.exp(np.clip(bh / sh, -20, 20)) * ah
        else:
            bw, bh = bw / sw * aw, bh / sh * ah
        boxes = np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], axis=1)
        scores = raw_scores
        if self.score_clipping_thresh:
            scores = np.clip(scores, -self.score_clipping_thresh, self.score_clipping_thresh)
        if self.sigmoid_score:
            scores = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
        scores = np.array(scores, dtype=np.float32)
        ignored = [c for c in self.ignore_classes if c < scores.shape[1]]
        if ignored and len(ignored) < scores.shape[1]:
            scores[:, ignored] = -np.inf
        classes, best = best_class(scores)
        return Detections(boxes.astype(np.float32), best, classes)

    @classmethod
    def fits(cls, facts: OutputFacts) -> bool:
        split = _shapes_split(facts.shapes)
        if split is None or split[1] != 4:
            return False
        return ssd_anchors(cls().anchor_options(facts.input_size, split[0])).shape[0] == split[0]


# MediaPipe's published anchor layouts for its BlazeFace-family detectors (face short/full range, palm, pose).
BLAZE_LAYOUTS: tuple[dict, ...] = (
    {"strides": (8, 16, 16, 16)},  # face_detection_short_range (128), palm_detection (192)
    {"strides": (4,), "interpolated_scale_aspect_ratio": 0.0},  # face_detection_full_range (192)
    {"strides": (8, 16, 32, 32, 32)},  # pose_detection (224)
)


@dataclass(frozen=True)
class BlazefaceDecoder(SsdDecoder):
    name: ClassVar[str] = "blazeface"
    summary: ClassVar[str] = ("MediaPipe BlazeFace/palm/pose: boxes (1, N, 4+2k) x y w h [keypoints] in pixels + "
                              "scores (1, N, 1), fixed-size anchors")
    strides: tuple[int, ...] | None = None  # None: the BLAZE_LAYOUTS entry whose anchor count matches
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    aspect_ratios: tuple[float, ...] = (1.0,)
    reduce_boxes_in_lowest_layer: bool = False
    fixed_anchor_size: bool = True
    x_scale: float | None = None
    y_scale: float | None = None
    w_scale: float | None = None
    h_scale: float | None = None
    reverse_output_order: bool = True
    apply_exponential_on_box_size: bool = False
    score_clipping_thresh: float | None = 100.0
    ignore_classes: tuple[int, ...] = ()

    def anchor_options(self, input_size: tuple[int, int], count: int) -> SsdAnchorOptions:
        if self.strides is not None:
            return super().anchor_options(input_size, count)
        for layout in BLAZE_LAYOUTS:
            options = replace(self, **layout).anchor_options(input_size, count)
            if ssd_anchors(options).shape[0] == count:
                return options
        layouts = ", ".join(str(list(x["strides"])) for x in BLAZE_LAYOUTS)
        raise ModelError(f"none of MediaPipe's anchor layouts (strides {layouts}) gives {count} anchors for a "
                         f"{input_size[0]}x{input_size[1]} input; give the "
                         f"model's anchor options (task options strides=[...], num_layers=...)")

    @classmethod
    def fits(cls, facts: OutputFacts) -> bool:
        split = _shapes_split(facts.shapes)
        if split is None or split[1] < 4 or split[1] % 2 or split[2] != 1:
            return False
        try:
            cls().anchor_options(facts.input_size, split[0])
        except ModelError:
            return False
        return True
