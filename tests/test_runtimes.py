"""The runtime protocol on the real zoo models: OpenCV (each engine) and ONNX Runtime agree, settings validate,
absent targets are refused with a message naming what is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from cvtune.errors import ModelError, RuntimeUnavailable, UsageError
from cvtune.runtimes import OpenCVRuntime, OrtRuntime, make_runtime, runtime_from_dict
from cvtune.runtimes.opencv import available_engines

SHAPE = (1, 3, 96, 96)


@pytest.fixture(scope="module")
def det_input() -> np.ndarray:
    return np.random.default_rng(0).random(SHAPE, dtype=np.float32)


def test_ort_and_every_opencv_engine_agree_on_the_detector(det_model: Path, det_input: np.ndarray) -> None:
    reference = make_runtime("ort", threads=1).open(det_model).run(det_input)[0]
    assert reference.shape == (1, 1, 96, 96)
    for engine in available_engines():
        out = make_runtime("opencv", engine=engine, threads=1).open(det_model).run(det_input)[0]
        np.testing.assert_allclose(out, reference, atol=1e-3, err_msg=f"engine {engine}")


def test_classic_engine_refuses_dynamic_shape_ops_with_a_hint(cls_model: Path) -> None:
    if available_engines() != ["auto", "new", "classic"]:
        pytest.skip("OpenCV 5.0 only: 4.x has only the classic engine, 5.1 only the new one")
    with pytest.raises(ModelError, match="cvtune prepare"):
        make_runtime("opencv", engine="classic").open(cls_model)


def test_absent_targets_name_what_is_missing() -> None:
    with pytest.raises(RuntimeUnavailable, match="CUDA"):
        make_runtime("opencv", target="cuda").check()
    with pytest.raises(RuntimeUnavailable, match="CUDAExecutionProvider"):
        make_runtime("ort", provider="cuda").check()


@pytest.mark.parametrize("name, settings, message", [
    ("opencv", {"engine": "turbo"}, "unknown OpenCV engine 'turbo'; choose one of: auto, new, classic"),
    ("opencv", {"target": "tpu"}, "unknown OpenCV target"),
    ("opencv", {"threads": 0}, "threads must be >= 1"),
    ("ort", {"graph_opt": "max"}, "unknown graph optimization"),
    ("ort", {"winograd": False}, "has no setting winograd"),
    ("tensorflow", {}, "unknown runtime 'tensorflow'"),
])
def test_bad_settings_are_usage_errors(name: str, settings: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_runtime(name, **settings)


def test_settings_round_trip_through_json_dicts() -> None:
    for runtime in (OpenCVRuntime(engine="classic", threads=2, winograd=False), OrtRuntime(threads=1),
                    OrtRuntime(disabled_optimizers=("WeightBiasQuantization",))):
        assert runtime_from_dict(runtime.to_dict()) == runtime
    assert OpenCVRuntime(engine="new", threads=2).label() == "opencv:new/cpu t2"


def test_missing_model_file(tmp_path: Path) -> None:
    for runtime in (make_runtime("opencv"), make_runtime("ort")):
        with pytest.raises(ModelError, match="not found"):
            runtime.open(tmp_path / "absent.onnx")


def test_fusion_and_winograd_switches_on_the_classic_engine(det_model: Path, det_input: np.ndarray) -> None:
    if "classic" not in available_engines():
        with pytest.raises(RuntimeUnavailable, match="no classic engine"):  # OpenCV 5.1 dropped it
            make_runtime("opencv", fusion=False).check()
        return
    reference = make_runtime("ort", threads=1).open(det_model).run(det_input)[0]
    plain = make_runtime("opencv", engine="classic", fusion=False, winograd=False).open(det_model).run(det_input)[0]
    np.testing.assert_allclose(plain, reference, atol=1e-3)
    if "new" in available_engines():
        with pytest.raises(RuntimeUnavailable, match="classic engine only"):
            make_runtime("opencv", engine="new", fusion=False).check()


def qdq_model_with_a_float_conv(path: Path) -> Path:
    """A QDQ model whose Conv was kept in float, as cvtune's quantizer leaves an excluded layer in QDQ format:

        x(1,2,1,1) -> Q -> DQ -> Conv(w float [1.0, 0.006], 1x1) -> Q(scale 0.01) -> DQ -> y(1,1,1,1)

    ORT's WeightBiasQuantization quantizes w at load because the Conv sits between DQ and Q: 0.006 then becomes a
    whole number of int8 steps of a scale set by the 1.0 (about 0.004 or 0.008), which 0.006 is not."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value, dtype) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, dtype), name)

    inits = [const("w", [[[[1.0]], [[0.006]]]], np.float32), const("b", [0.0], np.float32),
             const("sx", 1.0, np.float32), const("zx", 0, np.int8), const("sy", 0.01, np.float32),
             const("zy", 0, np.int8)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("Conv", ["xd", "w", "b"], ["c"], name="kept_float"),
             helper.make_node("QuantizeLinear", ["c", "sy", "zy"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "sy", "zy"], ["y"])]
    graph = helper.make_graph(nodes, "qdq_float_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                       [1, 2, 1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_disabled_optimizers_reach_ort_and_keep_a_float_layer_float(tmp_path: Path) -> None:
    model = qdq_model_with_a_float_conv(tmp_path / "qdq.onnx")
    x = np.array([0.0, 100.0], np.float32).reshape(1, 2, 1, 1)  # y = 100 * w[1]: 0.6 with the float weight
    for graph_opt in ("basic", "all"):
        kept = make_runtime("ort", graph_opt=graph_opt, disabled_optimizers=["WeightBiasQuantization"])
        assert kept.open(model).run(x)[0].item() == pytest.approx(0.6, abs=0.005), graph_opt
        requantized = make_runtime("ort", graph_opt=graph_opt).open(model).run(x)[0].item()
        assert abs(requantized - 0.6) > 0.1, (graph_opt, requantized)  # the setting is what makes the difference
