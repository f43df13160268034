"""One preprocessing path: detection, segmentation, calibration and every fidelity kind make their tensors with the
spec's `to_tensor` and map results back with its `Geometry`, whatever resize mode the spec names (a user's
`--preprocess stretch=...`, a letterbox with its own pad, a center crop)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from tiny_models import head_model

from cvtune.data.calibration import CalibrationNeed, calibration_set
from cvtune.preprocess import Geometry, parse_preprocess
from cvtune.runtimes import make_runtime
from cvtune.tasks import FidelityTask
from cvtune.tasks.spec import resolve_task

SIZE = (64, 64)
BOX = [16, 8, 48, 40]  # x1 y1 x2 y2 in input pixels: the head's one detection (score 0.9, class 2)
STRETCH = "stretch=64x64,scale=1/255,rgb"


@pytest.fixture()
def boxes_head(tmp_path):
    """A detector whose head returns finished boxes (decoder boxes_scores): always BOX, in input pixels."""
    return head_model(tmp_path / "head.onnx", {"dets": np.array([[[*BOX, 0.9, 2]]], np.float32)}, size=SIZE)


@pytest.fixture()
def wide_photos(tmp_path):
    """One white 32x128 photo: a stretch to 64x64 halves x and doubles y; a letterbox pads 24 rows above and below."""
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "wide.png"), np.full((32, 128, 3), 255, np.uint8))
    return folder


def test_detect_fidelity_and_calibration_follow_a_stretch_spec_and_map_boxes_back_exactly(boxes_head, wide_photos):
    image = cv2.imread(str(wide_photos / "wide.png"))
    session = make_runtime("ort").open(boxes_head)
    detect = resolve_task("detect", boxes_head, preprocess=STRETCH, decoder="boxes_scores").build()
    tensor, geometry = detect.preprocess(image)
    assert tensor.shape == (1, 3, 64, 64) and tensor.min() == 1.0  # stretched: no letterbox border anywhere
    assert (geometry.scale, geometry.offset) == ((0.5, 2.0), (0.0, 0.0))
    [found] = detect.predict(session, image)
    assert found["bbox"] == [32.0, 4.0, 64.0, 16.0]  # x / 0.5, y / 2: the stretch undone exactly

    fidelity = resolve_task("fidelity", boxes_head, preprocess=STRETCH, reference_model=str(boxes_head),
                            decoder="boxes_scores").build()
    assert fidelity.preprocessing == detect.preprocessing == parse_preprocess(STRETCH)
    compared = fidelity.predict(session, image)
    assert compared["reference"][:, :4].tolist() == [[32.0, 4.0, 96.0, 20.0]] and compared["row"] == [1, 1, 1, 1]

    calibration = calibration_set(boxes_head, wide_photos, CalibrationNeed(count=1), task="detect",
                                  preprocessing=STRETCH, task_options={"decoder": "boxes_scores"})
    assert np.array_equal(next(iter(calibration)), tensor)  # int8 and pruning see what the metric sees


def test_a_letterbox_spec_pads_with_its_own_value_in_detection_and_segmentation(tmp_path, boxes_head, wide_photos):
    image = cv2.imread(str(wide_photos / "wide.png"))
    spec = "letterbox=64x64,pad=0,scale=1/255,rgb"
    detect = resolve_task("detect", boxes_head, preprocess=spec, decoder="boxes_scores").build()
    tensor, _ = detect.preprocess(image)
    assert tensor[0, :, :24].max() == 0.0 and tensor[0, :, 24:40].min() == 1.0 and tensor[0, :, 40:].max() == 0.0
    [found] = detect.predict(make_runtime("ort").open(boxes_head), image)
    assert found["bbox"] == [32.0, 0.0, 64.0, 32.0]  # y (8 - 24) / 0.5 clipped to 0, (40 - 24) / 0.5 = 32

    logits = np.zeros((1, 2, 64, 64), np.float32)  # background 1 everywhere, foreground 2 in input columns < 32
    logits[0, 0] = 1.0
    logits[0, 1, :, :32] = 2.0
    segmenter = head_model(tmp_path / "seg.onnx", {"mask": logits}, size=SIZE)
    segment = resolve_task("segment", segmenter, preprocess=spec).build()
    mask = segment.predict(make_runtime("ort").open(segmenter), image)["mask"]
    assert mask.shape == (32, 128)  # the padding is dropped: one label per image pixel
    assert mask[:, :64].min() == 1 and mask[:, 64:].max() == 0


@pytest.mark.parametrize("kind", ["detect", "classify", "segment", "raw"])
def test_every_fidelity_kind_feeds_the_tensor_the_spec_makes(boxes_head, wide_photos, kind):
    """An ImageNet-style center crop (not the stretch these kinds used to default to)."""
    spec = parse_preprocess("center_crop=64x64,resize=72,scale=1/255,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,"
                            "rgb")
    image = cv2.imread(str(wide_photos / "wide.png"))
    options = {"decoder": "boxes_scores"} if kind == "detect" else {}
    task = FidelityTask(spec, reference_model=boxes_head, kind=kind, **options)
    tensor, _ = task.preprocess(image)
    assert task.preprocessing == spec and np.array_equal(tensor, spec.to_tensor(image)[0])


def test_a_mask_maps_back_without_darkening_the_image_edges():
    """Downscaled 2x: every image pixel lies inside the input, so a map of ones comes back as ones (as cv2.resize
    gives), while a center crop's lost margin comes back as 0."""
    stretch = Geometry((32, 32), (16, 16), (0.5, 0.5))
    assert stretch.mask_to_image(np.ones((16, 16), np.float32)).min() == 1.0
    crop = Geometry((16, 24), (16, 16), (1.0, 1.0), (-4.0, 0.0))
    back = crop.mask_to_image(np.ones((16, 16), np.float32))
    assert back[:, 4:20].min() == 1.0 and back[:, :4].max() == 0.0 and back[:, 20:].max() == 0.0
