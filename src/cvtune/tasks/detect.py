"""Object detection: raw outputs -> boxes through a decoder chosen by name, scored with COCO mAP (pycocotools).

Decoders (DETECT_DECODERS) take the model outputs and return boxes in network-input pixels:
- `boxes`: [N, K, 6] rows of (x1, y1, x2, y2, score, class), e.g. exports with NMS inside the graph.
- `yolo`: [N, 4 + C, A] (YOLOv5u/v8/v11 heads: cx, cy, w, h, then C class scores; [N, A, 4 + C] is accepted too),
  class-aware NMS with cv2.dnn.NMSBoxesBatched.
Model class i is COCO category `category_ids[i]` (default: the dataset's category ids in ascending order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from ..data.base import Dataset, Sample
from ..errors import DatasetError, ModelError, UsageError
from ..zoo import Preprocessing
from .base import Metrics, Task
from .common import normalize, output_error, parse_size
from .metrics import coco_map

DEFAULT_SIZE = (640, 640)


@dataclass(frozen=True)
class Detections:
    """Decoded boxes in network-input pixels: (n, 4) x1 y1 x2 y2, (n,) scores, (n,) class indices."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def decode_boxes(outputs: list[np.ndarray], *, conf_thresh: float, iou_thresh: float, max_det: int) -> Detections:
    """[N, K, 6] (x1, y1, x2, y2, score, class) rows, already suppressed by the model."""
    rows = outputs[0] if outputs else np.zeros(0)
    if rows.ndim == 2:
        rows = rows[None]
    if rows.ndim != 3 or rows.shape[2] != 6:
        raise output_error("detect", "[N, K, 6] (x1, y1, x2, y2, score, class) rows for decoder 'boxes'", outputs,
                           "pick the decoder that fits the model (decoder 'yolo' for raw YOLO heads)")
    rows = rows[0][rows[0][:, 4] >= conf_thresh]
    rows = rows[np.argsort(-rows[:, 4], kind="stable")[:max_det]]
    return Detections(rows[:, :4].astype(np.float32), rows[:, 4].astype(np.float32), rows[:, 5].astype(np.int64))


def decode_yolo(outputs: list[np.ndarray], *, conf_thresh: float, iou_thresh: float, max_det: int) -> Detections:
    """[N, 4 + C, A] raw YOLO head (anchor-free, no objectness): best class per anchor, then per-class NMS."""
    raw = outputs[0] if outputs else np.zeros(0)
    if raw.ndim != 3 or min(raw.shape[1:]) < 5:
        raise output_error("detect", "a [N, 4 + classes, anchors] YOLO head for decoder 'yolo'", outputs,
                           "pick the decoder that fits the model (decoder 'boxes' for [N, K, 6] outputs)")
    pred = raw[0] if raw.shape[1] < raw.shape[2] else raw[0].T  # -> (4 + C, A): fewer channels than anchors
    scores_all = pred[4:]
    classes = scores_all.argmax(axis=0)
    scores = scores_all[classes, np.arange(pred.shape[1])]
    keep = scores >= conf_thresh
    cx, cy, w, h = pred[:4, keep]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    scores, classes = scores[keep].astype(np.float32), classes[keep]
    if len(boxes) == 0:
        return Detections(boxes.reshape(0, 4), scores, classes.astype(np.int64))
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), classes.tolist(), conf_thresh, iou_thresh)
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    idx = idx[np.argsort(-scores[idx], kind="stable")][:max_det]
    return Detections(boxes[idx], scores[idx], classes[idx].astype(np.int64))


Decoder = Callable[..., Detections]
DETECT_DECODERS: dict[str, Decoder] = {"boxes": decode_boxes, "yolo": decode_yolo}


