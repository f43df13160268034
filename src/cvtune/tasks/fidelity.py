"""Fidelity: how closely a candidate reproduces the original (reference) model, without labels, judged the way the
task judges it. Both models see the same input tensor; both outputs are decoded with the same task code, and the
reference's decoded result plays the label:

    kind      headline          how
    detect    det_f1            reference detections (score >= conf_thresh) are pseudo-labels; candidate F1 at
                                IoU 0.5 (class-aware, with a score margin: DetectComparer.compare); details:
                                map50 (pycocotools, candidate detections down to score 0.001 ranked)
    classify  top1_agreement    candidate top-1 == reference top-1; details: top5_agreement
    textdet   text_hmean        ICDAR-2015 hmean of the candidate's boxes against the reference's
    ocr       line_agreement    recognized text identical (each image is one line); details: cer vs the reference
    segment   mask_miou         mIoU of the candidate's masks against the reference's
    raw       raw_similarity    last resort, on the undecoded outputs: per output 1 - |c - r| / max(|r|, floor),
                                clipped at 0, averaged over outputs (a floor, not a cosine: near-empty outputs stay
                                stable); details: max/mean absolute error

`kind="auto"` takes the kind from what the reference model file says: a `decoder=` option means detect, a zoo
model its task, Ultralytics metadata its `task`; anything else falls back to raw, named as such.
A model compared with itself scores exactly 1.0 on every kind. Every kind keeps per-image rows (Metrics.per_image)
for bootstrap CIs and paired tests. Decoded reference results are cached per input, so scoring many candidates
with one task instance runs the reference once per image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..data.base import Dataset, Sample
from ..errors import ModelError, UsageError
from ..preprocess import Preprocessing
from ..runtimes import Runtime, make_runtime
from .base import Metrics, Task
from .common import AuxModel, parse_size
from .metrics import char_distance, coco_map, match_detections, match_text_boxes, statistic_ci, statistic_value
from .textdet import det_resize_shape

ANY_KIND = ("images", "classification", "coco", "icdar", "ocr_lines", "segmentation")
KINDS = ("auto", "detect", "classify", "textdet", "ocr", "segment", "raw")
MAP_SCORE_FLOOR = 0.001  # candidate detections down to this score enter the mAP ranking


# ---- raw outputs: the last resort ------------------------------------------------------------------------------
def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two flattened arrays as 1 - |a/|a| - b/|b||^2 / 2: exactly 1.0 for identical inputs.
    Two all-zero arrays are identical (1.0); one all-zero array against another is 0.0."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(np.clip(1.0 - np.sum((a / na - b / nb) ** 2) / 2.0, -1.0, 1.0))


def check_same_outputs(candidate: list[np.ndarray], reference: list[np.ndarray]) -> None:
    if len(candidate) != len(reference):
        raise ModelError(f"the candidate returns {len(candidate)} outputs but the reference returns "
                         f"{len(reference)}; fidelity needs the same outputs")
    for i, (c, r) in enumerate(zip(candidate, reference, strict=True)):
        if c.shape != r.shape:
            raise ModelError(f"candidate output {i} has shape {tuple(c.shape)} but the reference's is "
                             f"{tuple(r.shape)}; compare models with the same outputs")


def raw_similarity(candidate: list[np.ndarray], reference: list[np.ndarray], *, floor: float = 1e-2
                   ) -> dict[str, float]:
    """Per-image agreement of undecoded outputs. For each output: 1 - rms(c - r) / max(rms(r), floor), clipped at
    0 (exactly 1.0 when identical; an output that is almost all zeros is judged against `floor`, not against its
    own tiny norm); `similarity` is their mean, so small score outputs count as much as large box outputs.
    Also max/mean absolute error and the cosine over all outputs (for reference only)."""
    check_same_outputs(candidate, reference)
    sims, diffs = [], []
    for c, r in zip(candidate, reference, strict=True):
        c64, r64 = np.asarray(c, np.float64).ravel(), np.asarray(r, np.float64).ravel()
        if not r64.size:
            continue
        err = np.sqrt(np.mean((c64 - r64) ** 2))
        scale = max(float(np.sqrt(np.mean(r64 ** 2))), floor)
        sims.append(1.0 if err == 0 else max(0.0, 1.0 - err / scale))
        diffs.append(np.abs(c64 - r64))
    diff = np.concatenate(diffs) if diffs else np.zeros(0)
    flat_c = np.concatenate([np.asarray(c, np.float64).ravel() for c in candidate]) if candidate else np.zeros(0)
    flat_r = np.concatenate([np.asarray(r, np.float64).ravel() for r in reference]) if reference else np.zeros(0)
    return {"similarity": float(np.mean(sims)) if sims else 1.0, "cosine": cosine(flat_c, flat_r),
            "max_abs": float(diff.max()) if diff.size else 0.0, "mean_abs": float(diff.mean()) if diff.size else 0.0}


# ---- comparers: one per kind ----------------------------------------------------------------------------------
class Comparer:
    """How one kind turns an image into an input, decodes either model's outputs, compares the two decoded results
    (one per-image row, plus extras) and scores all images. `preprocessing` is the spec its tensors come from (the
    given one, or the kind's default, with the kind's options translated into it)."""

    metric: ClassVar[str] = ""
    preprocessing: Preprocessing

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def decode(self, outputs: list[np.ndarray], meta: Any, *, reference: bool) -> Any:
        return outputs

    def compare(self, candidate: Any, reference: Any) -> dict[str, Any]:
        raise NotImplementedError

    def score(self, predictions: list[dict[str, Any]]) -> tuple[float, dict[str, float], str]:
        """(headline, details, statistic name); the rows are predictions[i]['row']."""
        raise NotImplementedError


def _rows(predictions: list[dict[str, Any]]) -> list[list[float]]:
    return [[float(v) for v in p["row"]] for p in predictions]


class DetectComparer(Comparer):
    metric = "det_f1"

    def __init__(self, preprocessing: Preprocessing | None, options: dict[str, Any], facts: dict[str, Any],
                 where: str):
        from .detect import DetectionDecoding, DetectTask, split_decoder_options

        decoder_options = split_decoder_options(options)
        self.conf_thresh = float(options.pop("conf_thresh", 0.25))
        self.match_iou = float(options.pop("match_iou", 0.5))
        self.view = DetectTask(preprocessing, input_size=options.pop("input_size", None),
                               letterbox=options.pop("letterbox", None))
        self.preprocessing = self.view.preprocessing
        self.decoding = DetectionDecoding(options.pop("decoder", "auto"), conf_thresh=MAP_SCORE_FLOOR,
                                          iou_thresh=float(options.pop("iou_thresh", 0.45)),
                                          max_det=int(options.pop("max_det", 300)), facts=facts, where=where,
                                          **decoder_options)
        if not 0 < self.conf_thresh < 1:
            raise UsageError(f"conf_thresh must be in (0, 1) (got {self.conf_thresh})")

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        return self.view.preprocess(image)

    def decode(self, outputs: list[np.ndarray], meta: Any, *, reference: bool) -> np.ndarray:
        """(n, 6) rows x1 y1 x2 y2 score class on the original image, down to half conf_thresh for the reference
        (the margin of the matching) and down to MAP_SCORE_FLOOR for the candidate (mAP ranks those too)."""
        found = self.decoding(outputs, meta.input_size, conf_thresh=self.low if reference else None)
        boxes = meta.boxes_to_image(found.boxes)
        return np.concatenate([boxes, found.scores[:, None], found.classes[:, None]], axis=1).astype(np.float64)

    @property
    def low(self) -> float:
        return self.conf_thresh / 2

    def compare(self, candidate: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
        """Recall: reference detections >= conf_thresh (the pseudo-labels) found by a candidate detection of the
        same class at IoU >= match_iou scoring >= conf_thresh / 2; precision: candidate detections >= conf_thresh
        matching a reference detection >= conf_thresh / 2. The margin keeps a box scored 0.26 by one model and 0.24
        by the other from counting as both a miss and a false alarm; a model against itself still scores 1.0."""
        labels, ref_low = reference[reference[:, 4] >= self.conf_thresh], reference
        kept, cand_low = candidate[candidate[:, 4] >= self.conf_thresh], candidate[candidate[:, 4] >= self.low]
        found = match_detections(labels[:, :4], labels[:, 5], cand_low[:, :4], cand_low[:, 4], cand_low[:, 5],
                                 iou_thresh=self.match_iou)
        right = match_detections(ref_low[:, :4], ref_low[:, 5], kept[:, :4], kept[:, 4], kept[:, 5],
                                 iou_thresh=self.match_iou)
        return {"row": [right, len(kept), found, len(labels)], "candidate": candidate, "reference": labels}

    def score(self, predictions: list[dict[str, Any]]) -> tuple[float, dict[str, float], str]:
        from .metrics import f1_split

        rows = _rows(predictions)
        right, n_pred, found, n_gt = np.sum(rows, axis=0) if rows else (0.0, 0.0, 0.0, 0.0)
        precision, recall, f1 = f1_split(right, n_pred, found, n_gt)
        details = {"precision": float(precision), "recall": float(recall), "reference_detections": float(n_gt),
                   "candidate_detections": float(n_pred)}
        map50 = self.map50(predictions)
        if map50 is not None:
            details["map50"] = map50
        return float(f1), details, "f1_split"

    def map50(self, predictions: list[dict[str, Any]]) -> float | None:
        """Candidate mAP@0.5 against the pseudo-labels (pycocotools); None when the reference found nothing."""
        images, annotations, results = [], [], []
        for i, p in enumerate(predictions, 1):
            images.append({"id": i})
            for x1, y1, x2, y2, _, c in p["reference"]:
                annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(c) + 1,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                    "iscrowd": 0})
            for x1, y1, x2, y2, s, c in p["candidate"]:
                results.append({"image_id": i, "category_id": int(c) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "score": float(s)})
        if not annotations:
            return None
        classes = sorted({a["category_id"] for a in annotations} | {r["category_id"] for r in results})
        gt = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in classes]}
        return round(coco_map(gt, results)[1], 12)  # pycocotools sums 101 precisions: 1.0 comes out as 1 - 1e-16


class ClassifyComparer(Comparer):
    metric = "top1_agreement"

    def __init__(self, preprocessing: Preprocessing | None, options: dict[str, Any], facts: dict[str, Any],
                 where: str):
        from .classify import ClassifyTask

        self.view = ClassifyTask(preprocessing, input_size=options.pop("input_size", None),
                                 resize=options.pop("resize", None))
        self.preprocessing = self.view.preprocessing

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        return self.view.preprocess(image)

    def decode(self, outputs: list[np.ndarray], meta: Any, *, reference: bool) -> list[int]:
        return self.view.postprocess(outputs, meta)["top"]

    def compare(self, candidate: list[int], reference: list[int]) -> dict[str, Any]:
        return {"row": [float(candidate[0] == reference[0])], "top5": float(reference[0] in candidate[:5])}

    def score(self, predictions: list[dict[str, Any]]) -> tuple[float, dict[str, float], str]:
        top5 = [p["top5"] for p in predictions]
        return statistic_value("mean", _rows(predictions)), {"top5_agreement": float(np.mean(top5))}, "mean"


class TextDetComparer(Comparer):
    metric = "text_hmean"

    def __init__(self, preprocessing: Preprocessing | None, options: dict[str, Any], facts: dict[str, Any],
                 where: str):
        from .textdet import TextDetTask

        keys = ("input_size", "limit_side_len", "limit_type", "max_side_len", "thresh", "box_thresh",
                "unclip_ratio", "use_dilation", "score_mode")
        self.view = TextDetTask(preprocessing, **{k: options.pop(k) for k in keys if k in options})
        self.preprocessing = self.view.preprocessing
        self.iou_thresh = float(options.pop("match_iou", 0.5))

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        return self.view.preprocess(image)

    def decode(self, outputs: list[np.ndarray], meta: Any, *, reference: bool) -> list:
        return self.view.postprocess(outputs, meta)["boxes"]

    def compare(self, candidate: list, reference: list) -> dict[str, Any]:
        match = match_text_boxes(reference, [False] * len(reference), candidate, iou_thresh=self.iou_thresh)
        return {"row": [match.tp, match.n_pred, match.n_gt]}

    def score(self, predictions: list[dict[str, Any]]) -> tuple[float, dict[str, float], str]:
        from .metrics import prf

        rows = _rows(predictions)
        tp, n_pred, n_gt = np.sum(rows, axis=0) if rows else (0.0, 0.0, 0.0)
        precision, recall, hmean = prf(tp, n_pred, n_gt)
        return float(hmean), {"precision": float(precision), "recall": float(recall),
                              "reference_boxes": float(n_gt)}, "hmean"


class OcrComparer(Comparer):
    metric = "line_agreement"

    def __init__(self, preprocessing: Preprocessing | None, options: dict[str, Any], facts: dict[str, Any],
                 where: str):
        from .ocr import OcrTask

        keys = ("input_size", "charset", "case_sensitive", "ignore_space")
        self.view = OcrTask(preprocessing, use_cls=False, mode="lines",
                            **{k: options.pop(k) for k in keys if k in options})
        self.preprocessing = self.view.preprocessing

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        return self.view.preprocess(image)

    def decode(self, outputs: list[np.ndarray], meta: Any, *, reference: bool) -> str:
        return self.view.postprocess(outputs, meta)[0]["text"]

    def compare(self, candidate: str, reference: str) -> dict[str, Any]:
        cand, ref = self.view.normalize(candidate), self.view.normalize(reference)
        return {"row": [float(cand == ref)], "distance": char_distance(cand, ref), "length": len(ref)}

    def score(self, predictions: list[dict[str, Any]]) -> tuple[float, dict[str, float], str]:
        dist, length = sum(p["distance"] for p in predictions), sum(p["length"] for p in predictions)
        return statistic_value("mean", _rows(predictions)), {"cer": float(dist / max(length, 1))}, "mean"


class SegmentComparer(Comparer):
    metric = "mask_miou"

    def __init__(self, preprocessing: Preprocessing | None, options: dict[str, Any], facts: dict[str, Any],
                 where: str):
        from .segment import SegmentTask

        keys = ("input_size", "resize", "threshold")
        self.view = SegmentTask(preprocessing, **{k: options.pop(k) for k in keys if k in options})
        self.preprocessing = self.view.preprocessing
        self.num_classes: int | None = None

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        return self.view.preprocess(image)

    def decode(self, outputs: list[np.ndarray], meta: Any, *, reference: bool) -> np.ndarray:
        from .segment import class_mask, score_map

        scores = score_map(outputs)
        if reference and self.num_classes is None:
            self.num_classes = max(2, scores.shape[2])  # one channel = background / foreground
        return class_mask(scores, meta, threshold=self.view.threshold)

    def compare(self, candidate: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
        from .segment import iou_counts

        return {"row": iou_counts(candidate, reference, self.num_classes or 2, ignore_index=-1),
                "agree": int(np.count_nonzero(candidate == reference)), "pixels": int(reference.size)}

    def score(self, predictions: list[dict[str, Any]]) -> tuple[float, dict[str, float], str]:
        agree, total = sum(p["agree"] for p in predictions), sum(p["pixels"] for p in predictions)
        return statistic_value("miou", _rows(predictions)), {"pixel_agreement": agree / total if total else 1.0}, \
            "miou"


class RawComparer(Comparer):
    metric = "raw_similarity"

    def __init__(self, preprocessing: Preprocessing | None, options: dict[str, Any], facts: dict[str, Any],
                 where: str):
        self.size = parse_size(options.pop("input_size", None))
        self.preprocessing = (preprocessing or Preprocessing()).for_task(None, self.size)
        self.max_side = int(options.pop("max_side", 960))
        self.floor = float(options.pop("raw_floor", 1e-2))
        if self.floor <= 0:
            raise UsageError(f"raw_floor must be > 0 (got {self.floor})")

    def input_shape(self, height: int, width: int) -> tuple[int, int]:
        """Fixed-size models get their size; dynamic ones keep the image's aspect, long side <= max_side, rounded to
        the model's size multiple (32 when unknown: what most fully convolutional models need)."""
        size = self.size or self.preprocessing.input_size
        if size:
            return size
        multiple = self.preprocessing.size_multiple if self.preprocessing.size_multiple > 1 else 32
        return det_resize_shape(height, width, limit_side_len=self.max_side, limit_type="max", multiple=multiple,
                                max_side_len=None)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        """The spec's own resizing; a model of any input size that the spec stretches (or letterboxes) without a
        size gets `input_shape` (the image's aspect, long side <= max_side)."""
        spec, size = self.preprocessing, None
        if spec.input_size is None and spec.resize in ("stretch", "letterbox"):
            size = self.input_shape(*image.shape[:2])
        return spec.to_tensor(image, input_size=size)[0], None

    def decode(self, outputs: list[np.ndarray], meta: Any, *, reference: bool) -> list[np.ndarray]:
        return [np.array(o, copy=True) for o in outputs]

    def compare(self, candidate: list[np.ndarray], reference: list[np.ndarray]) -> dict[str, Any]:
        stats = raw_similarity(candidate, reference, floor=self.floor)
        return {"row": [stats["similarity"]], **stats}

    def score(self, predictions: list[dict[str, Any]]) -> tuple[float, dict[str, float], str]:
        sims = [p["similarity"] for p in predictions]
        details = {"similarity_min": float(min(sims)) if sims else 0.0,
                   "max_abs_error": float(max(p["max_abs"] for p in predictions)) if sims else 0.0,
                   "mean_abs_error": float(np.mean([p["mean_abs"] for p in predictions])) if sims else 0.0,
                   "cosine_mean": float(np.mean([p["cosine"] for p in predictions])) if sims else 0.0}
        return statistic_value("mean", _rows(predictions)), details, "mean"


