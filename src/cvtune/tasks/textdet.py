"""Text detection with a DB (Differentiable Binarization) model such as PP-OCRv4 det, scored with ICDAR-2015 hmean.

Pre- and post-processing follow rapidocr / PaddleOCR's DBPostProcess so numbers are comparable with theirs:
resize (short side to 736 by default), multiples of 32, (x/255 - 0.5)/0.5; then threshold the probability map,
contours, min-area rectangles, mean-probability box score, unclip (pyclipper), rectangle again, rescale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from ..data.base import Dataset, Sample, TextBox
from ..errors import DatasetError, UsageError
from ..zoo import ZOO, Preprocessing
from .base import Metrics, Task
from .common import normalize, output_error, parse_size
from .geometry import min_area_box, order_points_clockwise
from .metrics import hmean_ci, match_text_boxes, prf

LIMIT_TYPES = ("min", "max")
SCORE_MODES = ("fast", "slow")


@dataclass(frozen=True)
class DBParams:
    """DB post-processing knobs (rapidocr defaults)."""

    thresh: float = 0.3  # binarization threshold on the probability map
    box_thresh: float = 0.5  # drop boxes whose mean probability is lower
    unclip_ratio: float = 1.6  # how far shrunk text kernels are expanded back
    use_dilation: bool = True  # 2x2 dilation of the binary map
    score_mode: str = "fast"  # fast: mean inside the min-area rectangle; slow: inside the contour
    max_candidates: int = 1000
    min_size: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.thresh < 1 or not 0 <= self.box_thresh <= 1:
            raise UsageError(f"DB thresholds must lie in (0, 1) (got thresh={self.thresh}, "
                             f"box_thresh={self.box_thresh})")
        if self.unclip_ratio <= 0:
            raise UsageError(f"unclip_ratio must be > 0 (got {self.unclip_ratio})")
        if self.score_mode not in SCORE_MODES:
            raise UsageError(f"unknown score_mode '{self.score_mode}'; choose one of: {', '.join(SCORE_MODES)}")


def _box_score(prob: np.ndarray, polygon: np.ndarray) -> float:
    """Mean probability inside a polygon, computed on its bounding window only."""
    h, w = prob.shape
    poly = np.asarray(polygon, dtype=np.float32).reshape(-1, 2)
    xmin = int(np.clip(np.floor(poly[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(poly[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(poly[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(poly[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = (poly - np.array([xmin, ymin], dtype=np.float32)).astype(np.int32)
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2), 1)
    return float(cv2.mean(prob[ymin:ymax + 1, xmin:xmax + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    """Expand a polygon by distance = area * ratio / perimeter (the inverse of DB's training-time shrink)."""
    import pyclipper
    from shapely.geometry import Polygon

    poly = Polygon(box)
    if poly.length == 0:
        return np.zeros((0, 2), dtype=np.float32)
    distance = poly.area * ratio / poly.length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath([tuple(p) for p in np.asarray(box).tolist()], pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    expanded = offset.Execute(distance)
    if len(expanded) != 1:  # nothing, or split in several parts: rapidocr would fail on reshape; we drop it
        return np.zeros((0, 2), dtype=np.float32)
    return np.asarray(expanded[0], dtype=np.float32)


def db_boxes(prob: np.ndarray, image_size: tuple[int, int], params: DBParams | None = None
             ) -> tuple[list[np.ndarray], list[float]]:
    """A (H, W) text probability map -> (4-point boxes in original-image pixels, scores)."""
    params = params or DBParams()
    src_h, src_w = image_size
    height, width = prob.shape
    mask = (prob > params.thresh).astype(np.uint8)
    if params.use_dilation:
        mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes, scores = [], []
    for contour in contours[: params.max_candidates]:
        points, short_side = min_area_box(contour)
        if short_side < params.min_size:
            continue
        polygon = points if params.score_mode == "fast" else contour.reshape(-1, 2)
        score = _box_score(prob, polygon)
        if score < params.box_thresh:
            continue
        expanded = _unclip(points, params.unclip_ratio)
        if len(expanded) < 3:
            continue
        box, short_side = min_area_box(expanded)
        if short_side < params.min_size + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / width * src_w), 0, src_w)
        box[:, 1] = np.clip(np.round(box[:, 1] / height * src_h), 0, src_h)
        boxes.append(box)
        scores.append(score)
    return _filter_boxes(boxes, scores, src_h, src_w)


def _filter_boxes(boxes: list[np.ndarray], scores: list[float], height: int, width: int
                  ) -> tuple[list[np.ndarray], list[float]]:
    """Order points clockwise, clip into the image, drop boxes 3 px or thinner (rapidocr's filter_tag_det_res)."""
    kept, kept_scores = [], []
    for box, score in zip(boxes, scores, strict=True):
        box = order_points_clockwise(box)
        box[:, 0] = np.clip(box[:, 0], 0, width - 1).astype(np.int32)
        box[:, 1] = np.clip(box[:, 1], 0, height - 1).astype(np.int32)
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        kept.append(box)
        kept_scores.append(score)
    return kept, kept_scores


