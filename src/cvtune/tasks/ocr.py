"""Text recognition (PP-OCR CRNN/SVTR + CTC), alone on line crops or end to end behind the detector.

The model under evaluation is the recognizer. On an `ocr_lines` dataset each image is one text line (headline:
exact line accuracy, plus CER). On an `icdar` dataset the task runs the detector (zoo ppocr-det unless det_model
is given) and the orientation classifier itself, crops each box, and scores GT lines read correctly. Which helper
models it uses is an option (`detector=...`, `classifier=...`: a model file, a zoo name, or `none` for no
orientation classifier) and `aux_models()` says which ones it runs.
Texts are compared after whitespace normalization. By default spaces are ignored altogether (ignore_space=True,
PaddleOCR's RecMetric default: PP-OCR models often drop or add spaces between Latin words) and case matters
(case_sensitive=True); CER uses the same normalization.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from ..data.base import Dataset, Sample
from ..errors import DatasetError, UsageError
from ..runtimes import Runtime, Session
from ..zoo import ZOO, Preprocessing
from ..zoo import path as zoo_path
from .base import Metrics, Task
from .common import AuxModel, as_probabilities, output_error, parse_size, resize_pad
from .ctc import ctc_greedy_decode, read_charset
from .geometry import crop_quad
from .metrics import char_distance, match_text_boxes, normalize_text, prf, ratio_ci
from .textdet import TextDetTask, text_boxes

MODES = ("auto", "lines", "e2e")
CLS_SHAPE = (48, 192)
OFF = ("none", "off", "false", "0")


def _helper_model(value: str | Path | None, what: str) -> Path | None:
    """A helper model given as a file or a zoo name (ppocr-det, zoo:ppocr-det); None when not given."""
    if value is None:
        return None
    text = str(value)
    name = text.removeprefix("zoo:")
    if name in ZOO:
        return zoo_path(name)
    path = Path(text).expanduser()
    if not path.is_file():
        raise UsageError(f"ocr {what} model not found: {text}; give a model file or a zoo name "
                         f"({', '.join(ZOO)})" + (" (or none)" if what == "classifier" else ""))
    return path


def _describe(path: Path) -> str:
    entry = next((name for name in ZOO if zoo_path(name).resolve() == path.resolve()), None) \
        if path.is_file() else None
    return f"zoo {entry} ({path})" if entry else str(path)


class OcrTask(Task):
    """Line recognition. Prediction: {'text', 'score'} per line crop, or {'lines': [{'box', 'text', 'score'}]}
    end to end. Metric: line_acc (correct lines / GT lines), details: cer and, end to end, detection hmean."""

    name: ClassVar[str] = "ocr"
    metric: ClassVar[str] = "line_acc"
    dataset_kinds: ClassVar[tuple[str, ...]] = ("ocr_lines", "icdar")

    def __init__(self, preprocessing: Preprocessing | None = None, *, input_size: tuple[int, int] | None = None,
                 charset: list[str] | None = None, mode: str = "auto", use_cls: bool = True,
                 cls_model: str | Path | None = None, det_model: str | Path | None = None,
                 aux_runtime: Runtime | str | None = None, det_options: dict[str, Any] | None = None,
                 cls_thresh: float = 0.9, rec_batch: int = 6, case_sensitive: bool = True, ignore_space: bool = True,
                 iou_thresh: float = 0.5, detector: str | Path | None = None, classifier: str | Path | None = None,
                 **options: Any) -> None:
        super().__init__(preprocessing or ZOO["ppocr-rec"].preprocessing, input_size=input_size, **options)
        if classifier is not None and str(classifier).lower() in OFF:
            use_cls, classifier = False, None
        det_model = _helper_model(detector, "detector") or det_model
        cls_model = _helper_model(classifier, "classifier") or cls_model
        if mode not in MODES:
            raise UsageError(f"unknown ocr mode '{mode}'; choose one of: {', '.join(MODES)}")
        if rec_batch < 1:
            raise UsageError(f"rec_batch must be >= 1 (got {rec_batch})")
        self.rec_height, self.rec_width = parse_size(input_size) or self.preprocessing.input_size or (48, 320)
        self.charset = charset or read_charset(zoo_path("ppocr-rec"))
        self.mode = mode
        self.use_cls, self.cls_thresh, self.rec_batch = use_cls, cls_thresh, rec_batch
        self.case_sensitive, self.ignore_space, self.iou_thresh = case_sensitive, ignore_space, iou_thresh
        self.cls = AuxModel(cls_model or zoo_path("ppocr-cls"), aux_runtime) if use_cls else None
        self._det_model, self._aux_runtime = det_model, aux_runtime
        self.detector = TextDetTask(**(det_options or {}))
        self._det: AuxModel | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def bind(self, dataset: Dataset) -> None:
        """Pick line or end-to-end mode from the dataset layout (icdar -> end to end)."""
        if self.mode == "auto":
            self.mode = "e2e" if dataset.kind == "icdar" else "lines"

    def close(self) -> None:
        for aux in (self.cls, self._det):
            if aux is not None:
                aux.close()

    def aux_models(self) -> dict[str, str]:
        """Which helper models this task runs, in words (eval prints it): the detector and orientation classifier."""
        if self.mode == "lines":
            detector = "not used (the data are line crops)"
        else:
            detector = _describe(Path(self._det_model) if self._det_model else zoo_path("ppocr-det"))
        classifier = _describe(self.cls.path) if self.cls is not None else "off"
        return {"detector": detector, "classifier": classifier}

    @property
    def det(self) -> AuxModel:
        if self._det is None:
            self._det = AuxModel(self._det_model or zoo_path("ppocr-det"), self._aux_runtime)
        return self._det

    # ---- recognition -------------------------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, None]:
        """One line crop -> (1, 3, 48, W), W = max(320, 48 * aspect)."""
        ratio = max(self.rec_width / self.rec_height, image.shape[1] / max(image.shape[0], 1))
        width = int(self.rec_height * ratio)
        return resize_pad(image, self.rec_height, width, self.preprocessing)[None], None

    def postprocess(self, outputs: list[np.ndarray], meta: Any = None) -> list[dict[str, Any]]:
        probs = outputs[0] if outputs else np.zeros(0)
        if probs.ndim != 3:
            raise output_error(self.name, "(N, T, classes) CTC scores", outputs,
                               "use a CTC text recognizer such as `cvtune zoo path ppocr-rec`")
        return [{"text": t, "score": s} for t, s in ctc_greedy_decode(probs, self.charset)]

    def recognize(self, session: Session, crops: list[np.ndarray]) -> list[dict[str, Any]]:
        """Read many crops: sorted by aspect ratio, batches padded to the widest crop of the batch."""
        results: list[dict[str, Any]] = [{"text": "", "score": 0.0}] * len(crops)
        order = np.argsort([c.shape[1] / max(c.shape[0], 1) for c in crops], kind="stable")
        for start in range(0, len(crops), self.rec_batch):
            idx = order[start:start + self.rec_batch]
            ratio = max([self.rec_width / self.rec_height] + [crops[i].shape[1] / crops[i].shape[0] for i in idx])
            width = int(self.rec_height * ratio)
            batch = np.stack([resize_pad(crops[i], self.rec_height, width, self.preprocessing) for i in idx])
            for i, result in zip(idx, self.postprocess(session.run(batch)), strict=True):
                results[i] = result
        return results

    def orient(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Rotate crops the orientation classifier reads as '180' with probability > cls_thresh."""
        if self.cls is None or not crops:
            return crops
        batch = np.stack([resize_pad(c, *CLS_SHAPE, self.preprocessing) for c in crops])
        outputs = self.cls.run(batch)
        if not outputs or outputs[0].ndim != 2 or outputs[0].shape[1] != 2:
            raise output_error("ocr (orientation classifier)", "(N, 2) scores for 0/180 degrees", outputs,
                               "give cls_model a PP-OCR orientation classifier or set use_cls=False")
        probs = as_probabilities(outputs[0])
        return [cv2.rotate(c, cv2.ROTATE_180) if p.argmax() == 1 and p[1] > self.cls_thresh else c
                for c, p in zip(crops, probs, strict=True)]

    def predict(self, session: Session, image: np.ndarray) -> dict[str, Any]:
        if self.mode == "e2e":
            tensor, meta = self.detector.preprocess(image)
            found = self.detector.postprocess(self.det.run(tensor), meta)
            boxes = found["boxes"]
            crops = self.orient([crop_quad(image, np.array(b, dtype=np.float32)) for b in boxes])
            texts = self.recognize(session, crops) if crops else []
            return {"lines": [{"box": b, **t} for b, t in zip(boxes, texts, strict=True)]}
        return self.recognize(session, self.orient([image]))[0]

    # ---- scoring -----------------------------------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        """The text as compared: whitespace normalized (or dropped), case kept unless case_sensitive=False."""
        return normalize_text(text, case_sensitive=self.case_sensitive, ignore_space=self.ignore_space)

    def _same(self, prediction: str, truth: str) -> bool:
        return self.normalize(prediction) == self.normalize(truth)

    def _distance(self, prediction: str, truth: str) -> int:
        return char_distance(self.normalize(prediction), self.normalize(truth))

    def score(self, predictions: list[Any], samples: list[Sample], dataset: Dataset) -> Metrics:
        if self.mode == "e2e" or (self.mode == "auto" and dataset.kind == "icdar"):
            return self._score_e2e(predictions, samples)
        correct, dist, length = [], [], []
        for prediction, sample in zip(predictions, samples, strict=True):
            if not isinstance(sample.target, str):
                raise DatasetError(f"task 'ocr' on text lines needs a transcription for {sample.path}; load the "
                                   f"data as kind 'ocr_lines' (labels.txt of `path<TAB>text`) or icdar")
            truth = sample.target
            correct.append(float(self._same(prediction["text"], truth)))
            dist.append(self._distance(prediction["text"], truth))
            length.append(len(self.normalize(truth)))
        n = len(correct)
        value = float(np.mean(correct)) if n else 0.0
        low, high = ratio_ci(correct, [1.0] * n)
        return Metrics(self.name, self.metric, value, low, high, n_images=n,
                       details={"cer": float(sum(dist) / max(sum(length), 1)), "lines": float(n)},
                       per_image=[[c] for c in correct], statistic="mean")

    def _score_e2e(self, predictions: list[Any], samples: list[Sample]) -> Metrics:
        correct, n_gt, tps, n_pred, dist, length = [], [], [], [], 0, 0
        for prediction, sample in zip(predictions, samples, strict=True):
            gt = text_boxes(sample.target, sample, self.name)
            if "lines" not in prediction:
                raise UsageError("these OCR predictions were made on line crops but the dataset is ICDAR pages; "
                                 "call task.bind(dataset) before predicting (evaluate() does)")
            lines = prediction["lines"]
            match = match_text_boxes([g.points for g in gt], [g.ignore for g in gt], [ln["box"] for ln in lines],
                                     iou_thresh=self.iou_thresh)
            matched = dict(match.pairs)
            good = 0
            for i, box in enumerate(gt):
                if box.ignore:
                    continue
                text = lines[matched[i]]["text"] if i in matched else ""
                good += int(i in matched and self._same(text, box.text))
                dist += self._distance(text, box.text)
                length += len(self.normalize(box.text))
            correct.append(good)
            n_gt.append(match.n_gt)
            tps.append(match.tp)
            n_pred.append(match.n_pred)
        total = sum(n_gt)
        value = sum(correct) / total if total else 0.0
        low, high = ratio_ci(correct, n_gt)
        precision, recall, hmean = prf(sum(tps), sum(n_pred), total)
        return Metrics(self.name, self.metric, float(value), low, high, n_images=len(samples),
                       details={"cer": float(dist / max(length, 1)), "gt_lines": float(total),
                                "correct_lines": float(sum(correct)),
                                "e2e_precision": float(sum(correct) / sum(n_pred)) if sum(n_pred) else 0.0,
                                "det_hmean": float(hmean), "det_precision": float(precision),
                                "det_recall": float(recall)},
                       per_image=[[float(c), float(g)] for c, g in zip(correct, n_gt, strict=True)],
                       statistic="ratio")
