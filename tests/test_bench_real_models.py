"""bench/bench_real_models.py's independent re-measure cannot rot: a real model against itself agrees exactly, through
the bench's own preprocessing, decoding and matching, with the candidate fed from a deploy.json-style
preprocessing dict (cvtune's recognised one) and run by a cvtune session, as the bench runs a deployed answer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import pytest

from cvtune.preprocess import resolve_preprocessing
from cvtune.runtimes import make_runtime

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_real_models.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_real_models", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_nudenet_against_itself_agrees_exactly(bench, real_models, real_photos):
    model = real_models["nudenet-320n"]
    case = next(c for c in bench.CASES if c.name == "nudenet-320n")
    recognised = bench.Pre.from_deploy({"preprocessing": resolve_preprocessing(model).to_dict(), "input_size": None})
    assert case.truth.same_pixels(recognised)  # Ultralytics metadata -> the LetterBox the bench writes out
    images = [cv2.imread(str(p)) for p in real_photos]
    candidate = make_runtime("ort").open(model)  # what cvtune.Deployed.open() returns
    agreement = bench.remeasure("detect", images, reference=bench.ort_session(model), reference_pre=case.truth,
                                candidate=candidate, candidate_pre=recognised, decoder="yolov8")
    assert (agreement.metric, agreement.value, agreement.images) == ("det_f1", 1.0, len(real_photos))
    assert "0 reference boxes" not in agreement.detail  # the photos hold faces: the check compared something
    x = recognised.tensor(images[0])[0]
    speed = bench.interleaved_speedup(bench.ort_session(model), x, candidate, x, rounds=2, min_time_s=0.0)
    assert speed["speedup"] > 0 and set(speed["p50_ms"]) == {"baseline", "candidate"}


def test_segmenter_and_classifier_against_themselves(bench, real_models, real_photos):
    images = [cv2.imread(str(p)) for p in real_photos[:4]]
    selfie = next(c for c in bench.CASES if c.name == "selfie-segmentation")
    session = bench.reference_session(real_models["selfie-segmentation"])
    mask = bench.remeasure("segment", images, reference=session, reference_pre=selfie.truth, candidate=session,
                           candidate_pre=selfie.truth)
    assert (mask.metric, mask.value) == ("mask_miou", 1.0)
    onet = next(c for c in bench.CASES if c.name == "mtcnn-onet")
    session = bench.ort_session(real_models["mtcnn-onet"])
    top1 = bench.remeasure("classify", images, reference=session, reference_pre=onet.truth, candidate=session,
                           candidate_pre=onet.truth, output=onet.output)
    assert (top1.metric, top1.value) == ("top1_agreement", 1.0) and "raw similarity 1.0000" in top1.detail


def test_a_moved_box_is_a_miss_and_a_false_alarm(bench):
    import numpy as np

    reference = np.array([[10, 10, 50, 50, 0.9, 0], [60, 60, 90, 90, 0.8, 1]], float)
    moved = np.array([[10, 10, 50, 50, 0.9, 0], [75, 75, 105, 105, 0.8, 1]], float)
    assert bench.detection_counts(moved, reference) == (1, 2, 1, 2)
    assert bench.f1(*bench.detection_counts(moved, reference)) == pytest.approx(0.5)
    near = np.array([[10, 10, 50, 50, 0.2, 0], [60, 60, 90, 90, 0.8, 1]], float)  # 0.9 -> 0.2: above conf / 2
    assert bench.f1(*bench.detection_counts(near, reference)) == 1.0
    lost = np.array([[10, 10, 50, 50, 0.05, 0], [60, 60, 90, 90, 0.8, 1]], float)  # a miss, no false alarm
    assert bench.detection_counts(lost, reference) == (1, 1, 1, 2)
