"""Detection decoders: each on a tiny graph whose outputs are laid out as the published head returns them (run by
ONNX Runtime), and on the real models that use them (nudenet 320n = YOLOv8, MediaPipe palm / face = BlazeFace)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from tiny_models import head_model

from cvtune.errors import ModelError, UsageError
from cvtune.preprocess import Preprocessing, resolve_preprocessing
from cvtune.runtimes import make_runtime
from cvtune.tasks.decoders import (
    DECODERS,
    OutputFacts,
    SsdAnchorOptions,
    choose_decoder,
    make_decoder,
    model_facts,
    ssd_anchors,
)
from cvtune.tasks.decoders.ssd import BlazefaceDecoder, SsdDecoder

SIZE = (64, 64)  # stride 8/16/32 grid: 64 + 16 + 4 = 84 cells


def run_head(tmp_path, outputs: dict[str, np.ndarray], size=SIZE) -> list[np.ndarray]:
    """The head's outputs as ONNX Runtime returns them for a gray image."""
    session = make_runtime("ort").open(head_model(tmp_path / "head.onnx", outputs, size=size))
    return session.run(np.full((1, 3, *size), 0.5, np.float32))


def decode_auto(outputs, size=SIZE, **facts):
    name = choose_decoder(OutputFacts(tuple(o.shape for o in outputs), size, **facts))
    return name, make_decoder(name).decode(outputs, size, conf_thresh=0.25, iou_thresh=0.5)


def test_yolov8_head_keeps_the_best_class_and_suppresses_duplicates(tmp_path):
    # (1, 4 + 2 classes, 84 anchors): two overlapping class-0 boxes, one class-1 box, the rest empty
    head = np.zeros((1, 6, 84), np.float32)
    head[0, :4, 0] = [30, 30, 20, 20]
    head[0, :4, 1] = [31, 30, 20, 20]
    head[0, :4, 2] = [50, 50, 10, 6]
    head[0, 4, :2] = [0.9, 0.6]
    head[0, 5, 2] = 0.8
    name, found = decode_auto(run_head(tmp_path, {"output0": head}))
    assert name == "yolov8"
    assert found.classes.tolist() == [0, 1]
    assert found.boxes.tolist() == [[20, 20, 40, 40], [45, 47, 55, 53]]
    assert found.scores.tolist() == pytest.approx([0.9, 0.8])
    transposed = make_decoder("yolov8").decode([head.transpose(0, 2, 1)], SIZE, conf_thresh=0.25)
    assert transposed.classes.tolist() == [0, 1]
    assert make_decoder("yolo").name == "yolov8"  # the name cvtune used before


def test_yolov5_head_multiplies_objectness_and_class_probability(tmp_path):
    head = np.zeros((1, 3 * 84, 5 + 3), np.float32)  # 3 anchors per cell
    head[0, 7] = [32, 16, 16, 8, 0.9, 0.1, 0.8, 0.1]
    head[0, 8] = [10, 10, 4, 4, 0.2, 0.0, 0.0, 0.9]  # 0.2 * 0.9 = 0.18 < 0.25: dropped
    name, found = decode_auto(run_head(tmp_path, {"output": head}))
    assert name == "yolov5"
    assert found.boxes.tolist() == [[24, 12, 40, 20]]
    assert found.classes.tolist() == [1] and found.scores[0] == pytest.approx(0.72)


def test_yolox_raw_head_is_decoded_on_the_stride_grid(tmp_path):
    head = np.zeros((1, 84, 5 + 2), np.float32)  # one box per cell: 8x8 (stride 8), 4x4 (16), 2x2 (32)
    cell = 64 + 1 * 4 + 2  # stride 16, row 1, column 2
    head[0, cell] = [0.5, 0.5, math.log(3.0), math.log(2.0), 0.9, 0.1, 0.9]
    name, found = decode_auto(run_head(tmp_path, {"output": head}))
    assert name == "yolox"
    cx, cy, w, h = (2 + 0.5) * 16, (1 + 0.5) * 16, 3 * 16, 2 * 16
    assert found.boxes.tolist() == [pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])]
    assert found.classes.tolist() == [1] and found.scores[0] == pytest.approx(0.81)
    decoded = head.copy()  # an export that decodes in the graph: every cell's box in pixels already
    cells, strides = make_decoder("yolox").grid(SIZE)
    decoded[0, :, :2] = (cells + 0.5) * strides[:, None]
    decoded[0, :, 2:4] = strides[:, None]
    decoded[0, cell, :4] = [cx, cy, w, h]
    again = make_decoder("yolox").decode([decoded], SIZE, conf_thresh=0.25)
    assert again.boxes.tolist() == found.boxes.tolist()


