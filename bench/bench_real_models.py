"""Real third-party models through the whole search, then checked by code that is not the search's: for each model
`cvtune.optimize(model, photos, task="fidelity", max_drop=1%, time=3m)` with the default preset, then the exported
best/deploy.json (loaded with `cvtune.load_deployed`) against the original model run in a plain session (ONNX
Runtime, LiteRT for .tflite where installed, else OpenCV), on held-out photos the search never saw.

The independent re-measure (`remeasure`) is written here: each model's real preprocessing (the authors' pipeline:
Ultralytics LetterBox, MediaPipe's ImageToTensor settings) for the original, the deploy.json's fields for the
candidate, both implemented with plain OpenCV/numpy; boxes and masks mapped back to the photo by this file's own
geometry; YOLOv8 heads decoded here, MediaPipe's SSD anchors through cvtune's decoder registry called directly (not
the search's metric path). Agreement: detection F1 at IoU 0.5 against the original's detections (class-aware, a
score >= conf/2 on the other side still counts, so a box scored 0.26 vs 0.24 is not a miss), mask mIoU
(background, person) for the segmenter, top-1 agreement for a classifier head. Speed: the original in the search's
baseline runtime (a plain session, its defaults) and the deployed session, timed in interleaved rounds with
cvtune.timing.time_session; the median of the per-round p50 ratios. A .tflite model's LiteRT run (the runtime it
was made for, where installed) is timed in the same rounds and printed as a finding, not as the baseline.

Held-out photos: the search gets cvtune.testing.photos.photo_variants (each photo, mirrored, four corner crops);
the re-measure gets other views of the same eight scikit-image photos (center crops, halves, a darker copy). Only
eight real photos ship with the test assets, so these are new crops, not new scenes.

    python bench/bench_real_models.py --time 3m --models nudenet-320n,selfie-segmentation --keep /tmp/real
    make bench   # all benches; this one reads CVTUNE_BENCH_REAL_TIME / _MODELS / _BUDGET / _KEEP

Prints one table and a line per finding; a row that claims "within budget" but re-measures outside is flagged.
Exits non-zero only when something errored (a model's search or re-measure crashed), not on findings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REAL_MODELS_DIR = Path(os.environ.get("CVTUNE_REAL_MODELS") or Path(__file__).resolve().parents[1] / ".cache"
                       / "real-models")
CONF = 0.25  # detection score threshold (cvtune's fidelity default; the other side may score down to CONF / 2)
NMS_IOU = 0.45
MATCH_IOU = 0.5
MASK_THRESHOLD = 0.5


class BenchError(Exception):
    """Something this bench cannot check (a preprocessing mode it does not implement, an unknown output layout)."""


# ---- preprocessing, written out here ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pre:
    """How an image becomes a tensor: fixed (H, W), stretch or letterbox (centred, `pad` border), x * scale, then
    (x - mean) / std, RGB or BGR, NCHW or NHWC, float32."""

    size: tuple[int, int]
    resize: str = "stretch"
    pad: float = 0.0
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    rgb: bool = True
    layout: str = "NCHW"

    @classmethod
    def from_deploy(cls, deploy: dict[str, Any]) -> Pre:
        """What a deploy.json says the deployed model is fed (its input_size overrides the spec's size)."""
        p = deploy.get("preprocessing")
        if not isinstance(p, dict):
            raise BenchError(f"deploy.json has no preprocessing dict ({p!r}); the bench needs it written out")
        size = deploy.get("input_size") or p.get("input_size")
        if not size or p.get("resize") not in ("stretch", "letterbox") or p.get("dtype", "float32") != "float32" \
                or p.get("channels") not in ("rgb", "bgr"):
            raise BenchError(f"the bench implements fixed-size stretch/letterbox float32 RGB/BGR inputs only; "
                             f"deploy.json says {p.get('spec') or p}")
        return cls((int(size[0]), int(size[1])), p["resize"], float(p.get("pad", 114.0)), float(p["scale"]),
                   tuple(p["mean"]), tuple(p["std"]), p["channels"] == "rgb", str(p.get("layout", "NCHW")).upper())

    def same_pixels(self, other: Pre) -> bool:
        """The same resize mode, border and per-channel affine map from pixels (size and layout may differ)."""
        def affine(p: Pre) -> np.ndarray:
            std = np.asarray(p.std, np.float64)
            return np.stack([np.broadcast_to(p.scale / std, 3), np.broadcast_to(-np.asarray(p.mean) / std, 3)])

        return (self.resize, self.rgb) == (other.resize, other.rgb) and \
            (self.resize != "letterbox" or self.pad == other.pad) and np.allclose(affine(self), affine(other))

    def tensor(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """A BGR uint8 photo -> (1, ...) float32 tensor and (sx, sy, ox, oy): input = photo * s + o per axis."""
        h, w = image.shape[:2]
        height, width = self.size
        if self.resize == "letterbox":  # Ultralytics LetterBox / MediaPipe keep_aspect_ratio: centred, padded
            r = min(height / h, width / w)
            nw, nh = round(w * r), round(h * r)
            resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
            dh, dw = (height - nh) / 2, (width - nw) / 2
            top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
            out = cv2.copyMakeBorder(resized, top, height - nh - top, left, width - nw - left, cv2.BORDER_CONSTANT,
                                     value=(self.pad,) * 3)
            geometry = (r, r, float(left), float(top))
        else:
            out = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            geometry = (width / w, height / h, 0.0, 0.0)
        x = (out[..., ::-1] if self.rgb else out).astype(np.float32) * np.float32(self.scale)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        x = x[None] if self.layout == "NHWC" else x.transpose(2, 0, 1)[None]
        return np.ascontiguousarray(x, dtype=np.float32), geometry


def boxes_to_photo(boxes: np.ndarray, geometry: tuple[float, float, float, float], shape: tuple[int, ...]
                   ) -> np.ndarray:
    sx, sy, ox, oy = geometry
    out = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    out[:, [0, 2]] = np.clip((out[:, [0, 2]] - ox) / sx, 0, shape[1])
    out[:, [1, 3]] = np.clip((out[:, [1, 3]] - oy) / sy, 0, shape[0])
    return out


def map_to_photo(prob: np.ndarray, geometry: tuple[float, float, float, float], shape: tuple[int, ...]
                 ) -> np.ndarray:
    """An (H, W) map over the input -> (h, w) over the photo: the letterbox border cut off, then resized."""
    sx, sy, ox, oy = geometry
    h, w = shape[:2]
    y0, x0 = int(round(oy)), int(round(ox))
    y1, x1 = int(round(oy + h * sy)), int(round(ox + w * sx))
    inner = np.ascontiguousarray(prob[max(y0, 0):max(y1, y0 + 1), max(x0, 0):max(x1, x0 + 1)], np.float32)
    return cv2.resize(inner, (w, h), interpolation=cv2.INTER_LINEAR)


# ---- decoding ---------------------------------------------------------------------------------------------------
def nms(rows: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Class-aware NMS over (n, 6) rows x1 y1 x2 y2 score class, best first."""
    if not len(rows):
        return rows
    xywh = np.concatenate([rows[:, :2], rows[:, 2:4] - rows[:, :2]], axis=1)
    keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), rows[:, 4].tolist(), rows[:, 5].astype(int).tolist(), 0.0, iou)
    rows = rows[np.asarray(keep, np.int64).reshape(-1)]
    return rows[np.argsort(-rows[:, 4], kind="stable")]


def decode_yolov8(outputs: list[np.ndarray], size: tuple[int, int], low: float) -> np.ndarray:
    """YOLOv8 head (1, 4 + C, A): cx cy w h in input pixels, then C sigmoid class scores -> (n, 6) rows."""
    (head,) = [o for o in outputs if o.ndim == 3] or [None]
    if head is None:
        raise BenchError(f"not a YOLOv8 head: output shapes {[o.shape for o in outputs]}")
    a = head[0].T if head.shape[1] < head.shape[2] else head[0]
    scores, classes = a[:, 4:].max(axis=1), a[:, 4:].argmax(axis=1)
    keep = scores >= low
    cx, cy, bw, bh = a[keep, :4].T
    rows = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, scores[keep], classes[keep]], axis=1)
    return nms(rows.astype(np.float64))


def decode_blazeface(outputs: list[np.ndarray], size: tuple[int, int], low: float) -> np.ndarray:
    """MediaPipe SSD anchors, through cvtune's decoder registry directly (anchors are not worth re-deriving)."""
    from cvtune.tasks.decoders import make_decoder

    found = make_decoder("blazeface").decode([np.asarray(o) for o in outputs], size, conf_thresh=low,
                                            iou_thresh=NMS_IOU)
    return np.concatenate([found.boxes, found.scores[:, None], found.classes[:, None]], axis=1).astype(np.float64)


DECODERS: dict[str, Callable[[list[np.ndarray], tuple[int, int], float], np.ndarray]] = {
    "yolov8": decode_yolov8, "blazeface": decode_blazeface}


def prob_map(outputs: list[np.ndarray]) -> np.ndarray:
    """The one segmentation output as an (H, W) foreground probability (one channel: the value; two: softmax's
    foreground), whichever of NHWC / NCHW the runtime returns."""
    (out,) = outputs
    x = np.asarray(out, np.float32)[0]
    if x.ndim == 2:
        return x
    channels_last = x.shape[-1] <= 2 and x.shape[0] > 2
    x = x if channels_last else np.moveaxis(x, 0, -1)
    if x.shape[-1] == 1:
        return x[..., 0]
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True))[..., 1]


# ---- comparing ----------------------------------------------------------------------------------------------------
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda r: np.prod(np.clip(r[:, 2:4] - r[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def matched(queries: np.ndarray, pool: np.ndarray, iou: float = MATCH_IOU) -> int:
    """One-to-one greedy matching (highest IoU first) of same-class boxes at IoU >= iou: how many queries match."""
    if not len(queries) or not len(pool):
        return 0
    m = iou_matrix(queries, pool) * (queries[:, None, 5] == pool[None, :, 5])
    pairs = sorted(((m[i, j], i, j) for i, j in zip(*np.nonzero(m >= iou), strict=True)), reverse=True)
    used_q, used_p = set(), set()
    for _, i, j in pairs:
        if i not in used_q and j not in used_p:
            used_q.add(i)
            used_p.add(j)
    return len(used_q)


def detection_counts(candidate: np.ndarray, reference: np.ndarray, conf: float = CONF) -> tuple[int, int, int, int]:
    """(candidate boxes >= conf matching a reference box >= conf/2, candidate boxes >= conf, reference boxes >= conf
    found by a candidate box >= conf/2, reference boxes >= conf)."""
    labels, ref_low = reference[reference[:, 4] >= conf], reference[reference[:, 4] >= conf / 2]
    kept, cand_low = candidate[candidate[:, 4] >= conf], candidate[candidate[:, 4] >= conf / 2]
    return matched(kept, ref_low), len(kept), matched(labels, cand_low), len(labels)


def f1(right: int, n_pred: int, found: int, n_ref: int) -> float:
    if n_pred == 0 and n_ref == 0:
        return 1.0
    precision = right / n_pred if n_pred else 0.0
    recall = found / n_ref if n_ref else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def raw_similarity(candidate: list[np.ndarray], reference: list[np.ndarray], floor: float = 1e-2) -> float:
    """Mean over outputs of 1 - rms(c - r) / max(rms(r), floor), clipped at 0 (the search's raw metric's form)."""
    sims = []
    for c, r in zip(candidate, reference, strict=True):
        c, r = np.asarray(c, np.float64).ravel(), np.asarray(r, np.float64).ravel()
        err = np.sqrt(np.mean((c - r) ** 2))
        sims.append(max(0.0, 1.0 - err / max(float(np.sqrt(np.mean(r ** 2))), floor)))
    return float(np.mean(sims))


# ---- sessions -----------------------------------------------------------------------------------------------------
class PlainSession:
    """`run(x) -> list of outputs` over a runtime's own API, no cvtune in between. `layout`: the tensor layout it
    takes when that is not the model file's own (None)."""

    def __init__(self, label: str, run: Callable[[np.ndarray], list[np.ndarray]], layout: str | None = None):
        self.label, self._run, self.layout = label, run, layout

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o) for o in self._run(x)]

    def close(self) -> None:
        pass


def ort_session(path: Path, threads: int | None = None, layout: str | None = None) -> PlainSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return PlainSession("onnxruntime (defaults)", lambda x: sess.run(None, {name: x}), layout)


def litert_session(path: Path) -> PlainSession | None:
    """The TFLite interpreter MediaPipe runs (XNNPACK), where ai-edge-litert or tflite-runtime is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError:
            return None
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    index = interp.get_input_details()[0]["index"]
    outputs = [d["index"] for d in interp.get_output_details()]

    def run(x: np.ndarray) -> list[np.ndarray]:
        interp.set_tensor(index, x)
        interp.invoke()
        return [interp.get_tensor(i).copy() for i in outputs]

    return PlainSession("LiteRT", run)


def opencv_session(path: Path, engine: str = "auto", threads: int | None = None) -> PlainSession:
    from cvtune.runtimes.opencv import engine_constants

    constants = engine_constants(cv2.dnn)  # 5.0: auto/new/classic; 5.1: auto/new (no classic); 4.x: none
    if engine not in constants:
        engine = "auto"
    kwargs = {"engine": constants[engine]} if engine != "auto" else {}
    net = cv2.dnn.readNet(str(path), **kwargs)
    names = net.getUnconnectedOutLayersNames()
    if threads:
        cv2.setNumThreads(threads)

    def run(x: np.ndarray) -> list[np.ndarray]:
        net.setInput(x)
        return list(net.forward(names))

    # OpenCV's TFLite importer turns the graph NCHW: it takes NCHW blobs although the file declares NHWC
    layout = "NCHW" if path.suffix.lower() == ".tflite" else None
    return PlainSession(f"OpenCV {engine} engine", run, layout)


def reference_session(model: Path) -> PlainSession:
    """The original for accuracy: ONNX Runtime for .onnx; for .tflite LiteRT (the runtime the model was made for)
    where installed, else OpenCV's classic engine (the one that returns every output of MediaPipe's detectors)."""
    if model.suffix.lower() == ".onnx":
        return ort_session(model)
    from cvtune.runtimes.opencv import reference_engine

    return litert_session(model) or opencv_session(model, reference_engine())


def baseline_session(model: Path, runtime: dict[str, Any]) -> PlainSession:
    """The original the way the search's baseline ran it (the model as given, a runtime's defaults), opened with
    that runtime's own API. A .tflite on ONNX Runtime is cvtune's ONNX conversion of it (what 'as given' means
    there)."""
    name = runtime.get("runtime")
    if name == "opencv":
        return opencv_session(model, str(runtime.get("engine") or "auto"), runtime.get("threads"))
    if name == "ort":
        path = model
        if model.suffix.lower() != ".onnx":
            from cvtune.convert import ensure_onnx

            return ort_session(ensure_onnx(model), runtime.get("threads"), "NCHW")  # cvtune converts to NCHW
        return ort_session(path, runtime.get("threads"))
    if name == "litert":  # a .tflite's own runtime: the search's baseline for TFLite files
        native = litert_session(model)
        if native is None:
            raise BenchError("the search's baseline was LiteRT, which does not import here")
        return native
    if name == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(str(model), "CPU")
        return PlainSession("OpenVINO (defaults)", lambda x: list(compiled(x).values()))
    raise BenchError(f"the bench has no plain session for runtime {name!r}")


def as_layout(x: np.ndarray, layout: str | None, given: str) -> np.ndarray:
    """`x` made in layout `given`, for a session that takes `layout` (None: as given)."""
    if layout is None or layout == given:
        return x
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if given == "NHWC" else x.transpose(0, 2, 3, 1))


# ---- the re-measure -------------------------------------------------------------------------------------------------
@dataclass
class Agreement:
    metric: str  # det_f1 | mask_miou | top1_agreement
    value: float
    images: int
    detail: str = ""


def remeasure(kind: str, images: Sequence[np.ndarray], *, reference: PlainSession, reference_pre: Pre,
              candidate: Any, candidate_pre: Pre, decoder: str = "yolov8", conf: float = CONF,
              output: int = -1) -> Agreement:
    """The candidate session (anything with run(x) -> outputs; e.g. a cvtune.Deployed's open()) against the
    reference session on `images` (BGR uint8 photos), each fed its own preprocessing, decoded here and compared on
    the photo. kind: detect (F1 at IoU 0.5, `decoder` yolov8 or blazeface), segment (mIoU of background / person
    masks at 0.5), classify (top-1 of output `output`)."""
    if kind not in ("detect", "segment", "classify"):
        raise BenchError(f"unknown kind {kind!r}")
    counts = np.zeros(4, np.int64)
    inter, union = np.zeros(2), np.zeros(2)
    agree, worst, similarity = 0, 0.0, []
    for image in images:
        results = []
        for session, pre in ((reference, reference_pre), (candidate, candidate_pre)):
            x, geometry = pre.tensor(image)
            outputs = [np.asarray(o) for o in session.run(as_layout(x, getattr(session, "layout", None), pre.layout))]
            if kind == "detect":
                rows = DECODERS[decoder](outputs, pre.size, conf / 2)
                rows[:, :4] = boxes_to_photo(rows[:, :4], geometry, image.shape)
                results.append(rows)
            elif kind == "segment":
                results.append(map_to_photo(prob_map(outputs), geometry, image.shape) >= MASK_THRESHOLD)
            else:
                results.append((int(np.argmax(outputs[output].reshape(-1))), outputs))
        ref, cand = results
        if kind == "detect":
            counts += detection_counts(cand, ref, conf)
        elif kind == "segment":
            for c, (r, k) in enumerate(((~ref, ~cand), (ref, cand))):
                inter[c] += np.count_nonzero(r & k)
                union[c] += np.count_nonzero(r | k)
        else:
            agree += int(ref[0] == cand[0])
            if len(ref[1]) == len(cand[1]) and all(r.shape == c.shape for r, c in zip(ref[1], cand[1], strict=True)):
                worst = max([worst, *(float(np.abs(r - c).max()) for r, c in zip(ref[1], cand[1], strict=True))])
                similarity.append(raw_similarity(cand[1], ref[1]))
    n = len(images)
    if kind == "detect":
        right, n_pred, found, n_ref = (int(v) for v in counts)
        return Agreement("det_f1", f1(right, n_pred, found, n_ref), n,
                         f"{n_ref} reference boxes, {found} found; {n_pred} candidate boxes, {right} right")
    if kind == "segment":
        ious = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        return Agreement("mask_miou", float(ious.mean()), n, f"person IoU {ious[1]:.4f}")
    return Agreement("top1_agreement", agree / n if n else 1.0, n,
                     f"{agree}/{n} same top-1; every output: largest difference {worst:.3g}, raw similarity "
                     f"{np.mean(similarity) if similarity else float('nan'):.4f} (1 - rms error / rms, per output)")


def interleaved_speedup(baseline: PlainSession, baseline_x: np.ndarray, candidate: Any, candidate_x: np.ndarray,
                        *, rounds: int, extra: dict[str, tuple[Any, np.ndarray]] | None = None,
                        min_time_s: float = 0.5) -> dict[str, Any]:
    """Time the baseline and the candidate (and `extra` sessions) in `rounds` interleaved rounds (the order turns
    each round); per round each one's p50; returns the median over rounds of baseline p50 / candidate p50 (and of
    each extra's p50 / candidate p50) with the p50s."""
    from cvtune.timing import latency_stats, time_session

    sessions = {"baseline": (baseline, baseline_x), "candidate": (candidate, candidate_x), **(extra or {})}
    p50s: dict[str, list[float]] = {name: [] for name in sessions}
    names = list(sessions)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            session, x = sessions[name]
            times = time_session(session, [x], warmup=2, min_runs=5, min_time_s=min_time_s, max_runs=500)
            p50s[name].append(latency_stats(times, 1).p50_ms)
    cand = np.asarray(p50s["candidate"])
    ratios = {name: float(np.median(np.asarray(v) / cand)) for name, v in p50s.items() if name != "candidate"}
    return {"speedup": ratios.pop("baseline"), "vs": ratios,
            "p50_ms": {name: float(np.median(v)) for name, v in p50s.items()}}


# ---- the cases ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str  # key in cvtune.testing.real_models.ASSETS
    kind: str  # detect | segment | classify
    truth: Pre  # the model's real preprocessing, from its authors' pipeline (written out here, not recognised)
    truth_source: str
    decoder: str = ""
    preprocess: dict[str, Any] | None = None  # what a user passes to optimize; None: what cvtune recognises
    task_options: dict[str, Any] = field(default_factory=dict)
    output: int = -1  # classify: which output holds the class scores


RGB01 = dict(scale=1 / 255, rgb=True)
CASES: tuple[Case, ...] = (
    Case("nudenet-320n", "detect", Pre((320, 320), "letterbox", 114, **RGB01), "Ultralytics LetterBox",
         decoder="yolov8"),
    Case("selfie-segmentation", "segment", Pre((256, 256), "stretch", layout="NHWC", **RGB01),
         "MediaPipe selfie_segmentation_cpu: stretch, [0, 1]", task_options={"kind": "segment"}),
    # Nothing in the palm file says its normalization: the user gives MediaPipe's (letterbox, [0, 1]).
    Case("palm-detection-lite", "detect", Pre((192, 192), "letterbox", 0, layout="NHWC", **RGB01),
         "MediaPipe palm_detection_cpu: letterbox, [0, 1]", decoder="blazeface",
         preprocess=dict(input_size=(192, 192), resize="letterbox", pad=0, scale=1 / 255, rgb=True, layout="NHWC"),
         task_options={"decoder": "blazeface"}),
    # The file's TFLite metadata gives [-1, 1] but not the resize; MediaPipe's graph letterboxes: the user says so.
    Case("face-detection-short-range", "detect",
         Pre((128, 128), "letterbox", 0, 1 / 127.5, (1.0, 1.0, 1.0), layout="NHWC"),
         "MediaPipe face_detection_short_range: letterbox, [-1, 1]", decoder="blazeface",
         preprocess=dict(input_size=(128, 128), resize="letterbox", pad=0, scale=1 / 127.5, mean=(1.0, 1.0, 1.0),
                         rgb=True, layout="NHWC"),
         task_options={"decoder": "blazeface"}),
    # MTCNN's O-Net: the face / not-face head (softmax, output 2) is a classifier; the search compares raw outputs.
    Case("mtcnn-onet", "classify", Pre((48, 48), "stretch", 0, 1 / 128, (127.5 / 128,) * 3, layout="NHWC"),
         "ipazc/mtcnn: (x - 127.5) / 128, RGB", output=2,
         preprocess=dict(input_size=(48, 48), scale=1 / 128, mean=(127.5 / 128,) * 3, rgb=True, layout="NHWC")),
)
DEFAULT_MODELS = ("nudenet-320n", "selfie-segmentation", "palm-detection-lite", "face-detection-short-range",
                  "mtcnn-onet")


def center_crop(image: np.ndarray, fraction: float) -> np.ndarray:
    h, w = image.shape[:2]
    ch, cw = int(h * fraction), int(w * fraction)
    return image[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]


def heldout_photos(photos: Sequence[Path], folder: Path) -> list[Path]:
    """Views of each photo that photo_variants does not make: 70% and 85% (mirrored) center crops, left and top
    halves, and the whole photo darkened (x0.6), as PNGs in `folder`."""
    from cvtune.data.base import read_image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for photo in photos:
        image = read_image(Path(photo))
        if image is None:
            continue
        if image.ndim == 2 or image.shape[2] == 1:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        h, w = image.shape[:2]
        views = {"center70": center_crop(image, 0.7), "center85_mirror": center_crop(image, 0.85)[:, ::-1],
                 "left": image[:, :w // 2], "top": image[:h // 2],
                 "dark": (image.astype(np.float32) * 0.6).astype(np.uint8)}
        for suffix, pixels in views.items():
            path = folder / f"{Path(photo).stem}_{suffix}.png"
            cv2.imwrite(str(path), np.ascontiguousarray(pixels))
            out.append(path)
    return out


# ---- one model ----------------------------------------------------------------------------------------------------
@dataclass
class Row:
    case: Case
    error: str = ""
    source: str = ""
    chosen: str = ""
    improved: bool = False
    claimed_speedup: float | None = None
    claimed_metric: str = ""
    claimed_drop: float | None = None
    claimed_within: bool | None = None
    claim_check: str = ""  # the search's own re-measure through deploy.json (result.claim)
    speed: dict[str, Any] = field(default_factory=dict)
    agreement: Agreement | None = None
    drop: float | None = None
    holds: bool | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.case.name, "error": self.error, "preprocessing_source": self.source,
                "chosen": self.chosen, "improved": self.improved, "claimed_speedup": self.claimed_speedup,
                "claimed_metric": self.claimed_metric, "claimed_drop": self.claimed_drop,
                "claimed_within": self.claimed_within, "claim_check": self.claim_check, "speed": self.speed,
                "agreement": vars(self.agreement) if self.agreement else None, "remeasured_drop": self.drop,
                "holds": self.holds, "notes": self.notes}


def run_case(case: Case, model: Path, search_photos: Path, heldout: list[Path], out: Path, *, budget: str,
             seconds: float, rounds: int) -> Row:
    import cvtune
    from cvtune.budget import Budget

    row = Row(case)
    started = time.perf_counter()
    try:
        result = cvtune.optimize(model, search_photos, task="fidelity", preprocess=case.preprocess, max_drop=budget,
                                 time=seconds, out=out, task_options=dict(case.task_options) or None)
    except Exception as exc:  # noqa: BLE001 - a crashed search is a row, not the end of the bench
        row.error = f"search failed: {type(exc).__name__}: {str(exc)[:300]}"
        row.notes.append(traceback.format_exc(limit=3).strip().splitlines()[-1])
        return row
    row.notes.append(f"search: {time.perf_counter() - started:.0f} s, {result.n_trials} trials over "
                     f"{result.n_candidates} candidates ({result.n_failed} failed/ruled out)"
                     + (f", stopped early: {result.stopped_early}" if result.stopped_early else "")
                     + f"; baseline {result.baseline.label if result.baseline else '?'}")
    row.notes.extend(f"search note: {n}" for n in result.notes)
    base_metric = result.baseline.metric if result.baseline else None
    if base_metric is not None and not Budget.parse(budget).allows(1.0, base_metric.value):
        row.notes.append(f"NOTE: the model as given in the baseline runtime ({result.baseline.label}) itself agrees "
                         f"with the original only at {base_metric.name} {base_metric.value:.4f}; the budget's drop "
                         f"is counted from there, not from the original")
    best = result.best
    row.improved = bool(result.improved)
    row.chosen = (best.label if best else "none") if row.improved else \
        f"the model as given ({best.label.split(' | ')[0] if best else '?'})"
    row.claimed_speedup = (result.speedup or 1.0) if row.improved else 1.0
    row.claimed_drop = result.drop
    if best is not None and best.metric is not None:
        row.claimed_metric = f"{best.metric.name} {best.metric.value:.4f} on {best.metric.n_images} img"
    row.claimed_within = bool(result.met_budget)
    claim = result.claim
    if claim is None:
        row.claim_check = "not run (the model as given)"
    else:
        row.claim_check = "holds" if claim.get("holds") else \
            f"FAILED ({claim.get('error') or 'remeasured ' + str(claim.get('remeasured'))})"
    deploy_path = Path(out) / "best" / "deploy.json"
    try:
        deploy = json.loads(deploy_path.read_text())
        row.source = str(deploy.get("preprocessing_source") or "?")
        deployed = cvtune.load_deployed(deploy_path)
        candidate = deployed.open()
        reference = reference_session(model)
        candidate_pre = Pre.from_deploy(deploy)
        if not case.truth.same_pixels(candidate_pre):
            row.notes.append(f"deploy.json's preprocessing {deploy['preprocessing'].get('spec')} differs from the "
                             f"model's real one ({case.truth_source})")
        images = [img for img in (cv2.imread(str(p)) for p in heldout) if img is not None]
        row.agreement = remeasure(case.kind, images, reference=reference, reference_pre=case.truth,
                                  candidate=candidate, candidate_pre=candidate_pre, decoder=case.decoder,
                                  output=case.output)
        row.agreement.detail += f"; reference: {reference.label}"
        b = Budget.parse(budget)
        row.drop = b.drop(1.0, row.agreement.value)  # the original against itself agrees exactly (1.0)
        row.holds = b.allows(1.0, row.agreement.value)
        # speed: the original as the search's baseline ran it, plain, against the deployed session
        runtime = (result.baseline.candidate.runtime.to_dict() if result.baseline else {"runtime": "ort"})
        base = baseline_session(model, runtime)
        photo = images[0]
        x_base = as_layout(case.truth.tensor(photo)[0], base.layout, case.truth.layout)
        x_cand = candidate_pre.tensor(photo)[0]
        extra = {}
        if model.suffix.lower() == ".tflite" and runtime.get("runtime") != "litert":
            native = litert_session(model)
            if native is not None:
                extra["LiteRT"] = (native, case.truth.tensor(photo)[0])
        row.speed = interleaved_speedup(base, x_base, candidate, x_cand, rounds=rounds, extra=extra)
        row.speed["baseline"] = base.label
        candidate.close()
        deployed.close()
    except Exception as exc:  # noqa: BLE001 - report it in the row
        row.error = f"re-measure failed: {type(exc).__name__}: {str(exc)[:300]}"
        row.notes.append("".join(traceback.format_exception_only(exc)).strip()[:300])
    return row


# ---- the table ------------------------------------------------------------------------------------------------------
def fmt_speed(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_table(rows: list[Row], budget: str, seconds: float, out: Path | None) -> list[str]:
    from rich.markup import escape
    from rich.table import Table

    from cvtune.console import console

    table = Table(title=f"bench_real_models: fidelity within {budget}, {seconds:.0f} s search each, default preset; "
                        f"re-measured on held-out photos by the bench's own decoding")
    for col in HEADER:
        table.add_column(col)
    flags = []
    for row in rows:
        table.add_row(*(escape(c) for c in cells(row)))
        if row.claimed_within and row.holds is False:
            flags.append(f"FLAG {row.case.name}: claims within {budget} ({row.chosen}) but re-measures "
                         f"{row.agreement.metric} {row.agreement.value:.4f} ({row.drop:+.2%}) on held-out photos")
    console.print(table)
    for row in rows:
        lines = list(row.notes)
        if row.agreement is not None:
            lines.append(f"re-measure: {row.agreement.detail}")
        if row.speed:
            p50 = ", ".join(f"{k} {v:.1f} ms" for k, v in row.speed["p50_ms"].items())
            vs = "".join(f"; candidate vs {k}: {v:.2f}x" for k, v in row.speed["vs"].items())
            lines.append(f"speed vs {row.speed['baseline']} (median p50s: {p50}){vs}")
        console.print(f"[bold]{escape(row.case.name)}[/bold]")
        for line in lines:
            console.print(f"  {escape(line)}", soft_wrap=True)
    for flag in flags:
        console.print(f"[bold red]{escape(flag)}[/bold red]", soft_wrap=True)
    if not flags:
        console.print("no row claims within budget while re-measuring outside it")
    if out is not None:
        (out / "bench_real_models.json").write_text(json.dumps([r.to_dict() for r in rows], indent=2, default=str))
        (out / "bench_real_models.md").write_text(markdown(rows))
    return flags


def cells(row: Row) -> list[str]:
    """The table's cells for one row (plain text)."""
    if row.error and row.agreement is None and not row.chosen:
        return [row.case.name, row.source or "-", "FAILED", "-", "-", "-", "-", "-", row.error[:160]]
    claimed_drop = "-" if row.claimed_drop is None else f"{row.claimed_drop:+.2%}"
    if row.claimed_metric:
        claimed_drop += f" ({row.claimed_metric})"
    agreement = "-" if row.agreement is None else (f"{row.agreement.metric} {row.agreement.value:.4f} on "
                                                   f"{row.agreement.images} img")
    within = "-" if row.claimed_within is None else ("yes" if row.claimed_within else "no")
    within += f"; claim check: {row.claim_check}" if row.claim_check else ""
    holds = ("ERROR: " + row.error[:100]) if row.error else ("yes" if row.holds else f"NO ({row.drop:+.2%} drop)")
    return [row.case.name, row.source, row.chosen, fmt_speed(row.claimed_speedup),
            fmt_speed(row.speed.get("speedup")), claimed_drop, agreement, within, holds]


HEADER = ("model", "preprocessing source", "chosen", "claimed speed-up", "re-measured speed-up", "claimed drop",
          "re-measured agreement", "within budget? (claimed)", "holds? (re-measured)")


def markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from cvtune.budget import parse_duration
    from cvtune.testing.photos import photo_variants
    from cvtune.testing.real_models import load_manifest, missing_reason

    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time", default=env("CVTUNE_BENCH_REAL_TIME", "3m"), help="search time per model")
    parser.add_argument("--models", default=env("CVTUNE_BENCH_REAL_MODELS", ",".join(DEFAULT_MODELS)))
    parser.add_argument("--budget", default=env("CVTUNE_BENCH_REAL_BUDGET", "1%"))
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--keep", default=env("CVTUNE_BENCH_REAL_KEEP"), help="keep the searches' folders here")
    args = parser.parse_args([] if argv is None else argv)  # from run_all: its argv is not ours
    manifest = load_manifest(REAL_MODELS_DIR)
    if manifest is None:
        print(f"skipped: {missing_reason(REAL_MODELS_DIR)}")
        return 0
    cases = {c.name: c for c in CASES}
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in cases]
    if unknown:
        raise SystemExit(f"unknown model {', '.join(unknown)}; choose from {', '.join(cases)}")
    seconds = parse_duration(args.time)
    models = {name: REAL_MODELS_DIR / entry["path"] for name, entry in manifest["models"].items()}
    photos = sorted(REAL_MODELS_DIR / entry["path"] for entry in manifest["photos"].values())
    with tempfile.TemporaryDirectory(prefix="cvtune-bench-real-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        search_photos = photo_variants(photos, root / "photos")
        heldout = heldout_photos(photos, root / "heldout")
        print(f"{len(list(search_photos.glob('*.png')))} search photos, {len(heldout)} held-out photos; "
              f"{seconds:.0f} s per search", flush=True)
        rows = []
        for name in names:
            print(f"--- {name}", flush=True)
            rows.append(run_case(cases[name], models[name], search_photos, heldout, root / name, budget=args.budget,
                                 seconds=seconds, rounds=args.rounds))
        print_table(rows, args.budget, seconds, root if args.keep else None)
    errors = [r for r in rows if r.error]
    if errors and argv is None:
        raise RuntimeError(f"{len(errors)} model(s) errored: " + "; ".join(f"{r.case.name}: {r.error}"
                                                                        for r in errors))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
