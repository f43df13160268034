"""Model loading, facts and the safety checks on what a model file may point to."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from tiny_models import conv_relu

from cvtune.errors import ModelError, UsageError
from cvtune.model import Model, constants_to_initializers, load_onnx, parse_shape, save_onnx


def test_zoo_detector_facts(det_model: Path) -> None:
    model = Model.load(det_model)
    assert model.inputs[0].name == "x"
    assert model.inputs[0].dynamic_dims == (0, 2, 3)
    assert model.opset == 12
    assert 1_000_000 < model.param_count < 1_300_000  # weights live in Constant nodes
    assert model.default_input_shape() == (1, 3, 640, 640)
    assert model.preprocessing.size_multiple == 32
    assert model.op_histogram()["Conv"] == 62


def test_flops_are_counted_from_inferred_shapes(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    conv_relu(path, channels=4, size=8)
    layers = Model.load(path).flops()
    assert [(lf.op_type, lf.params) for lf in layers] == [("Conv", 4 * 3 * 3 * 3 + 4)]
    # 2 * (output elements 1*4*8*8) * (kernel 3*3*3)
    assert layers[0].flops == 2 * 4 * 8 * 8 * 27


def test_flops_scale_with_input_area(det_model: Path) -> None:
    model = Model.load(det_model)
    small, large = model.total_flops((1, 3, 320, 320)), model.total_flops((1, 3, 640, 640))
    assert large == pytest.approx(4 * small, rel=0.01)


def test_sparsity_counts_zero_weights(tmp_path: Path) -> None:
    proto = conv_relu(channels=4)
    w = onnx.numpy_helper.to_array(proto.graph.initializer[0]).copy()
    w[:2] = 0
    proto.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(w, "w"))
    save_onnx(proto, tmp_path / "sparse.onnx")
    assert Model.load(tmp_path / "sparse.onnx").weight_sparsity()["total"] == pytest.approx(0.5)


def test_constants_to_initializers_keeps_outputs(cls_model: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    converted = constants_to_initializers(load_onnx(cls_model))
    assert not [n for n in converted.graph.node if n.op_type == "Constant"]
    save_onnx(converted, tmp_path / "cls.onnx")
    x = np.random.default_rng(0).random((1, 3, 48, 192), dtype=np.float32)
    a = ort.InferenceSession(str(cls_model)).run(None, {"x": x})[0]
    b = ort.InferenceSession(str(tmp_path / "cls.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable ONNX model|holds no graph"),
    (b"this is not a model at all", "not a readable ONNX model"),
])
def test_garbage_files_are_model_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        load_onnx(path)


def test_truncated_onnx_is_a_model_error(tmp_path: Path, det_model: Path) -> None:
    path = tmp_path / "cut.onnx"
    path.write_bytes(det_model.read_bytes()[: det_model.stat().st_size // 2])
    with pytest.raises(ModelError, match="truncated|readable|checker"):
        load_onnx(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_onnx(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="not a file"):
        load_onnx(tmp_path)


def test_tensorflow_models_are_converted_to_onnx_for_transforms(tmp_path: Path) -> None:
    path = tmp_path / "graph.pb"
    path.write_bytes(b"\x0a\x00")  # starts like a GraphDef (its node field)
    with pytest.raises(ModelError, match="graph.pb to ONNX"):
        load_onnx(path)


def _with_external_data(tmp_path: Path, location: str) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    proto = conv_relu(channels=4)
    onnx.external_data_helper.convert_model_to_external_data(proto, all_tensors_to_one_file=True,
                                                             location="weights.bin", size_threshold=0)
    onnx.save(proto, str(folder / "m.onnx"))
    proto = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(proto, str(folder / "m.onnx"))
    return folder / "m.onnx"


def test_external_data_inside_the_folder_loads(tmp_path: Path) -> None:
    path = _with_external_data(tmp_path, "weights.bin")
    assert Model.load(path).param_count == 4 * 27 + 4


@pytest.mark.parametrize("location", ["../weights.bin", "/etc/passwd"])
def test_external_data_escaping_the_folder_is_refused(tmp_path: Path, location: str) -> None:
    path = _with_external_data(tmp_path, location)
    if location.startswith(".."):
        shutil.copy(path.parent / "weights.bin", tmp_path / "weights.bin")
    with pytest.raises(ModelError, match="outside the model's folder|absolute location"):
        load_onnx(path)


@pytest.mark.parametrize("text", ["1x3", "1x3x640x640", "2,3,32,32"])
def test_parse_shape_accepts(text: str) -> None:
    assert all(d > 0 for d in parse_shape(text))


@pytest.mark.parametrize("text", ["", "1x3xfoo", "0x3x2x2", "640", "-1x3x2x2"])
def test_parse_shape_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="expected positive integers"):
        parse_shape(text)


def test_renamed_copies_of_zoo_models_keep_their_preprocessing(tmp_path: Path, det_model: Path) -> None:
    from cvtune import zoo

    copy = tmp_path / "my_detector.onnx"
    save_onnx(constants_to_initializers(load_onnx(det_model)), copy)
    assert zoo.find_by_path(copy).name == "ppocr-det"
    assert Model.load(copy).preprocessing.size_multiple == 32
