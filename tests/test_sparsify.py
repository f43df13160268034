"""Unstructured sparsification: which weights become zero, what the report says, and what is refused."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cvtune.compress import SparsifyConfig, sparsify, sparsify_file
from cvtune.compress.graph import GraphIndex, ort_session, prepare
from cvtune.compress.sparsify import report_path
from cvtune.errors import ModelError, UsageError


def three_layer_model(*, constant_nodes: bool = False, seed: int = 0) -> onnx.ModelProto:
    """x(1,3,8,8) -> Conv(3->8) -> Relu -> Conv(8->8) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(8->4) -> y.
    With constant_nodes, the weights sit in Constant nodes, as in the PP-OCR exports."""
    rng = np.random.default_rng(seed)
    weights = {"w1": rng.standard_normal((8, 3, 3, 3)), "w2": rng.standard_normal((8, 8, 3, 3)),
               "w3": rng.standard_normal((8, 4))}
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3"], ["y"], name="fc"),
    ]
    inits = []
    if constant_nodes:
        consts = [helper.make_node("Constant", [], [k], name=f"const_{k}", value=numpy_helper.from_array(v, k))
                  for k, v in weights.items()]
        nodes = consts + nodes
    else:
        inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, "three", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def weights_of(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    index = GraphIndex(prepare(model))
    return {name: index.array(name) for name in ("w1", "w2", "w3")}


def test_magnitude_per_layer_zeroes_exactly_the_smallest_weights_of_each_layer():
    model = three_layer_model()
    pruned, report = sparsify(model, SparsifyConfig(method="magnitude", sparsity=0.5, skip_first=False,
                                                    skip_last=False))
    before, after = weights_of(model), weights_of(pruned)
    for name in before:
        w, p = before[name], after[name]
        zeroed = p == 0
        assert zeroed.sum() == round(0.5 * w.size)
        assert np.abs(w[zeroed]).max() <= np.abs(w[~zeroed]).min()  # only the smallest went
        assert np.array_equal(p[~zeroed], w[~zeroed])  # the rest is untouched
    assert [layer.sparsity for layer in report.layers] == pytest.approx([0.5, 0.5, 0.5], abs=0.02)
    assert report.sparsity == pytest.approx(0.5, abs=0.01)
    onnx.checker.check_model(pruned)


def test_global_magnitude_ranks_all_layers_together():
    model = three_layer_model()
    index = GraphIndex(prepare(model))
    scaled = prepare(model)
    GraphIndex(scaled).set_array("w2", index.array("w2") * 10)  # conv2's weights are all large now
    _, report = sparsify(scaled, SparsifyConfig(method="magnitude", sparsity=0.5, scope="global",
                                                skip_first=False, skip_last=False))
    per_layer = {layer.name: layer.sparsity for layer in report.layers}
    assert report.sparsity == pytest.approx(0.5, abs=0.01)
    assert per_layer["conv2"] < 0.5 < per_layer["conv1"]


def test_random_is_seeded_and_threshold_zeroes_below_t():
    model = three_layer_model()
    config = SparsifyConfig(method="random", sparsity=0.4, skip_first=False, skip_last=False, seed=1)
    a, _ = sparsify(model, config)
    b, _ = sparsify(model, config)
    c, _ = sparsify(model, SparsifyConfig(method="random", sparsity=0.4, skip_first=False, skip_last=False, seed=2))
    assert all(np.array_equal(weights_of(a)[k], weights_of(b)[k]) for k in ("w1", "w2", "w3"))
    assert not np.array_equal(weights_of(a)["w2"] == 0, weights_of(c)["w2"] == 0)
    pruned, report = sparsify(model, SparsifyConfig(method="threshold", threshold=0.5))
    for name, w in weights_of(model).items():
        p = weights_of(pruned)[name]
        if name == "w2":  # first and last layers are skipped by default
            assert np.array_equal(p, np.where(np.abs(w) < 0.5, 0, w))
        else:
            assert np.array_equal(p, w)
    assert [layer.target is None for layer in report.layers] == [True, False, True]


def test_skip_first_last_and_named_layers():
    model = three_layer_model()
    _, report = sparsify(model, SparsifyConfig(method="magnitude", sparsity=0.5, skip_first=False, skip_last=False,
                                               skip=("conv2",)))
    skipped = {layer.name: layer.skipped for layer in report.layers}
    assert skipped == {"conv1": "", "conv2": "skipped by name", "fc": ""}
    with pytest.raises(UsageError, match="unknown layer 'conv9'.*conv1, conv2, fc"):
        sparsify(model, SparsifyConfig(method="magnitude", sparsity=0.5, skip=("conv9",)))
    with pytest.raises(UsageError, match="every prunable layer"):
        sparsify(model, SparsifyConfig(method="magnitude", sparsity=0.5, skip=("conv2",)))


def test_weights_in_constant_nodes_are_sparsified_and_the_model_still_runs():
    model = three_layer_model(constant_nodes=True)
    pruned, report = sparsify(model, SparsifyConfig(method="magnitude", sparsity=0.6, skip_first=False,
                                                    skip_last=False))
    assert report.sparsity == pytest.approx(0.6, abs=0.01)
    onnx.checker.check_model(pruned)
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    out = ort_session(pruned).run(None, {"x": x})[0]
    assert out.shape == (1, 4)
    assert not np.allclose(out, ort_session(model).run(None, {"x": x})[0])  # the zeros are really in there


def test_the_report_shows_zeros_shrink_the_compressed_size_not_the_file(tmp_path):
    model_path = tmp_path / "m.onnx"
    onnx.save(three_layer_model(), str(model_path))
    out = tmp_path / "out" / "m50.onnx"
    report = sparsify_file(model_path, out, SparsifyConfig(method="magnitude", sparsity=0.5))
    assert out.is_file() and report_path(out).is_file()
    assert report.file_bytes == out.stat().st_size
    assert abs(report.file_bytes - report.original_file_bytes) < 0.05 * report.original_file_bytes
    assert report.compressed_bytes < 0.9 * report.original_compressed_bytes
    saved = json.loads(report_path(out).read_text())
    assert saved["method"] == "magnitude" and saved["sparsity"] == pytest.approx(report.sparsity)
    assert "latency" in saved["note"]


def test_bad_input_is_refused_with_one_clear_line(tmp_path):
    with pytest.raises(UsageError, match="sparsity must be in"):
        SparsifyConfig(method="magnitude", sparsity=1.2)
    with pytest.raises(UsageError, match="magnitude, random, threshold"):
        SparsifyConfig(method="prune-it", sparsity=0.5)
    with pytest.raises(UsageError, match="threshold T"):
        SparsifyConfig(method="threshold")
    relu_only = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])]), opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ModelError, match="no Conv/ConvTranspose/Gemm/MatMul"):
        sparsify(relu_only, SparsifyConfig(method="magnitude", sparsity=0.5))
    model_path = tmp_path / "m.onnx"
    onnx.save(three_layer_model(), str(model_path))
    before = model_path.read_bytes()
    with pytest.raises(UsageError, match="same file as the input"):
        sparsify_file(model_path, model_path, SparsifyConfig(method="magnitude", sparsity=0.5))
    assert model_path.read_bytes() == before