def test_ssd_anchors_match_mediapipe_counts():
    # anchor counts of MediaPipe's published graphs (face short range 896, palm 2016, full range 2304, pose 2254,
    # TF MobileNet-SSD 1917 at 300 px)
    blaze = dict(fixed_anchor_size=True, min_scale=0.1484375, max_scale=0.75)
    assert ssd_anchors(SsdAnchorOptions((128, 128), (8, 16, 16, 16), **blaze)).shape == (896, 4)
    assert ssd_anchors(SsdAnchorOptions((192, 192), (8, 16, 16, 16), **blaze)).shape == (2016, 4)
    assert ssd_anchors(SsdAnchorOptions((192, 192), (4,), interpolated_scale_aspect_ratio=0.0, **blaze)).shape \
        == (2304, 4)
    assert ssd_anchors(SsdAnchorOptions((224, 224), (8, 16, 32, 32, 32), **blaze)).shape == (2254, 4)
    assert ssd_anchors(SsdDecoder().anchor_options((300, 300), 1917)).shape == (1917, 4)
    first = ssd_anchors(SsdAnchorOptions((128, 128), (8, 16, 16, 16), **blaze))[:3]
    assert first.tolist() == [[0.5 / 16, 0.5 / 16, 1, 1], [0.5 / 16, 0.5 / 16, 1, 1], [1.5 / 16, 0.5 / 16, 1, 1]]


def test_blazeface_head_decodes_offsets_from_fixed_anchors(tmp_path):
    size = (128, 128)
    boxes = np.zeros((1, 896, 16), np.float32)  # x y w h + 6 keypoints, in input pixels
    scores = np.full((1, 896, 1), -10.0, np.float32)
    anchor = 2 * (16 * 5 + 7)  # stride-8 layer, row 5, column 7, first of its 2 anchors
    boxes[0, anchor, :4] = [4.0, -2.0, 24.0, 16.0]
    scores[0, anchor, 0] = 3.0
    outputs = run_head(tmp_path, {"classificators": scores, "regressors": boxes}, size=size)
    name, found = decode_auto(outputs, size)
    assert name == "blazeface"
    cx, cy = (7 + 0.5) * 8 + 4.0, (5 + 0.5) * 8 - 2.0
    assert found.boxes.tolist() == [pytest.approx([cx - 12, cy - 8, cx + 12, cy + 8], abs=1e-4)]
    assert found.scores[0] == pytest.approx(1 / (1 + math.exp(-3.0)))
    swapped = make_decoder("blazeface").decode(outputs[::-1], size, conf_thresh=0.25)  # runtimes reorder outputs
    assert swapped.boxes.tolist() == found.boxes.tolist()


def test_ssd_head_decodes_tf_box_coding_and_skips_the_background_class(tmp_path):
    size = (300, 300)
    anchors = ssd_anchors(SsdDecoder().anchor_options(size, 1917))
    i = 100
    boxes = np.zeros((1, 1917, 4), np.float32)
    boxes[0, i] = [10 * 0.1, 0.0, 5 * math.log(2.0), 0.0]  # ty = 0.1 anchor heights down, twice as tall
    scores = np.full((1, 1917, 6), -10.0, np.float32)  # background + 5 classes
    scores[0, :, 0] = 5.0  # background everywhere
    scores[0, i, 2] = 4.0
    name, found = decode_auto(run_head(tmp_path, {"boxes": boxes, "scores": scores}, size=size), size)
    assert name == "ssd"
    ax, ay, aw, ah = anchors[i]
    cy, h, w = ay + 0.1 * ah, 2 * ah, aw
    expected = [(ax - w / 2) * 300, (cy - h / 2) * 300, (ax + w / 2) * 300, (cy + h / 2) * 300]
    assert found.classes.tolist() == [2]
    assert found.boxes.tolist() == [pytest.approx(expected, abs=1e-3)]


def test_boxes_scores_reads_rows_and_separate_outputs(tmp_path):
    rows = np.array([[[10, 12, 30, 36, 0.9, 2], [0, 0, 5, 5, 0.1, 0]]], np.float32)
    name, found = decode_auto(run_head(tmp_path, {"dets": rows}))
    assert name == "boxes_scores" and found.boxes.tolist() == [[10, 12, 30, 36]] and found.classes.tolist() == [2]
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6]]], np.float32)  # normalized: scaled to input pixels
    three = [boxes, np.array([[0.8]], np.float32), np.array([[3]], np.float32)]
    name, found = decode_auto(three)
    assert name == "boxes_scores"
    assert found.boxes.tolist() == [pytest.approx([6.4, 12.8, 32, 38.4])] and found.classes.tolist() == [3]
    cxcywh = make_decoder("boxes_scores", box_format="cxcywh", normalized=False)
    two = [np.array([[[20, 20, 10, 4]]], np.float32), np.array([[[0.1, 0.7]]], np.float32)]
    assert cxcywh.decode(two, SIZE, conf_thresh=0.25).boxes.tolist() == [[15, 18, 25, 22]]