def get_decoder(name: str) -> Decoder:
    if name not in DETECT_DECODERS:
        raise UsageError(f"unknown detection decoder '{name}'; choose one of: {', '.join(DETECT_DECODERS)}")
    return DETECT_DECODERS[name]


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping aspect into (H, W), pad with gray 114: (image, scale, (pad_x, pad_y))."""
    height, width = size
    scale = min(height / image.shape[0], width / image.shape[1])
    new_w, new_h = round(image.shape[1] * scale), round(image.shape[0] * scale)
    pad_x, pad_y = (width - new_w) / 2, (height - new_h) / 2
    resized = cv2.resize(image, (new_w, new_h))
    top, left = int(round(pad_y - 0.1)), int(round(pad_x - 0.1))
    out = cv2.copyMakeBorder(resized, top, height - new_h - top, left, width - new_w - left, cv2.BORDER_CONSTANT,
                             value=(114, 114, 114))
    return out, scale, (float(left), float(top))


class DetectTask(Task):
    """Object detection. Prediction: [{'bbox': [x, y, w, h], 'score', 'class'}] in original-image pixels.
    Metric: COCO mAP@0.5:0.95 ('map'); details: map50. No CI: mAP does not decompose per image."""

    name: ClassVar[str] = "detect"
    metric: ClassVar[str] = "map"
    dataset_kinds: ClassVar[tuple[str, ...]] = ("coco",)

    def __init__(self, preprocessing: Preprocessing | None = None, *, input_size: tuple[int, int] | str | None = None,
                 decoder: str = "yolo", conf_thresh: float = 0.001, iou_thresh: float = 0.6, max_det: int = 300,
                 letterbox: bool = True, category_ids: list[int] | None = None, **options: Any) -> None:
        super().__init__(preprocessing, input_size=parse_size(input_size), **options)
        self.decode = get_decoder(decoder)
        self.decoder = decoder
        if not 0 <= conf_thresh < 1 or not 0 < iou_thresh <= 1:
            raise UsageError(f"conf_thresh must be in [0, 1) and iou_thresh in (0, 1] (got {conf_thresh}, "
                             f"{iou_thresh})")
        self.conf_thresh, self.iou_thresh, self.max_det = conf_thresh, iou_thresh, max_det
        self.use_letterbox = letterbox
        self.category_ids = list(category_ids) if category_ids else None
        self.size = self.input_size or self.preprocessing.input_size or DEFAULT_SIZE

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        h, w = image.shape[:2]
        if self.use_letterbox:
            resized, scale, pad = letterbox(image, self.size)
            meta = {"scale": (scale, scale), "pad": pad, "shape": (h, w)}
        else:
            resized = cv2.resize(image, (self.size[1], self.size[0]))
            meta = {"scale": (self.size[1] / w, self.size[0] / h), "pad": (0.0, 0.0), "shape": (h, w)}
        return normalize(resized, self.preprocessing), meta

    def postprocess(self, outputs: list[np.ndarray], meta: dict[str, Any]) -> list[dict[str, Any]]:
        found = self.decode(outputs, conf_thresh=self.conf_thresh, iou_thresh=self.iou_thresh, max_det=self.max_det)
        (sx, sy), (px, py), (h, w) = meta["scale"], meta["pad"], meta["shape"]
        boxes = found.boxes.astype(np.float64).copy()
        boxes[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - px) / sx, 0, w)
        boxes[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - py) / sy, 0, h)
        return [{"bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])], "score": float(s),
                 "class": int(c)} for b, s, c in zip(boxes, found.scores, found.classes, strict=True)]

    def score(self, predictions: list[Any], samples: list[Sample], dataset: Dataset) -> Metrics:
        gt = coco_ground_truth(samples, dataset)
        cat_ids = self.category_ids or sorted(c["id"] for c in gt["categories"])
        results = []
        for prediction, sample in zip(predictions, samples, strict=True):
            for det in prediction:
                if det["class"] >= len(cat_ids):
                    raise ModelError(f"the model predicts class {det['class']} but only {len(cat_ids)} categories "
                                     f"are known; pass category_ids (model class -> COCO category id)")
                results.append({"image_id": sample.image_id, "category_id": cat_ids[det["class"]],
                                "bbox": det["bbox"], "score": det["score"]})
        map_all, map50 = coco_map(gt, results)
        return Metrics(self.name, self.metric, map_all, None, None, n_images=len(samples),
                       details={"map50": map50, "detections": float(len(results))})


def coco_ground_truth(samples: list[Sample], dataset: Dataset) -> dict[str, Any]:
    """A COCO ground-truth dict restricted to `samples` (their image_id and annotation dicts). Categories come from
    dataset.extra['categories'] (or extra['coco']['categories']) when the loader kept them, else from the labels."""
    images, annotations = [], []
    for sample in samples:
        if sample.image_id is None or sample.target is None:
            raise DatasetError(f"task 'detect' needs COCO annotations for {sample.path}; load the data as "
                               f"kind 'coco' (annotations json + images folder)")
        images.append({"id": int(sample.image_id), "file_name": sample.path.name})
        for ann in sample.target:
            x, y, w, h = (float(v) for v in ann["bbox"])
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": int(sample.image_id),
                                "bbox": [x, y, w, h], "area": float(ann.get("area", w * h)),
                                "iscrowd": int(ann.get("iscrowd", 0))})
    extra = dataset.extra or {}
    coco = extra.get("coco") if isinstance(extra.get("coco"), dict) else {}
    categories = extra.get("categories") or coco.get("categories")
    if not categories:
        categories = [{"id": cid} for cid in sorted({int(a["category_id"]) for a in annotations})]
    categories = [{"id": int(c["id"]), "name": str(c.get("name", c["id"]))} for c in categories]
    return {"images": images, "annotations": annotations, "categories": categories}
