"""Metric building blocks shared by the tasks: seeded bootstrap CIs, ICDAR-2015 box matching, text distances, COCO mAP.

Everything here is plain numpy/shapely/pycocotools on plain values, so each piece is testable against hand-computed
cases without a model.
"""

from __future__ import annotations

import contextlib
import io
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "bootstrap_ci",
    "mean_ci",
    "ratio_ci",
    "hmean_ci",
    "prf",
    "BoxMatch",
    "match_text_boxes",
    "to_polygon",
    "polygon_iou",
    "normalize_text",
    "char_distance",
    "coco_map",
    "STATISTICS",
    "statistic_value",
    "statistic_ci",
    "miou_from_sums",
    "f1_split",
    "match_detections",
]

BOOTSTRAP_RESAMPLES = 1000
_CHUNK = 100  # resamples drawn at once: bounds memory at _CHUNK x n_images integers


# ---- bootstrap -------------------------------------------------------------------------------------------------
def bootstrap_ci(values: np.ndarray, statistic: Callable[[np.ndarray, int], np.ndarray], *,
                 n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                 confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI from per-image resampling.

    `values` is (n_images, k) per-image sums (e.g. tp, n_pred, n_gt). Each resample draws n images with replacement
    as a multinomial count vector, so a resample's column sums are one matrix product; `statistic(sums (B, k), n)`
    turns them into B metric values. Seeded: the same inputs give the same interval. (None, None) for no images.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    n = values.shape[0]
    if n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, n_resamples, _CHUNK):
        size = min(_CHUNK, n_resamples - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=size)  # (size, n) resample multiplicities
        stats.append(np.asarray(statistic(weights @ values, n), dtype=np.float64))
    stats_all = np.concatenate(stats)
    stats_all = stats_all[np.isfinite(stats_all)]
    if stats_all.size == 0:
        return None, None
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats_all, [alpha, 1.0 - alpha])
    return float(low), float(high)


def mean_ci(values: Sequence[float], **kwargs) -> tuple[float | None, float | None]:
    """CI of the mean of per-image values (cosine similarity, top-1 correctness, ...)."""
    return bootstrap_ci(np.asarray(values, dtype=np.float64), lambda sums, n: sums[:, 0] / n, **kwargs)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def ratio_ci(numerators: Sequence[float], denominators: Sequence[float],
             **kwargs) -> tuple[float | None, float | None]:
    """CI of sum(numerators) / sum(denominators), e.g. correct lines / GT lines resampled per image."""
    values = np.stack([np.asarray(numerators, float), np.asarray(denominators, float)], axis=1)
    return bootstrap_ci(values, lambda sums, n: _safe_div(sums[:, 0], sums[:, 1]), **kwargs)


def prf(tp: np.ndarray | float, n_pred: np.ndarray | float,
        n_gt: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, hmean from summed counts (vectorised). Empty denominators give 0, as in ICDAR scripts,
    except that no GT and no predictions is a perfect 1.0 (nothing to find, nothing claimed)."""
    tp, n_pred, n_gt = (np.asarray(v, dtype=np.float64) for v in (tp, n_pred, n_gt))
    nothing = (n_pred == 0) & (n_gt == 0)
    precision = np.where(nothing, 1.0, _safe_div(tp, n_pred))
    recall = np.where(nothing, 1.0, _safe_div(tp, n_gt))
    hmean = _safe_div(2 * precision * recall, precision + recall)
    return precision, recall, hmean


def f1_split(tp_pred: np.ndarray | float, n_pred: np.ndarray | float, tp_gt: np.ndarray | float,
             n_gt: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 when predictions and GT were matched separately (tp_pred of n_pred predictions found
    a GT, tp_gt of n_gt GT were found): same conventions as prf."""
    tp_pred, n_pred, tp_gt, n_gt = (np.asarray(v, dtype=np.float64) for v in (tp_pred, n_pred, tp_gt, n_gt))
    nothing = (n_pred == 0) & (n_gt == 0)
    precision = np.where(nothing, 1.0, _safe_div(tp_pred, n_pred))
    recall = np.where(nothing, 1.0, _safe_div(tp_gt, n_gt))
    return precision, recall, _safe_div(2 * precision * recall, precision + recall)


def hmean_ci(tp: Sequence[float], n_pred: Sequence[float], n_gt: Sequence[float],
             **kwargs) -> tuple[float | None, float | None]:
    """CI of the detection hmean, resampling per-image (tp, n_pred, n_gt) counts."""
    values = np.stack([np.asarray(v, float) for v in (tp, n_pred, n_gt)], axis=1)
    return bootstrap_ci(values, lambda s, n: prf(s[:, 0], s[:, 1], s[:, 2])[2], **kwargs)


def miou_from_sums(sums: np.ndarray, n: int = 0) -> np.ndarray:
    """(B, 2C) summed per-class (intersection..., union...) pixel counts -> (B,) mean IoU over the classes whose
    union is not empty (a class absent from both sides is not counted; nothing at all counts as a perfect 1.0)."""
    sums = np.atleast_2d(np.asarray(sums, dtype=np.float64))
    c = sums.shape[1] // 2
    inter, union = sums[:, :c], sums[:, c:]
    present = union > 0
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=present)
    count = present.sum(axis=1)
    return np.where(count > 0, iou.sum(axis=1) / np.maximum(count, 1), 1.0)