def test_ambiguous_or_unknown_layouts_ask_the_user_listing_every_decoder():
    two_unknown = OutputFacts(((1, 50, 4), (1, 50, 3)), SIZE)  # finished boxes or raw SSD? the shapes cannot say
    with pytest.raises(ModelError, match="decoder=NAME") as err:
        choose_decoder(two_unknown)
    assert all(name in str(err.value) for name in DECODERS)
    # (1, 8400, 85) at 640 px: one box per cell (YOLOX), unless the model names 81 classes (a transposed YOLOv8)
    assert choose_decoder(OutputFacts(((1, 8400, 85),), (640, 640))) == "yolox"
    assert choose_decoder(OutputFacts(((1, 8400, 85),), (640, 640), num_classes=81)) == "yolov8"
    assert choose_decoder(OutputFacts(((1, 25200, 85),), (640, 640))) == "yolov5"
    with pytest.raises(ModelError, match=r"several layouts fit \(yolov8, yolox\)"):
        choose_decoder(OutputFacts(((1, 84, 85),), SIZE))  # 84 cells at 64 px, or 80 classes over 85 anchors
    with pytest.raises(UsageError, match="choose one of"):
        make_decoder("retinanet")
    with pytest.raises(UsageError, match="it takes"):
        make_decoder("yolov8", strides=[8])


# ---- real models ------------------------------------------------------------------------------------------------
# MediaPipe's face detector takes RGB in [-1, 1], letterboxed (its TFLite file does not say: given here, as a user
# would with --preprocess)
FACE_PRE = Preprocessing(input_size=(128, 128), resize="letterbox", pad=0, scale=1 / 255, mean=(0.5,), std=(0.5,),
                         channels="rgb")


def _iou(a, b):
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _tflite(path):
    """OpenCV's classic engine: OpenCV 5's default engine drops the scores output of these TFLite files."""
    engine = "classic" if hasattr(cv2.dnn, "ENGINE_CLASSIC") else "auto"
    return make_runtime("opencv", engine=engine).open(path)


def test_nudenet_and_mediapipe_face_detectors_find_the_same_face(real_models, real_photos):
    """Two unrelated real detectors, decoded by two different decoders (YOLOv8 head, BlazeFace anchors), agree on
    where the astronaut's and the cameraman's faces are: both decoders read their heads right."""
    nudenet, face = real_models["nudenet-320n"], real_models["face-detection-short-range"]
    facts = model_facts(nudenet)
    assert facts["ultralytics_task"] == "detect" and facts["num_classes"] == 18
    yolo = make_runtime("ort").open(nudenet)
    yolo_pre = resolve_preprocessing(nudenet)  # letterbox 320x320, pad 114, x/255, RGB: its Ultralytics metadata
    assert yolo_pre.source == "metadata:ultralytics" and yolo_pre.resize == "letterbox"
    net = _tflite(face)
    for photo in (p for p in real_photos if p.stem in ("astronaut", "camera")):
        x, geo = yolo_pre.to_tensor(cv2.imread(str(photo)))
        outputs = yolo.run(x)
        name, found = decode_auto(outputs, (320, 320), num_classes=facts["num_classes"],
                                  ultralytics_task=facts["ultralytics_task"])
        assert name == "yolov8"
        faces = [b for b, c in zip(geo.boxes_to_image(found.boxes), found.classes, strict=True)
                 if facts["class_names"][c].startswith("FACE")]
        x, geo = FACE_PRE.to_tensor(cv2.imread(str(photo)))
        outputs = net.run(x)
        name, blaze = decode_auto(outputs, (128, 128))
        assert name == "blazeface"
        blaze_face = geo.boxes_to_image(blaze.boxes)[0]  # the best-scoring face
        assert len(faces) == 1 and _iou(faces[0], blaze_face) > 0.6, (photo.stem, faces, blaze_face)


def test_palm_detector_boxes_move_with_the_photo(real_models, real_photos):
    """MediaPipe palm_detection_lite (2016 anchors: strides 8/16/16/16, recognised from the count). The photo is
    placed at offsets that are multiples of the largest stride (16 px) inside the 192x192 input; the best palm
    must move with it: anchor order, cell offsets and box scale are read right."""
    net = _tflite(real_models["palm-detection-lite"])
    size, decoder = (192, 192), BlazefaceDecoder()
    palm = resolve_preprocessing(real_models["palm-detection-lite"], "stretch=192x192,scale=1/255,rgb,nhwc")
    for photo in (p for p in real_photos if p.stem in ("camera", "coins")):
        content, _ = palm.for_task("letterbox", (160, 160)).resize_image(cv2.imread(str(photo)))
        found_at = []
        for dx, dy in ((0, 0), (16, 16), (32, 16)):
            canvas = np.zeros((*size, 3), np.uint8)
            canvas[dy:dy + 160, dx:dx + 160] = content
            outputs = net.run(palm.to_tensor(canvas)[0])
            assert choose_decoder(OutputFacts(tuple(o.shape for o in outputs), size)) == "blazeface"
            found = decoder.decode(outputs, size, conf_thresh=0.3, iou_thresh=0.3)
            found_at.append(found.boxes - np.array([dx, dy, dx, dy], np.float32))
        best = found_at[0][0]  # score >= 0.5 on both photos
        for moved in found_at[1:]:  # the same palm within 3 px after undoing the shift (one anchor cell is 8 px)
            assert np.abs(moved - best).max(axis=1).min() < 3.0, (photo.stem, best, moved)
