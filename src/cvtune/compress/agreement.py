"""Task-level agreement of a pruned model with the original on the same inputs, without labels: what sensitivity
analysis measures per cut. The reference's own decoded predictions are the ground truth, so the original scores
exactly 1.0 against itself and a drop is what the cut changed where the task can see it.

AGREEMENT maps a task name to a function (reference outputs, candidate outputs; one list of arrays per image)
-> Agreement (value in [0, 1] with a bootstrap 95% CI). Tasks without an entry use `cosine` (raw outputs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..tasks.metrics import hmean_ci, mean_ci, prf

__all__ = ["Agreement", "AGREEMENT", "agreement_for", "output_nmse"]

Outputs = Sequence[Sequence[np.ndarray]]  # per image: the model's outputs


@dataclass(frozen=True)
class Agreement:
    """Agreement with the reference (1.0 = the same predictions), its 95% CI and what was compared."""

    value: float
    low: float | None
    high: float | None
    measure: str

    @property
    def half_width(self) -> float:
        """Half the CI's width (0 when there is no CI)."""
        if self.low is None or self.high is None:
            return 0.0
        return max(0.0, (self.high - self.low) / 2)


def output_nmse(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> float:
    """||candidate - reference||^2 / ||reference||^2 over all outputs of one image: small independent errors add
    up, which is what lets per-group curves be summed."""
    num = sum(float(np.sum((np.asarray(c, np.float64) - np.asarray(r, np.float64)) ** 2))
              for r, c in zip(reference, candidate, strict=True))
    den = sum(float(np.sum(np.asarray(r, np.float64) ** 2)) for r in reference)
    return num / den if den > 0 else (0.0 if num == 0 else float("inf"))


def _cosine(reference: Outputs, candidate: Outputs) -> Agreement:
    from ..tasks.fidelity import cosine

    values = [cosine(np.concatenate([np.ravel(o) for o in c]), np.concatenate([np.ravel(o) for o in r]))
              for r, c in zip(reference, candidate, strict=True)]
    low, high = mean_ci(values)
    return Agreement(float(np.mean(values)) if values else 1.0, low, high, "output cosine")


def _counts_agreement(counts: list[tuple[int, int, int]], measure: str) -> Agreement:
    tp, n_pred, n_ref = (np.asarray(v, np.float64) for v in zip(*counts, strict=True)) if counts else ([0], [0], [0])
    value = float(prf(np.sum(tp), np.sum(n_pred), np.sum(n_ref))[2])
    low, high = hmean_ci(tp, n_pred, n_ref)
    return Agreement(value, low, high, measure)


def _textdet(reference: Outputs, candidate: Outputs) -> Agreement:
    """DB boxes of the candidate matched to the reference's boxes (ICDAR IoU 0.5): hmean."""
    from ..tasks.metrics import match_text_boxes
    from ..tasks.textdet import db_boxes

    counts = []
    for r, c in zip(reference, candidate, strict=True):
        prob_r, prob_c = np.asarray(r[0])[0, 0], np.asarray(c[0])[0, 0]
        ref_boxes, _ = db_boxes(prob_r, prob_r.shape)
        cand_boxes, _ = db_boxes(prob_c, prob_c.shape)
        match = match_text_boxes([b.tolist() for b in ref_boxes], [False] * len(ref_boxes),
                                 [b.tolist() for b in cand_boxes])
        counts.append((match.tp, match.n_pred, match.n_gt))
    return _counts_agreement(counts, "text boxes vs the original's (hmean)")


def _collapse(path: np.ndarray) -> tuple[int, ...]:
    """CTC greedy decoding: merge repeats, drop blank 0."""
    out, last = [], -1
    for k in path.tolist():
        if k != last and k != 0:
            out.append(k)
        last = k
    return tuple(out)


def _argmax(reference: Outputs, candidate: Outputs) -> Agreement:
    """Classifier-shaped first output: top-1 agreement for (1, C); CTC-decoded line agreement for (1, T, C)."""
    same = []
    for r, c in zip(reference, candidate, strict=True):
        a, b = np.asarray(r[0]), np.asarray(c[0])
        a, b = a.reshape(a.shape[0], -1) if a.ndim == 4 else a, b.reshape(b.shape[0], -1) if b.ndim == 4 else b
        if a.ndim == 3:
            same.append(float(_collapse(a[0].argmax(-1)) == _collapse(b[0].argmax(-1))))
        else:
            same.append(float(np.array_equal(a.argmax(-1), b.argmax(-1))))
    low, high = mean_ci(same)
    return Agreement(float(np.mean(same)) if same else 1.0, low, high, "top-1 / decoded line agreement")


def _yolo(reference: Outputs, candidate: Outputs) -> Agreement:
    """Detection heads decoded with the registered decoder whose layout the outputs fit (YOLOv8/v5/X, SSD, boxes +
    scores; conf 0.25, NMS 0.45); candidate boxes matched to the reference's by class and IoU >= 0.5: F1. Raises
    when no decoder fits (the caller then compares raw outputs)."""
    from ..tasks.decoders import OutputFacts, choose_decoder, make_decoder

    size = (0, 0)  # not known here: only layouts that need no grid or anchors fit (YOLOv8, boxes + scores)
    facts = OutputFacts(tuple(tuple(np.shape(o)) for o in reference[0]), size)
    decoder = make_decoder(choose_decoder(facts, where="the model being pruned"))
    counts = []
    for r, c in zip(reference, candidate, strict=True):
        dr = decoder.decode([np.asarray(o) for o in r], size, conf_thresh=0.25, iou_thresh=0.45, max_det=300)
        dc = decoder.decode([np.asarray(o) for o in c], size, conf_thresh=0.25, iou_thresh=0.45, max_det=300)
        used: set[int] = set()
        tp = 0
        for box, cls in zip(dc.boxes, dc.classes, strict=True):
            best, best_iou = -1, 0.5
            for j, (ref_box, ref_cls) in enumerate(zip(dr.boxes, dr.classes, strict=True)):
                if j in used or ref_cls != cls:
                    continue
                iou = _box_iou(box, ref_box)
                if iou >= best_iou:
                    best, best_iou = j, iou
            if best >= 0:
                used.add(best)
                tp += 1
        counts.append((tp, len(dc.boxes), len(dr.boxes)))
    return _counts_agreement(counts, "detections vs the original's (F1 at IoU 0.5)")


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


AgreementFn = Callable[[Outputs, Outputs], Agreement]
AGREEMENT: dict[str, AgreementFn] = {
    "textdet": _textdet,
    "classify": _argmax,
    "ocr": _argmax,
    "detect": _yolo,
    "cosine": _cosine,
}


def agreement_for(task: str | None, outputs: Sequence[np.ndarray] | None = None) -> tuple[str, AgreementFn]:
    """The agreement measure for `task` (a registry name); without a known task, the model's first output's
    shape decides: classifier-shaped (1, C) or (1, T, C) -> argmax agreement, anything else -> output cosine."""
    if task in AGREEMENT:
        return task, AGREEMENT[task]
    first = np.asarray(outputs[0]) if outputs else None
    if first is not None and first.ndim in (2, 3) and first.shape[0] == 1 and first.shape[-1] > 1:
        return "classify", AGREEMENT["classify"]
    return "cosine", AGREEMENT["cosine"]
