"""Object detection: raw outputs -> boxes through a registered decoder (tasks.decoders), scored with COCO mAP
(pycocotools).

The decoder is named with `decoder=` (yolov8, yolov5, yolox, ssd, blazeface, boxes_scores; the old names yolo and
boxes still work) or chosen from the output shapes on the first image (`decoder="auto"`, the default). Layout
options of the decoder (e.g. strides=[8,16,16,16], box_format="cxcywh") are ordinary task options.
Images become tensors the one way the preprocessing spec says (`Preprocessing.to_tensor`: letterbox with the
spec's pad, stretch, center crop, ...); decoders work in model-input pixels and the spec's `Geometry` maps their
boxes back to the original image. The option `letterbox` (True/False) overrides the spec's resize mode.
Model class i is COCO category `category_ids[i]` (default: the dataset's category ids in ascending order).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from ..data.base import Dataset, Sample
from ..errors import DatasetError, ModelError, UsageError
from ..preprocess import Geometry, Preprocessing
from .base import Metrics, Task
from .common import parse_size
from .decoders import Decoder, Detections, OutputFacts, choose_decoder, decoder_option_names, make_decoder
from .metrics import coco_map, match_detections, prf

DEFAULT_SIZE = (640, 640)
DEFAULT_PREPROCESSING = replace(Preprocessing(), resize="letterbox")  # no spec given: YOLO's letterbox, gray 114


class DetectionDecoding:
    """A decoder chosen once (by name, or from the first outputs' shapes and what the model file says), then the
    same for every image, plus the thresholds. Shared by the detect and fidelity tasks."""

    def __init__(self, decoder: str = "auto", *, conf_thresh: float, iou_thresh: float, max_det: int,
                 facts: dict[str, Any] | None = None, where: str = "the model", **options: Any) -> None:
        if not 0 <= conf_thresh < 1 or not 0 < iou_thresh <= 1:
            raise UsageError(f"conf_thresh must be in [0, 1) and iou_thresh in (0, 1] (got {conf_thresh}, "
                             f"{iou_thresh})")
        if max_det < 1:
            raise UsageError(f"max_det must be >= 1 (got {max_det})")
        self.conf_thresh, self.iou_thresh, self.max_det = conf_thresh, iou_thresh, max_det
        self.options, self.facts, self.where = options, dict(facts or {}), where
        self.decoder: Decoder | None = None
        self.decoder_name = decoder
        if decoder != "auto":
            self.decoder = make_decoder(decoder, **options)
            self.decoder_name = self.decoder.name

    def resolve(self, outputs: list[np.ndarray], input_size: tuple[int, int]) -> Decoder:
        if self.decoder is None:
            facts = OutputFacts(tuple(tuple(int(d) for d in o.shape) for o in outputs), tuple(input_size),
                                self.facts.get("num_classes"), self.facts.get("ultralytics_task"))
            self.decoder = make_decoder(choose_decoder(facts, where=self.where), **self.options)
            self.decoder_name = self.decoder.name
        return self.decoder

    def __call__(self, outputs: list[np.ndarray], input_size: tuple[int, int], *,
                 conf_thresh: float | None = None) -> Detections:
        outputs = [np.asarray(o) for o in outputs]
        return self.resolve(outputs, input_size).decode(
            outputs, input_size, conf_thresh=self.conf_thresh if conf_thresh is None else conf_thresh,
            iou_thresh=self.iou_thresh, max_det=self.max_det)


def split_decoder_options(options: dict[str, Any]) -> dict[str, Any]:
    """Pop the task options that belong to a decoder (its layout options) out of `options`."""
    names = decoder_option_names()
    return {key: options.pop(key) for key in list(options) if key in names}


class DetectTask(Task):
    """Object detection. Prediction: [{'bbox': [x, y, w, h], 'score', 'class'}] in original-image pixels.
    Metric: COCO mAP@0.5:0.95 ('map'); details: map50 and, at score >= score_thresh, f1_50 / precision_50 /
    recall_50 (IoU 0.5). mAP does not decompose per image, so there is no CI and the per-image rows give f1_50."""

    name: ClassVar[str] = "detect"
    metric: ClassVar[str] = "map"
    dataset_kinds: ClassVar[tuple[str, ...]] = ("coco",)

    def __init__(self, preprocessing: Preprocessing | None = None, *, input_size: tuple[int, int] | str | None = None,
                 decoder: str = "auto", conf_thresh: float = 0.001, iou_thresh: float = 0.6, max_det: int = 300,
                 score_thresh: float = 0.25, letterbox: bool | None = None, category_ids: list[int] | None = None,
                 **options: Any) -> None:
        decoder_options = split_decoder_options(options)
        super().__init__(preprocessing, input_size=parse_size(input_size), **options)
        self.decoding = DetectionDecoding(decoder, conf_thresh=conf_thresh, iou_thresh=iou_thresh, max_det=max_det,
                                          **decoder_options)
        if not 0 <= score_thresh < 1:
            raise UsageError(f"score_thresh must be in [0, 1) (got {score_thresh})")
        self.score_thresh = score_thresh
        self.category_ids = list(category_ids) if category_ids else None
        mode = None if letterbox is None else ("letterbox" if letterbox else "stretch")
        self.preprocessing = (preprocessing or DEFAULT_PREPROCESSING).for_task(mode, self.input_size,
                                                                               default_size=DEFAULT_SIZE)
        self.size = self.preprocessing.input_size  # None: each image's own size (keep_ratio)

    @property
    def decoder(self) -> str:
        return self.decoding.decoder_name

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        return self.preprocessing.to_tensor(image)

    def postprocess(self, outputs: list[np.ndarray], meta: Geometry) -> list[dict[str, Any]]:
        found = self.decoding(outputs, meta.input_size)
        boxes = meta.boxes_to_image(found.boxes)
        return [{"bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])], "score": float(s),
                 "class": int(c)} for b, s, c in zip(boxes, found.scores, found.classes, strict=True)]

    def score(self, predictions: list[Any], samples: list[Sample], dataset: Dataset) -> Metrics:
        gt = coco_ground_truth(samples, dataset)
        cat_ids = self.category_ids or sorted(c["id"] for c in gt["categories"])
        results, rows = [], []
        gt_by_image: dict[int, list[dict]] = {}
        for ann in gt["annotations"]:
            gt_by_image.setdefault(int(ann["image_id"]), []).append(ann)
        for prediction, sample in zip(predictions, samples, strict=True):
            for det in prediction:
                if det["class"] >= len(cat_ids):
                    raise ModelError(f"the model predicts class {det['class']} but only {len(cat_ids)} categories "
                                     f"are known; pass category_ids (model class -> COCO category id)")
                results.append({"image_id": sample.image_id, "category_id": cat_ids[det["class"]],
                                "bbox": det["bbox"], "score": det["score"]})
            truth = [a for a in gt_by_image.get(int(sample.image_id), []) if not a.get("iscrowd")]
            kept = [d for d in prediction if d["score"] >= self.score_thresh]
            tp = match_detections(xywh_to_xyxy([a["bbox"] for a in truth]), [a["category_id"] for a in truth],
                                  xywh_to_xyxy([d["bbox"] for d in kept]), [d["score"] for d in kept],
                                  [cat_ids[d["class"]] for d in kept])
            rows.append([float(tp), float(len(kept)), float(len(truth))])
        map_all, map50 = coco_map(gt, results)
        tp, n_pred, n_gt = np.sum(rows, axis=0) if rows else (0.0, 0.0, 0.0)
        precision, recall, f1 = prf(tp, n_pred, n_gt)
        return Metrics(self.name, self.metric, map_all, None, None, n_images=len(samples),
                       details={"map50": map50, "detections": float(len(results)), "f1_50": float(f1),
                                "precision_50": float(precision), "recall_50": float(recall)},
                       per_image=rows, statistic="hmean", statistic_of="f1_50")


def xywh_to_xyxy(boxes: list[list[float]]) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def coco_ground_truth(samples: list[Sample], dataset: Dataset) -> dict[str, Any]:
    """A COCO ground-truth dict restricted to `samples` (their image_id and annotation dicts). Categories come from
    dataset.extra['categories'] (or extra['coco']['categories']) when the loader kept them, else from the labels."""
    images, annotations = [], []
    for sample in samples:
        if sample.image_id is None or sample.target is None:
            raise DatasetError(f"task 'detect' needs COCO annotations for {sample.path}; load the data with "
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