def det_resize_shape(height: int, width: int, *, limit_side_len: int = 736, limit_type: str = "min",
                     multiple: int = 32, max_side_len: int | None = 2000) -> tuple[int, int]:
    """rapidocr's DetPreProcess size: scale so the short ('min') or long ('max') side reaches limit_side_len
    (only ever upward for 'min', downward for 'max'), round to `multiple`. `max_side_len` then caps the long side
    so a very wide strip does not become a 736 x 20000 input."""
    if limit_type == "max":
        ratio = limit_side_len / max(height, width) if max(height, width) > limit_side_len else 1.0
    else:
        ratio = limit_side_len / min(height, width) if min(height, width) < limit_side_len else 1.0
    if max_side_len and max(height, width) * ratio > max_side_len:
        ratio = max_side_len / max(height, width)
    new_h = max(int(round(int(height * ratio) / multiple) * multiple), multiple)
    new_w = max(int(round(int(width * ratio) / multiple) * multiple), multiple)
    return new_h, new_w


def text_boxes(target: Any, sample: Sample, task: str) -> tuple[TextBox, ...]:
    """The ICDAR label of a sample, or a DatasetError saying this task needs one."""
    if target is None or not all(isinstance(t, TextBox) for t in target):
        raise DatasetError(f"task '{task}' needs ICDAR text-box labels, but {sample.path} has none; "
                           f"load the data as kind 'icdar' (img_N.jpg + gt_img_N.txt)")
    return tuple(target)


class TextDetTask(Task):
    """PP-OCR DB text detection. Prediction: {'boxes': [[[x, y] x 4], ...], 'scores': [...]}. Metric: hmean."""

    name: ClassVar[str] = "textdet"
    metric: ClassVar[str] = "hmean"
    dataset_kinds: ClassVar[tuple[str, ...]] = ("icdar",)

    def __init__(self, preprocessing: Preprocessing | None = None, *, input_size: tuple[int, int] | str | None = None,
                 limit_side_len: int = 736, limit_type: str = "min", max_side_len: int | None = 2000,
                 thresh: float = 0.3, box_thresh: float = 0.5, unclip_ratio: float = 1.6, use_dilation: bool = True,
                 score_mode: str = "fast", iou_thresh: float = 0.5, **options: Any) -> None:
        super().__init__(preprocessing or ZOO["ppocr-det"].preprocessing, input_size=parse_size(input_size),
                         **options)
        if limit_type not in LIMIT_TYPES:
            raise UsageError(f"unknown limit_type '{limit_type}'; choose one of: {', '.join(LIMIT_TYPES)}")
        if limit_side_len < 1:
            raise UsageError(f"limit_side_len must be >= 1 (got {limit_side_len})")
        multiple = max(self.preprocessing.size_multiple, 1)
        if self.input_size and any(s % multiple for s in self.input_size):
            raise UsageError(f"textdet input_size {self.input_size[0]}x{self.input_size[1]} must be a multiple of "
                             f"{multiple} on both sides (e.g. 640x640)")
        self.limit_side_len, self.limit_type, self.max_side_len = limit_side_len, limit_type, max_side_len
        self.params = DBParams(thresh=thresh, box_thresh=box_thresh, unclip_ratio=unclip_ratio,
                               use_dilation=use_dilation, score_mode=score_mode)
        self.iou_thresh = iou_thresh

    def input_shape(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the network sees for an image of this size."""
        if self.input_size:
            return self.input_size
        return det_resize_shape(height, width, limit_side_len=self.limit_side_len, limit_type=self.limit_type,
                                multiple=max(self.preprocessing.size_multiple, 1), max_side_len=self.max_side_len)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        new_h, new_w = self.input_shape(*image.shape[:2])
        resized = cv2.resize(image, (new_w, new_h))
        return normalize(resized, self.preprocessing), image.shape[:2]

    def probability_map(self, outputs: list[np.ndarray]) -> np.ndarray:
        """The (H, W) map from the model's (1, 1, H, W) output; anything else is not a DB detector."""
        prob = outputs[0] if outputs else np.zeros(0)
        if prob.ndim == 4 and prob.shape[:2] == (1, 1):
            return prob[0, 0].astype(np.float32, copy=False)
        raise output_error(self.name, "a (1, 1, H, W) text probability map", outputs,
                           "use a DB text detector such as `cvtune zoo path ppocr-det`")

    def postprocess(self, outputs: list[np.ndarray], meta: tuple[int, int]) -> dict[str, list]:
        boxes, scores = db_boxes(self.probability_map(outputs), meta, self.params)
        return {"boxes": [b.tolist() for b in boxes], "scores": [float(s) for s in scores]}

    def score(self, predictions: list[Any], samples: list[Sample], dataset: Dataset) -> Metrics:
        counts = []
        for prediction, sample in zip(predictions, samples, strict=True):
            gt = text_boxes(sample.target, sample, self.name)
            match = match_text_boxes([g.points for g in gt], [g.ignore for g in gt], prediction["boxes"],
                                     iou_thresh=self.iou_thresh)
            counts.append((match.tp, match.n_pred, match.n_gt))
        tp, n_pred, n_gt = np.array(counts, dtype=np.float64).reshape(-1, 3).T
        precision, recall, hmean = prf(np.sum(tp), np.sum(n_pred), np.sum(n_gt))
        low, high = hmean_ci(tp, n_pred, n_gt)
        return Metrics(self.name, self.metric, float(hmean), low, high, n_images=len(samples),
                       details={"precision": float(precision), "recall": float(recall),
                                "true_positives": float(np.sum(tp)), "predictions": float(np.sum(n_pred)),
                                "gt_boxes": float(np.sum(n_gt))},
                       per_image=[[float(v) for v in row] for row in counts], statistic="hmean")
