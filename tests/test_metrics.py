"""Metric code against hand-computed cases: ICDAR matching, hmean, bootstrap CIs, CTC decoding, CER, COCO mAP,
and each task's score() on hand-made predictions (no model runs here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cvtune.data.base import Dataset, Sample, TextBox
from cvtune.errors import DatasetError, ModelError, UsageError
from cvtune.tasks import TASKS, ClassifyTask, DetectTask, OcrTask, TextDetTask, get_task_class
from cvtune.tasks.common import as_probabilities
from cvtune.tasks.ctc import charset_from_characters, ctc_greedy_decode
from cvtune.tasks.decoders import make_decoder
from cvtune.tasks.fidelity import cosine, raw_similarity
from cvtune.tasks.metrics import (
    STATISTICS,
    bootstrap_ci,
    char_distance,
    coco_map,
    hmean_ci,
    match_text_boxes,
    mean_ci,
    normalize_text,
    prf,
)


def assert_rows_reproduce(metrics):
    """The per-image contract (tasks/base.py): the summed rows give the metric back through the named statistic."""
    assert metrics.statistic in STATISTICS and len(metrics.per_image) == metrics.n_images
    expected = metrics.details[metrics.statistic_of] if metrics.statistic_of else metrics.value
    assert metrics.statistic_value() == pytest.approx(expected, abs=1e-12)
    assert len({len(row) for row in metrics.per_image}) <= 1


def rect(x0, y0, x1, y1):
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


A, B = rect(0, 0, 100, 20), rect(0, 50, 100, 70)


# ---- ICDAR-2015 matching ------------------------------------------------------------------------------------
def test_perfect_match_scores_one():
    m = match_text_boxes([A, B], [False, False], [B, A])
    assert (m.tp, m.n_pred, m.n_gt) == (2, 2, 2)
    assert set(m.pairs) == {(0, 1), (1, 0)}
    assert [float(v) for v in prf(m.tp, m.n_pred, m.n_gt)] == [1.0, 1.0, 1.0]


def test_one_missed_box():
    m = match_text_boxes([A, B], [False, False], [A])
    precision, recall, hmean = prf(m.tp, m.n_pred, m.n_gt)
    assert (precision, recall) == (1.0, 0.5)
    assert hmean == pytest.approx(2 / 3)


def test_one_false_box():
    m = match_text_boxes([A], [False], [A, rect(200, 200, 300, 220)])
    precision, recall, hmean = prf(m.tp, m.n_pred, m.n_gt)
    assert (precision, recall) == (0.5, 1.0)
    assert hmean == pytest.approx(2 / 3)


def test_dont_care_region_is_neither_missed_nor_false():
    care, dont_care = A, rect(0, 100, 100, 120)
    # a prediction lying on the ### region is dropped; the ### region itself is not a GT to find
    m = match_text_boxes([care, dont_care], [False, True], [A, rect(5, 102, 95, 118)])
    assert (m.tp, m.n_pred, m.n_gt) == (1, 1, 1)
    assert m.pred_ignored == (1,)
    # a prediction only partly on it (< half its area) still counts as a false positive
    m = match_text_boxes([care, dont_care], [False, True], [A, rect(0, 110, 100, 140)])
    assert (m.tp, m.n_pred, m.n_gt) == (1, 2, 1)


def test_iou_threshold_and_one_to_one():
    shifted = rect(20, 0, 120, 20)  # IoU 80/120 = 0.67
    far = rect(60, 0, 160, 20)  # IoU 40/160 = 0.25
    assert match_text_boxes([A], [False], [shifted]).tp == 1
    assert match_text_boxes([A], [False], [far]).tp == 0
    m = match_text_boxes([A], [False], [A, shifted])  # two predictions on one GT: one match, one false positive
    assert (m.tp, m.n_pred) == (1, 2)


def test_textdet_score_on_hand_made_predictions():
    samples = [Sample(Path("a.png"), (TextBox(A, "a"), TextBox(B, "b"))), Sample(Path("b.png"), (TextBox(A, "c"),))]
    dataset = Dataset("icdar", Path("."), samples)
    predictions = [{"boxes": [A], "scores": [0.9]}, {"boxes": [A, rect(300, 300, 400, 330)], "scores": [0.9, 0.8]}]
    metrics = TextDetTask().score(predictions, samples, dataset)
    # tp 2, predictions 3, gt 3 -> precision = recall = hmean = 2/3
    assert metrics.name == "hmean"
    assert metrics.value == pytest.approx(2 / 3)
    assert metrics.details["precision"] == pytest.approx(2 / 3)
    assert metrics.ci_low <= metrics.value <= metrics.ci_high
    assert metrics.per_image == [[1, 1, 2], [1, 2, 1]] and metrics.statistic == "hmean"
    assert_rows_reproduce(metrics)


def test_textdet_score_rejects_unlabelled_samples():
    samples = [Sample(Path("x.png"))]
    with pytest.raises(DatasetError, match="ICDAR"):
        TextDetTask().score([{"boxes": [], "scores": []}], samples, Dataset("images", Path("."), samples))


# ---- bootstrap ----------------------------------------------------------------------------------------------
def test_bootstrap_ci_contains_estimate_is_seeded_and_narrows_with_data():
    rng = np.random.default_rng(3)
    small = (rng.random(20) < 0.7).astype(float)
    big = (rng.random(2000) < 0.7).astype(float)
    low, high = mean_ci(small)
    assert low <= small.mean() <= high
    assert mean_ci(small) == (low, high)  # same seed, same interval
    big_low, big_high = mean_ci(big)
    assert big_low <= big.mean() <= big_high
    assert big_high - big_low < (high - low) / 3


def test_hmean_ci_resamples_per_image_counts():
    tp, n_pred, n_gt = [3, 1, 2, 0, 4], [3, 2, 2, 1, 5], [4, 1, 3, 1, 4]
    value = prf(sum(tp), sum(n_pred), sum(n_gt))[2]
    low, high = hmean_ci(tp, n_pred, n_gt)
    assert 0 <= low <= value <= high <= 1
    assert low < high


def test_bootstrap_of_nothing_is_none_and_constant_data_is_a_point():
    assert bootstrap_ci(np.zeros((0, 1)), lambda s, n: s[:, 0] / n) == (None, None)
    assert mean_ci([1.0] * 10) == (1.0, 1.0)


# ---- CTC and text -------------------------------------------------------------------------------------------
def test_ctc_greedy_decode_merges_repeats_and_drops_blanks():
    charset = charset_from_characters(["a", "b"])  # blank, a, b, space
    assert charset == ["<blank>", "a", "b", " "]
    steps = [1, 1, 0, 1, 2, 2, 3, 0, 2]  # a a _ a b b ' ' _ b  ->  "aab b"
    probs = np.full((len(steps), 4), 0.1 / 3)
    probs[np.arange(len(steps)), steps] = 0.9
    probs[0, 1] = 0.6
    probs[0, [0, 2, 3]] = 0.4 / 3
    [(text, score)] = ctc_greedy_decode(probs, charset)
    assert text == "aab b"
    kept = [0, 3, 4, 6, 8]  # first step of each run, blanks excluded
    assert score == pytest.approx(np.mean([probs[i, steps[i]] for i in kept]))
    assert ctc_greedy_decode(np.eye(4)[[0, 0]], charset) == [("", 0.0)]


def test_ctc_decode_rejects_a_charset_of_the_wrong_size():
    with pytest.raises(ModelError, match="charset"):
        ctc_greedy_decode(np.zeros((1, 5, 7)), charset_from_characters(["a", "b"]))


def test_text_normalization_and_distance():
    assert normalize_text("  Total\t 12.5 \n") == "Total 12.5"
    assert normalize_text("Total 12.5", ignore_space=True) == "Total12.5"
    assert normalize_text("ÄBC", case_sensitive=False) == "äbc"
    assert char_distance("kitten", "sitting") == 3


def test_ocr_line_score_accuracy_and_cer():
    samples = [Sample(Path(f"{i}.png"), t) for i, t in enumerate(["Hello World", "abc", "Total 12"])]
    dataset = Dataset("ocr_lines", Path("."), samples)
    predictions = [{"text": "HelloWorld", "score": 0.9}, {"text": "abd", "score": 0.9},
                   {"text": "total 12", "score": 1.0}]
    task = OcrTask(charset=["<blank>", "a"])
    metrics = task.score(predictions, samples, dataset)
    assert metrics.name == "line_acc"
    assert metrics.value == pytest.approx(1 / 3)  # spaces ignored by default, case is not
    assert metrics.details["cer"] == pytest.approx(2 / (10 + 3 + 7))
    assert_rows_reproduce(metrics)
    exact = OcrTask(charset=["<blank>", "a"], ignore_space=False, case_sensitive=False)
    assert exact.score(predictions, samples, dataset).value == pytest.approx(1 / 3)


def test_ocr_end_to_end_score_matches_lines_by_box():
    gt = (TextBox(A, "cvtune"), TextBox(B, "OpenCV"), TextBox(rect(0, 100, 100, 120), "###", ignore=True))
    samples = [Sample(Path("p.png"), gt)]
    dataset = Dataset("icdar", Path("."), samples)
    lines = [{"box": B, "text": "OpenCV", "score": 1.0}, {"box": A, "text": "cvtuna", "score": 1.0},
             {"box": rect(2, 101, 98, 119), "text": "junk", "score": 1.0}]
    task = OcrTask(charset=["<blank>", "a"])
    task.bind(dataset)
    metrics = task.score([{"lines": lines}], samples, dataset)
    assert metrics.value == pytest.approx(1 / 2)
    assert metrics.details["det_hmean"] == 1.0  # the ### prediction is ignored
    assert metrics.details["cer"] == pytest.approx(1 / 12)
    assert metrics.per_image == [[1.0, 2.0]] and metrics.statistic == "ratio"
    assert_rows_reproduce(metrics)


# ---- classification -----------------------------------------------------------------------------------------
def test_classify_score_top1_top5_and_label_mapping():
    samples = [Sample(Path(f"{i}.png"), t) for i, t in enumerate([0, 1, 2])]
    dataset = Dataset("classification", Path("."), samples, classes=["cat", "dog", "fox"])
    task = ClassifyTask(labels=["dog", "cat", "fox", "owl", "emu", "yak"])  # model order differs from folders
    preds = [{"top": [1, 0, 2, 3, 4], "probs": [0.5] * 5, "classes": 6},  # cat: right
             {"top": [1, 0, 2, 3, 4], "probs": [0.5] * 5, "classes": 6},  # dog: top-5 only
             {"top": [3, 4, 5, 0, 1], "probs": [0.5] * 5, "classes": 6}]  # fox: missed
    metrics = task.score(preds, samples, dataset)
    assert metrics.value == pytest.approx(1 / 3)
    assert metrics.details["top5"] == pytest.approx(2 / 3)
    assert_rows_reproduce(metrics)
    with pytest.raises(DatasetError, match="not among the model's labels"):
        ClassifyTask(labels=["x", "y"]).score(preds, samples, dataset)


def test_probabilities_kept_and_logits_softmaxed():
    probs = np.array([[0.2, 0.8]])
    assert np.array_equal(as_probabilities(probs), probs)
    soft = as_probabilities(np.array([[2.0, 0.0, -1.0]]))
    assert soft.sum() == pytest.approx(1.0) and soft.argmax() == 0


def test_classify_postprocess_rejects_non_classifier_outputs():
    with pytest.raises(ModelError, match="classify"):
        ClassifyTask().postprocess([np.zeros((1, 1, 32, 32), np.float32)])


# ---- detection ----------------------------------------------------------------------------------------------
def coco_dataset():
    anns = {1: ({"bbox": [10, 10, 50, 40], "category_id": 3},), 2: ({"bbox": [0, 0, 20, 20], "category_id": 7},
                                                                   {"bbox": [40, 40, 30, 30], "category_id": 3})}
    samples = [Sample(Path(f"{i}.jpg"), a, image_id=i) for i, a in anns.items()]
    cats = [{"id": 3, "name": "car"}, {"id": 7, "name": "bus"}]
    return Dataset("coco", Path("."), samples, classes=["car", "bus"], extra={"coco": {"categories": cats}})


def test_detect_score_perfect_is_one_and_a_miss_is_less():
    dataset = coco_dataset()
    perfect = [[{"bbox": [10, 10, 50, 40], "score": 0.9, "class": 0}],
               [{"bbox": [0, 0, 20, 20], "score": 0.8, "class": 1},
                {"bbox": [40, 40, 30, 30], "score": 0.7, "class": 0}]]
    metrics = DetectTask().score(perfect, dataset.samples, dataset)
    assert metrics.name == "map"
    assert metrics.value == pytest.approx(1.0)
    assert metrics.details["map50"] == pytest.approx(1.0)
    assert (metrics.statistic_of, metrics.details["f1_50"]) == ("f1_50", 1.0)  # mAP does not decompose: F1 does
    assert_rows_reproduce(metrics)
    missing = [perfect[0], perfect[1][:1]]
    fewer = DetectTask().score(missing, dataset.samples, dataset)
    assert fewer.value < 0.9 and fewer.details["f1_50"] == pytest.approx(0.8)  # P 2/2, R 2/3
    assert fewer.per_image == [[1, 1, 1], [1, 1, 2]]
    assert DetectTask().score([[], []], dataset.samples, dataset).value == 0.0


def test_per_image_rows_give_a_paired_bootstrap_of_a_drop():
    """How a caller tests a drop: the same multinomial weights resample both models' rows (same images)."""
    rng = np.random.default_rng(0)
    baseline = np.array([[1, 1, 1]] * 20, float)  # (tp, n_pred, n_gt) per image: every box found
    candidate = baseline.copy()
    candidate[:4, 0] = 0  # four images lose their box
    weights = rng.multinomial(20, np.full(20, 1 / 20), size=500)
    hmean = STATISTICS["hmean"]
    drops = hmean(weights @ baseline, 20) - hmean(weights @ candidate, 20)
    assert hmean(baseline.sum(0, keepdims=True), 20)[0] - hmean(candidate.sum(0, keepdims=True), 20)[0] \
        == pytest.approx(0.2)
    assert 0 < np.quantile(drops, 0.025) < 0.2 < np.quantile(drops, 0.975) < 0.45  # a drop, surely above 0


