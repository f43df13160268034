"""Issue 11's trap, end to end through the search: an int8 model calibrated on the wrong preprocessing is measured by
`optimize` under the model's real preprocessing and refused, while the same int8 calibrated right is exported.

The two candidates differ in their calibration alone (cvtune.testing.traps: both keep YOLOv8's decoding tail in
float); the search itself recognises nudenet 320n's preprocessing from its Ultralytics metadata and judges both with
detection fidelity, so nothing here tells it which one is wrong."""

from __future__ import annotations

import json

import pytest

import cvtune
from cvtune.search.store import Store
from cvtune.testing.photos import photo_variants
from cvtune.testing.traps import Int8KeepTail, MiscalibratedInt8


@pytest.mark.slow
def test_optimize_refuses_int8_calibrated_on_the_wrong_preprocessing(tmp_path, real_models, real_photos):
    photos = photo_variants(real_photos, tmp_path / "photos")  # 48 real photos: calibration and evaluation splits
    right, wrong = Int8KeepTail(), MiscalibratedInt8()  # wrong: ImageNet-normalized calibration tensors
    result = cvtune.optimize(real_models["nudenet-320n"], photos, task="fidelity", max_drop="10%", time="10m",
                             out=tmp_path / "opt", runtimes=["ort"], objective="size", threads=(2,),
                             input_scales=(1.0,), transforms=(("precision", (right, wrong)),), eval_images=16,
                             calib_images=8, final_min_time_s=0.5)

    def label(technique):
        return f"ort:cpu t2 | {technique.label()}"

    results = {t.label: t for t in Store.open(tmp_path / "opt", create=False).trials("result")}
    refused, kept = results[label(wrong)], results[label(right)]
    # det_f1 under the real spec, paired with the original's own rows: clearly beyond the 10% budget (the paired
    # test stops as soon as its CI says so: 0.11-0.25 on 8-16 images in runs so far)
    assert refused.extra["verdict"] == "outside" and refused.extra["drop"] > 0.10
    assert kept.extra["verdict"] == "within" and kept.extra["drop"] <= 0.05

    deploy = json.loads((tmp_path / "opt" / "best" / "deploy.json").read_text())
    assert result.exit_code == 0 and result.claim["holds"]  # the right one, re-measured through its deploy.json
    assert [t["pass"] for t in deploy["transforms"]] == ["int8_keep_tail"]
    assert deploy["preprocessing_source"] == "metadata:ultralytics"