# ---- per-image statistics: the contract of Metrics.per_image / Metrics.statistic (see tasks/base.py) -----------
Statistic = Callable[[np.ndarray, int], np.ndarray]
STATISTICS: dict[str, Statistic] = {
    "mean": lambda s, n: s[:, 0] / max(n, 1),  # rows (x,): mean of a per-image value
    "ratio": lambda s, n: _safe_div(s[:, 0], s[:, 1]),  # rows (numerator, denominator)
    "hmean": lambda s, n: prf(s[:, 0], s[:, 1], s[:, 2])[2],  # rows (tp, n_pred, n_gt): F1 / ICDAR hmean
    "f1_split": lambda s, n: f1_split(s[:, 0], s[:, 1], s[:, 2], s[:, 3])[2],  # rows (tp_pred, n_pred, tp_gt, n_gt)
    "miou": miou_from_sums,  # rows (intersection per class..., union per class...)
}


def statistic_value(name: str, rows: Sequence[Sequence[float]]) -> float:
    """The metric that per-image `rows` give under statistic `name` (what Metrics.value holds)."""
    values = np.asarray(rows, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        return 0.0
    return float(STATISTICS[name](values.sum(axis=0, keepdims=True), values.shape[0])[0])


def statistic_ci(name: str, rows: Sequence[Sequence[float]], **kwargs) -> tuple[float | None, float | None]:
    """Bootstrap CI of statistic `name` over per-image `rows` (resampling images)."""
    values = np.asarray(rows, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        return None, None
    return bootstrap_ci(values, STATISTICS[name], **kwargs)


def match_detections(gt_boxes: np.ndarray, gt_classes: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                     classes: np.ndarray, *, iou_thresh: float = 0.5) -> int:
    """True positives of one image: detections (best score first) matched one-to-one to same-class GT boxes with
    IoU >= iou_thresh (greedy, as COCO at one threshold). Boxes are (n, 4) xyxy."""
    gt_boxes, boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4), np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(gt_boxes) or not len(boxes):
        return 0
    lt = np.maximum(boxes[:, None, :2], gt_boxes[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], gt_boxes[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda b: np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(boxes)[:, None] + area(gt_boxes)[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    iou[np.asarray(classes)[:, None] != np.asarray(gt_classes)[None, :]] = -1.0
    used = np.zeros(len(gt_boxes), bool)
    tp = 0
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        candidates = np.where(used, -1.0, iou[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= iou_thresh:
            used[j] = True
            tp += 1
    return tp


# ---- ICDAR-2015 box matching --------------------------------------------------------------------------------
def to_polygon(points):
    """A valid shapely Polygon from (x, y) points (self-intersecting input is repaired with buffer(0))."""
    from shapely.geometry import Polygon

    poly = Polygon([(float(x), float(y)) for x, y in points])
    if not poly.is_valid:
        poly = poly.buffer(0)
    return poly


def polygon_iou(a, b) -> float:
    """Intersection over union of two shapely polygons (0 when either is empty)."""
    inter = a.intersection(b).area
    union = a.area + b.area - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass(frozen=True)
class BoxMatch:
    """One image's ICDAR-2015 result: true positives, counted (not don't-care) predictions and GT, and the pairs."""

    tp: int
    n_pred: int
    n_gt: int
    pairs: tuple[tuple[int, int], ...]  # (gt index, prediction index) of each match
    pred_ignored: tuple[int, ...] = ()  # predictions discarded because they sit on a don't-care region


def match_text_boxes(gt: Sequence[Sequence[tuple[float, float]]], gt_ignore: Sequence[bool],
                     pred: Sequence[Sequence[tuple[float, float]]], *, iou_thresh: float = 0.5,
                     dont_care_area: float = 0.5) -> BoxMatch:
    """Match predicted polygons to GT polygons with the ICDAR-2015 protocol.

    A prediction with more than `dont_care_area` of its own area inside a don't-care GT region is dropped (neither
    true nor false positive). Then GT and predictions are matched one-to-one, in order (GT first, as the official
    script does), whenever IoU >= `iou_thresh` and both are still free and counted.
    """
    gt_polys = [to_polygon(p) for p in gt]
    pred_polys = [to_polygon(p) for p in pred]
    ignore = [bool(flag) for flag in gt_ignore]
    pred_ignored = set()
    care_regions = [g for g, flag in zip(gt_polys, ignore, strict=True) if flag]
    for j, det in enumerate(pred_polys):
        if det.area <= 0:
            pred_ignored.add(j)  # a degenerate box can match nothing; the official script drops it too
            continue
        for region in care_regions:
            if region.intersection(det).area / det.area > dont_care_area:
                pred_ignored.add(j)
                break
    gt_used = [False] * len(gt_polys)
    pred_used = [False] * len(pred_polys)
    pairs = []
    for i, g in enumerate(gt_polys):
        if ignore[i]:
            continue
        for j, det in enumerate(pred_polys):
            if gt_used[i] or pred_used[j] or j in pred_ignored:
                continue
            if polygon_iou(g, det) >= iou_thresh:
                gt_used[i] = pred_used[j] = True
                pairs.append((i, j))
    n_gt = sum(1 for flag in ignore if not flag)
    n_pred = len(pred_polys) - len(pred_ignored)
    return BoxMatch(len(pairs), n_pred, n_gt, tuple(pairs), tuple(sorted(pred_ignored)))


# ---- text ----------------------------------------------------------------------------------------------------
_SPACES = re.compile(r"\s+")


def normalize_text(text: str, *, case_sensitive: bool = True, ignore_space: bool = False) -> str:
    """NFC, whitespace runs collapsed to one space and stripped (or removed when ignore_space, as PaddleOCR's
    RecMetric does by default); case folded only when case_sensitive is False."""
    text = _SPACES.sub("" if ignore_space else " ", unicodedata.normalize("NFC", text)).strip()
    return text if case_sensitive else text.casefold()


def char_distance(prediction: str, truth: str) -> int:
    """Levenshtein distance in characters (rapidfuzz): the numerator of the character error rate."""
    from rapidfuzz.distance import Levenshtein

    return int(Levenshtein.distance(prediction, truth))


# ---- COCO ----------------------------------------------------------------------------------------------------
def coco_map(gt: dict, detections: list[dict]) -> tuple[float, float]:
    """(mAP@0.5:0.95, mAP@0.5) with pycocotools, its prints silenced. `gt` is a COCO dict (images, annotations,
    categories); `detections` are COCO results (image_id, category_id, bbox [x, y, w, h], score). No detections
    score 0.0 (pycocotools cannot load an empty result list)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not gt.get("annotations"):
        return 0.0, 0.0
    if not detections:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(d) for d in detections])
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.imgIds = sorted({img["id"] for img in gt["images"]})
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return max(float(stats[0]), 0.0), max(float(stats[1]), 0.0)  # -1 means "no GT of that kind": report 0