COMPARERS: dict[str, type[Comparer]] = {"detect": DetectComparer, "classify": ClassifyComparer,
                                        "textdet": TextDetComparer, "ocr": OcrComparer, "segment": SegmentComparer,
                                        "raw": RawComparer}
FROM_ULTRALYTICS = {"detect": "detect", "classify": "classify"}


def fidelity_kind(reference: Path, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(kind, what the reference file says) for kind='auto': a decoder option -> detect; a zoo model -> its task;
    Ultralytics metadata -> its task where decoded here; else 'raw'."""
    from .. import zoo
    from .decoders import model_facts

    entry = zoo.find_by_path(reference)
    if entry is not None and entry.task in COMPARERS and not options.get("decoder"):
        return entry.task, {}  # the zoo knows its models: no need to parse the file (and import onnx) here
    facts = model_facts(reference)
    if options.get("decoder"):
        return "detect", facts
    return FROM_ULTRALYTICS.get(facts.get("ultralytics_task", ""), "raw"), facts


def reference_runtime_for(model: Path) -> Runtime:
    """The runtime that computes a non-ONNX original as its authors meant: LiteRT for a .tflite where installed;
    else OpenCV's classic engine where it exists (ONNX Runtime reads ONNX only; OpenCV 5.0's default engine drops
    the scores output of MediaPipe's detectors; the classic engine has every output, in either layout)."""
    from ..runtimes import RUNTIMES

    if "litert" in RUNTIMES and make_runtime("litert").reads(model):
        return make_runtime("litert")
    from ..runtimes.opencv import reference_engine

    return make_runtime("opencv", engine=reference_engine())


class FidelityTask(Task):
    """Candidate vs reference, decoded by the task (see the module doc). Needs `reference_model`; any dataset."""

    name: ClassVar[str] = "fidelity"
    metric: ClassVar[str] = "agreement"
    dataset_kinds: ClassVar[tuple[str, ...]] = ANY_KIND

    def __init__(self, preprocessing: Preprocessing | None = None, *, input_size: tuple[int, int] | str | None = None,
                 reference_model: str | Path | None = None, reference_runtime: Runtime | str | None = None,
                 kind: str = "auto", cache_limit_mb: float = 1024.0, **options: Any) -> None:
        super().__init__(preprocessing, input_size=parse_size(input_size))
        if reference_model is None:
            raise UsageError("task 'fidelity' needs a reference model (the original) to compare against; "
                             "pass reference_model=PATH")
        if kind not in KINDS:
            raise UsageError(f"unknown fidelity kind '{kind}'; choose one of: {', '.join(KINDS)}")
        reference_model = Path(reference_model)
        if kind == "auto":
            kind, facts = fidelity_kind(reference_model, options)
        else:
            from .decoders import model_facts

            facts = model_facts(reference_model) if kind == "detect" else {}
        self.kind = kind
        if reference_runtime is None and reference_model.suffix.lower() != ".onnx":
            reference_runtime = reference_runtime_for(reference_model)
        self.reference = AuxModel(reference_model, reference_runtime)
        opts = dict(options)
        if self.input_size:
            opts["input_size"] = self.input_size
        self.comparer = COMPARERS[kind](preprocessing, opts, facts, str(reference_model))
        self.preprocessing = self.comparer.preprocessing  # what the tensors are made with (calibration records it)
        unused = sorted(opts)
        if unused:
            raise UsageError(f"fidelity kind '{kind}' has no option {', '.join(unused)}; see cvtune.tasks.fidelity "
                             f"for the options of each kind")
        self.metric = self.comparer.metric  # type: ignore[misc]
        self.cache_limit = int(cache_limit_mb * 2**20)
        self._cache: dict[bytes, Any] = {}
        self._cached_bytes = 0

    def close(self) -> None:
        self.reference.close()

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, Any]]:
        tensor, meta = self.comparer.preprocess(image)
        return tensor, (tensor, meta)

    def reference_result(self, tensor: np.ndarray, meta: Any) -> Any:
        """The reference model's decoded result for this exact input, from the cache when seen before."""
        digest = hashlib.blake2b(np.asarray(tensor.shape, np.int64).tobytes(), digest_size=16)
        digest.update(np.ascontiguousarray(tensor).tobytes())
        digest.update(repr(meta).encode())
        key = digest.digest()
        if key in self._cache:
            return self._cache[key]
        result = self.comparer.decode([np.asarray(o) for o in self.reference.run(tensor)], meta, reference=True)
        size = _nbytes(result)
        if self._cached_bytes + size <= self.cache_limit:
            self._cache[key] = result
            self._cached_bytes += size
        return result

    def postprocess(self, outputs: list[np.ndarray], meta: tuple[np.ndarray, Any]) -> dict[str, Any]:
        tensor, inner = meta
        reference = self.reference_result(tensor, inner)
        if self.kind == "raw":
            check_same_outputs([np.asarray(o) for o in outputs], reference)
        candidate = self.comparer.decode([np.asarray(o) for o in outputs], inner, reference=False)
        # the reference against itself: the row the original scores on this image, what drops are counted from
        return {**self.comparer.compare(candidate, reference),
                "reference_row": self.comparer.compare(reference, reference)["row"]}

    def score(self, predictions: list[Any], samples: list[Sample], dataset: Dataset) -> Metrics:
        value, details, statistic = self.comparer.score(predictions)
        rows = _rows(predictions)
        low, high = statistic_ci(statistic, rows)
        return Metrics(self.name, self.metric, value, low, high, n_images=len(predictions), details=details,
                       per_image=rows, statistic=statistic,
                       reference_per_image=[list(map(float, p["reference_row"])) for p in predictions])


def _nbytes(result: Any) -> int:
    if isinstance(result, np.ndarray):
        return int(result.nbytes)
    if isinstance(result, list | tuple):
        return sum(_nbytes(r) for r in result) + 64
    return 256
