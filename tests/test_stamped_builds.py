"""Models cvtune builds carry their preprocessing: a pass's output is stamped with the spec its calibration used, and
keeps what the source file said, so a copy of it reads back as recognised (metadata:cvtune), never as a guess."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
from tiny_models import conv_chain

from cvtune.data.calibration import calibration_set
from cvtune.passes import BuildContext, Int8Static, apply_passes
from cvtune.preprocess import parse_preprocess, recognize_preprocessing, resolve_preprocessing


def test_an_int8_build_reads_back_with_the_spec_it_was_calibrated_with(tmp_path):
    source = tmp_path / "chain.onnx"
    proto = conv_chain(size=16)
    proto.metadata_props.add(key="names", value="{0: 'thing'}")  # what the source file says about itself
    onnx.save(proto, str(source))
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(photos / f"p{i}.png"), rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
    spec = parse_preprocess("letterbox=16x16,pad=0,scale=1/255,rgb")
    assert resolve_preprocessing(source).guessed  # the source says nothing about its pixels

    ctx = BuildContext((1, 3, 16, 16), tmp_path, lambda need: calibration_set(source, photos, need,
                                                                                 preprocessing=spec))
    built, info = apply_passes(onnx.load(str(source)), [Int8Static()], ctx, preprocessing=spec)
    assert info["int8_static"]["quantized_nodes"] > 0
    onnx.save(built, str(tmp_path / "int8.onnx"))
    found = recognize_preprocessing(tmp_path / "int8.onnx")
    assert found == spec and found.source == "metadata:cvtune"
    assert {p.key: p.value for p in built.metadata_props}["names"] == "{0: 'thing'}"

    static = BuildContext((1, 3, 12, 12), tmp_path, ctx.calibration, static_size=(12, 12))
    resized, _ = apply_passes(onnx.load(str(source)), [], static, preprocessing=spec)
    onnx.save(resized, str(tmp_path / "resized.onnx"))
    assert recognize_preprocessing(tmp_path / "resized.onnx").input_size == (12, 12)  # the size it was built for