def test_coco_map_directly():
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
                           "iscrowd": 0}]}
    detection = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 1.0}
    assert coco_map(gt, [detection]) == pytest.approx((1.0, 1.0))


def test_boxes_decoder_and_postprocess_map_back_through_the_letterbox():
    task = DetectTask(decoder="boxes", input_size=(64, 64), conf_thresh=0.5)
    image = np.zeros((32, 64, 3), np.uint8)  # letterboxed into 64x64: scale 1, 16 px pad on top
    tensor, meta = task.preprocess(image)
    assert tensor.shape == (1, 3, 64, 64)
    rows = np.array([[[10, 26, 30, 36, 0.9, 2], [0, 0, 5, 5, 0.1, 0]]], np.float32)
    assert len(make_decoder("boxes_scores").decode([rows], (64, 64), conf_thresh=0.5)) == 1
    [det] = task.postprocess([rows], meta)
    assert det == {"bbox": [10.0, 10.0, 20.0, 10.0], "score": pytest.approx(0.9), "class": 2}


# ---- fidelity and registry ----------------------------------------------------------------------------------
def test_cosine_is_exact_for_identical_outputs():
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert cosine(x, x) == 1.0
    assert cosine(x, -x) == pytest.approx(-1.0)


def test_raw_similarity_is_exact_for_itself_and_stable_on_near_empty_outputs():
    x = np.random.default_rng(0).standard_normal((10, 100)).astype(np.float32)
    assert raw_similarity([x], [x])["similarity"] == 1.0
    shifted = raw_similarity([x + 0.01], [x])
    assert 0.98 < shifted["similarity"] < 1.0 and shifted["max_abs"] == pytest.approx(0.01, rel=1e-3)
    # a probability map that is almost all zeros, off by 5e-5 in places: cosine calls it unrelated, raw does not
    empty = np.zeros((1, 1, 32, 32), np.float32)
    empty[0, 0, 3, 3] = 1e-4
    noisy = empty.copy()
    noisy[0, 0, 5, 5] = 5e-5
    assert cosine(noisy, empty) < 0.95
    assert raw_similarity([noisy], [empty])["similarity"] > 0.999
    # a small score output counts as much as a large box output
    boxes, scores = np.full((1, 100, 4), 300.0, np.float32), np.full((1, 100, 1), 0.9, np.float32)
    broken = raw_similarity([boxes, np.zeros_like(scores)], [boxes, scores])
    assert broken["cosine"] > 0.99 and broken["similarity"] == pytest.approx(0.5)
    with pytest.raises(ModelError, match="shape"):
        raw_similarity([x], [x[:5]])


def test_registry_names_every_task_and_rejects_unknown_ones():
    assert set(TASKS) == {"textdet", "ocr", "classify", "detect", "fidelity", "segment"}
    assert all(TASKS[name].name == name for name in TASKS)
    with pytest.raises(UsageError, match="choose one of: textdet"):
        get_task_class("pose")
    with pytest.raises(UsageError, match="reference"):
        TASKS["fidelity"]()
    with pytest.raises(UsageError, match="decoder"):
        DetectTask(decoder="retinanet")
    with pytest.raises(UsageError, match="multiple of 32"):
        TextDetTask(input_size="100x100")
