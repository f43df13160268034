"""Tasks on the real zoo models over small rendered images: DB post-processing, recognition, orientation,
end-to-end OCR, fidelity, and clear errors when the model does not fit the task."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
from conftest import TEXT_PAGES, render_text_page

from cvtune.data.base import Dataset, Sample
from cvtune.errors import ModelError
from cvtune.model import constants_to_initializers, load_onnx, save_onnx
from cvtune.runtimes import make_runtime
from cvtune.tasks import ClassifyTask, FidelityTask, OcrTask, TextDetTask
from cvtune.tasks.ctc import read_charset
from cvtune.tasks.metrics import match_text_boxes
from cvtune.tasks.textdet import db_boxes, det_resize_shape


@pytest.fixture(scope="module")
def ort():
    return make_runtime("ort", threads=1)


@pytest.fixture(scope="module")
def det_session(ort, det_model):
    return ort.open(det_model)


@pytest.fixture(scope="module")
def rec_session(ort, rec_model):
    return ort.open(rec_model)


def test_db_postprocess_turns_a_probability_blob_into_an_unclipped_box():
    prob = np.zeros((64, 128), np.float32)
    prob[20:30, 16:96] = 0.9  # a shrunk text kernel, 80 x 10 px
    boxes, scores = db_boxes(prob, (128, 256))  # original image twice as large
    # 2x2 dilation adds a row and a column; the filled min-area rectangle covers 81 x 11 px, 80 x 10 of them at 0.9
    assert len(boxes) == 1 and scores[0] == pytest.approx(0.9 * 800 / 891, abs=1e-4)
    (x0, y0), _, (x1, y1), _ = boxes[0].tolist()
    # unclip grows the box by area * 1.6 / perimeter = 800 * 1.6 / 180 ~ 7 px per side, then x2 to the image
    assert x0 < 32 < 192 < x1 and y0 < 40 < 60 < y1
    assert db_boxes(prob * 0.4, (128, 256))[0] == []  # box score under box_thresh 0.5: nothing


def test_det_resize_follows_rapidocr_limits():
    assert det_resize_shape(160, 400) == (736, 1824)  # short side up to 736; int(1839.99) rounds to 57 x 32
    assert det_resize_shape(1000, 800) == (992, 800)  # already large enough: only rounded to a multiple of 32
    assert det_resize_shape(100, 3000) == (64, 1984)  # capped by max_side_len 2000 (then rounded)
    assert det_resize_shape(1000, 2000, limit_side_len=960, limit_type="max") == (480, 960)


def test_textdet_finds_rendered_lines_with_the_zoo_detector(det_session):
    task = TextDetTask(input_size=(320, 800))
    for lines in TEXT_PAGES:
        image, gt = render_text_page(lines)
        prediction = task.predict(det_session, image)
        assert len(prediction["boxes"]) == len(prediction["scores"]) == 2
        assert match_text_boxes(gt, [False] * len(gt), prediction["boxes"]).tp == 2


def test_textdet_on_a_classifier_is_a_clear_model_error(ort, cls_model):
    task = TextDetTask(input_size=(64, 192))
    with pytest.raises(ModelError, match=r"textdet.*\(1, 1, H, W\).*\(1, 2\)"):
        task.predict(ort.open(cls_model), np.full((48, 192, 3), 255, np.uint8))


def test_zoo_recognizer_charset_comes_from_metadata(rec_model):
    charset = read_charset(rec_model)
    assert len(charset) == 6625 and charset[0] == "<blank>" and charset[-1] == " "


def test_ocr_reads_a_line_crop_and_a_flipped_one(rec_session):
    image, boxes = render_text_page(TEXT_PAGES[0])
    (x0, y0), (x1, y1) = boxes[1][0], boxes[1][2]
    crop = image[y0 - 4:y1 + 4, x0 - 4:x1 + 4]
    task = OcrTask()
    tensor, _ = task.preprocess(crop)
    assert tensor.shape[:3] == (1, 3, 48) and tensor.shape[3] >= 320
    assert task.predict(rec_session, crop)["text"] == "Total 1234.56"
    # upside down: the orientation classifier turns it back before recognition
    assert task.predict(rec_session, cv2.rotate(crop, cv2.ROTATE_180))["text"] == "Total 1234.56"


def test_classify_task_on_the_orientation_model(ort, cls_model):
    image, boxes = render_text_page(TEXT_PAGES[1])
    (x0, y0), (x1, y1) = boxes[1][0], boxes[1][2]
    crop = image[y0:y1, x0:x1]
    task = ClassifyTask(input_size=(48, 192), resize="pad", labels=["0", "180"])
    session = ort.open(cls_model)
    assert task.predict(session, crop)["top"][0] == 0
    assert task.predict(session, cv2.rotate(crop, cv2.ROTATE_180))["top"][0] == 1


def test_ocr_end_to_end_reads_rendered_pages(rec_session, icdar_dir):
    from cvtune.data.loaders import load_icdar

    dataset = load_icdar(icdar_dir)
    task = OcrTask(det_options={"input_size": (320, 800)}, aux_runtime=make_runtime("ort", threads=1))
    task.bind(dataset)
    predictions = [task.predict(rec_session, cv2.imread(str(s.path))) for s in dataset.samples]
    task.close()
    assert sorted(line["text"] for line in predictions[1]["lines"]) == ["OpenCV DNN", "cvtune"]
    metrics = task.score(predictions, dataset.samples, dataset)
    assert metrics.value == 1.0 and metrics.details["det_hmean"] == 1.0 and metrics.details["cer"] == 0.0


def test_fidelity_of_a_model_to_itself_is_exact_and_noise_lowers_it(tmp_path, cls_model):
    images = [render_text_page(lines)[0][10:70, 10:300] for lines in TEXT_PAGES]
    samples = [Sample(tmp_path / f"{i}.png") for i in range(len(images))]
    dataset = Dataset("images", tmp_path, samples)
    task = FidelityTask(input_size=(48, 192), reference_model=cls_model, kind="raw")
    assert FidelityTask(reference_model=cls_model).metric == "top1_agreement"  # the zoo says: a classifier
    ort = make_runtime("ort", threads=1)

    def score(model_path):
        session = ort.open(model_path)
        return task.score([task.predict(session, image) for image in images], samples, dataset)

    same = score(cls_model)
    assert same.value == 1.0 and same.details["max_abs_error"] == 0.0 and same.name == "raw_similarity"

    proto = constants_to_initializers(load_onnx(cls_model))
    rng = np.random.default_rng(0)
    for tensor in proto.graph.initializer:
        weights = onnx.numpy_helper.to_array(tensor)
        if weights.ndim == 4:  # conv kernels: 30% relative noise
            noisy = weights + 0.3 * weights.std() * rng.standard_normal(weights.shape).astype(weights.dtype)
            tensor.CopyFrom(onnx.numpy_helper.from_array(noisy, tensor.name))
    perturbed = save_onnx(proto, tmp_path / "perturbed.onnx")
    worse = score(perturbed)
    assert worse.value < 0.9999 and worse.details["max_abs_error"] > 0
    assert len(task._cache) == len(images)  # reference outputs were computed once per image
