"""Structured channel pruning: the planner's groups, the cut's shapes, and exact equivalence when the channels
that get cut carried nothing. Tiny graphs are built in code; the real detector gets one smoke test."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cvtune.compress import ChannelConfig, cut_channels, plan_channels, prune_channels, reconstruct
from cvtune.compress.channels import tensor_keeps
from cvtune.compress.graph import GraphIndex, ort_session, prepare
from cvtune.errors import ModelError, UsageError


class Net:
    """A tiny NCHW graph builder: every method adds one node and returns its output's name."""

    def __init__(self, channels: int = 3, size: int = 16, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.size = size
        self.c = {"x": channels}
        self.rank: dict[str, int] = {}
        self.input = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])

    def _name(self, prefix: str) -> str:
        return f"{prefix}{len(self.nodes)}"

    def _const(self, prefix: str, value: np.ndarray) -> str:
        name = f"{prefix}_{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def _node(self, op: str, inputs: list[str], channels: int, **attrs) -> str:
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        self.c[out] = channels
        return out

    def conv(self, x: str, cout: int, *, k: int = 3, group: int = 1, bias: bool = True, stride: int = 1) -> str:
        w = self._const("w", self.rng.standard_normal((cout, self.c[x] // group, k, k)) * 0.5)
        inputs = [x, w] + ([self._const("b", self.rng.standard_normal(cout) * 0.1)] if bias else [])
        return self._node("Conv", inputs, cout, kernel_shape=[k, k], pads=[k // 2] * 4, group=group,
                          strides=[stride, stride])

    def dw(self, x: str) -> str:
        return self.conv(x, self.c[x], group=self.c[x])

    def conv_t(self, x: str, cout: int) -> str:
        w = self._const("wt", self.rng.standard_normal((self.c[x], cout, 2, 2)) * 0.5)
        return self._node("ConvTranspose", [x, w], cout, kernel_shape=[2, 2], strides=[2, 2])

    def bn(self, x: str) -> str:
        c = self.c[x]
        params = [self._const("g", self.rng.uniform(0.5, 1.5, c)), self._const("beta", self.rng.normal(0, .1, c)),
                  self._const("mean", self.rng.normal(0, .1, c)), self._const("var", self.rng.uniform(.5, 1.5, c))]
        return self._node("BatchNormalization", [x, *params], c)

    def act(self, x: str, op: str = "Relu", **attrs) -> str:
        return self._node(op, [x], self.c[x], **attrs)

    def clip(self, x: str, low: float, high: float) -> str:
        return self._node("Clip", [x, self._const("lo", np.array(low)), self._const("hi", np.array(high))],
                          self.c[x])

    def add(self, a: str, b: str) -> str:
        return self._node("Add", [a, b], self.c[a])

    def mul(self, a: str, b: str) -> str:
        return self._node("Mul", [a, b], self.c[a])

    def add_const(self, x: str, value: np.ndarray) -> str:
        return self._node("Add", [x, self._const("k", value)], self.c[x])

    def concat(self, *xs: str) -> str:
        return self._node("Concat", list(xs), sum(self.c[x] for x in xs), axis=1)

    def gap(self, x: str) -> str:
        return self._node("GlobalAveragePool", [x], self.c[x])

    def resize(self, x: str, scale: float = 2.0) -> str:
        roi = self._const("roi", np.zeros(0))
        scales = self._const("scales", np.array([1, 1, scale, scale]))
        return self._node("Resize", [x, roi, scales], self.c[x], mode="nearest")

    def build(self, *outputs: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "net", [self.input],
                                  [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * self.rank.get(o, 4))
                                   for o in outputs],
                                  self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        onnx.checker.check_model(model)
        return model


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort_session(model).run(None, {"x": x})


def silence_cut_channels(model: onnx.ModelProto, plan) -> onnx.ModelProto:
    """Zero every consumer's weights for the input channels the plan will cut, so cutting them changes nothing."""
    work = prepare(model)
    index = GraphIndex(work)
    keeps, full = tensor_keeps(plan)
    for g in [*plan.groups, *plan.composites]:
        for e in g.edits:
            if e.role != "consumer":
                continue
            name = index.nodes[e.node].input[1]
            w = index.array(name).copy()
            dropped = np.setdiff1d(np.arange(full[e.tensor]), keeps[e.tensor])
            index_tuple = [slice(None)] * w.ndim
            index_tuple[e.axis] = dropped
            w[tuple(index_tuple)] = 0
            index.set_array(name, w)
    return work


def assert_equivalent_after_cut(model: onnx.ModelProto, ratio: float = 0.5, **kwargs) -> onnx.ModelProto:
    plan = plan_channels(model, ratio=ratio, input_shape=(1, 3, 16, 16), **kwargs)
    assert plan.channels_pruned > 0
    silent = silence_cut_channels(model, plan)
    pruned = cut_channels(silent, plan)
    onnx.checker.check_model(pruned)
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    before, after = run(silent, x), run(pruned, x)
    for b, a in zip(before, after, strict=True):
        assert a.shape == b.shape
        assert np.abs(a - b).max() < 1e-4
    return pruned


def weight_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    index = GraphIndex(model)
    return {n.name: tuple(index.array(n.input[1]).shape) for n in model.graph.node
            if n.op_type in ("Conv", "ConvTranspose")}


# ---- plan ---------------------------------------------------------------------------------------------------

def test_conv_bn_relu_chain_plans_one_group_per_inner_conv_and_cuts_them():
    # x -> conv(8) -> BN -> relu -> conv(12) -> relu -> conv(4) -> y
    net = Net()
    a = net.act(net.bn(net.conv("x", 8)))
    b = net.act(net.conv(a, 12))
    y = net.conv(b, 4)
    model = net.build(y)
    plan = plan_channels(model, ratio=0.5, input_shape=(1, 3, 16, 16))
    assert [(g.name, g.channels, g.kept) for g in plan.groups] == [("conv0", 8, 4), ("conv3", 12, 6)]
    assert plan.group("conv0").followers == ("batchnormalization1",)
    assert [s.name for s in plan.skipped] == ["conv5"]
    assert "model output" in plan.skipped[0].reason
    pruned = cut_channels(model, plan)
    assert weight_shapes(pruned) == {"conv0": (4, 3, 3, 3), "conv3": (6, 4, 3, 3), "conv5": (4, 6, 3, 3)}
    assert plan.flops_after < plan.flops_before and plan.params_after < plan.params_before
    x = np.zeros((1, 3, 16, 16), np.float32)
    assert run(pruned, x)[0].shape == (1, 4, 16, 16)


def test_zeroed_filters_cut_from_a_bn_chain_leave_the_outputs_unchanged():
    # The literal check: zero the filters (and their BN shift) that will be cut, cut, compare.
    net = Net()
    a = net.act(net.bn(net.conv("x", 8)))
    y = net.conv(a, 4)
    model = prepare(net.build(y))
    plan = plan_channels(model, ratio=0.5, input_shape=(1, 3, 16, 16))
    dropped = sorted(set(range(8)) - set(plan.group("conv0").keep))
    index = GraphIndex(model)
    for name in ("w_0", "b_1", "beta_3", "mean_4"):  # conv weight, conv bias, BN beta, BN mean
        value = index.array(name).copy()
        value[dropped] = 0
        index.set_array(name, value)
    pruned = cut_channels(model, plan)
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    assert np.abs(run(model, x)[0] - run(pruned, x)[0]).max() < 1e-4


def test_residual_add_couples_both_branches_into_one_group():
    # x -> conv a(8) -> relu -> conv b(8) -> Add(a', b) -> relu -> conv(4)
    net = Net()
    a = net.act(net.conv("x", 8))
    b = net.conv(a, 8)
    s = net.act(net.add(a, b))
    model = net.build(net.conv(s, 4))
    plan = plan_channels(model, ratio=0.5, input_shape=(1, 3, 16, 16))
    group = plan.group("conv0")
    assert group.producers == ("conv0", "conv2")
    assert set(group.consumers) == {"conv2", "conv5"}
    pruned = assert_equivalent_after_cut(model)
    assert weight_shapes(pruned)["conv2"] == (4, 4, 3, 3)


def test_concat_parts_are_cut_with_offset_bookkeeping():
    # x -> conv a(6) ; x -> conv b(10) ; Concat(a, b) -> conv(4)
    net = Net()
    a = net.act(net.conv("x", 6))
    b = net.act(net.conv("x", 10))
    model = net.build(net.conv(net.concat(a, b), 4))
    plan = plan_channels(model, ratios={"conv0": 0.5, "conv2": 0.3}, input_shape=(1, 3, 16, 16))
    assert [p[:2] for p in plan.composites[0].parts] == [("group", "conv0"), ("group", "conv2")]
    pruned = assert_equivalent_after_cut(model, ratios={"conv0": 0.5, "conv2": 0.3})
    assert weight_shapes(pruned)["conv5"] == (4, 3 + 7, 3, 3)


def test_depthwise_conv_follows_its_producer_and_keeps_group_equal_to_channels():
    net = Net()
    a = net.act(net.conv("x", 8, k=1))
    d = net.clip(net.dw(a), 0.0, 6.0)
    model = net.build(net.conv(d, 4, k=1))
    pruned = assert_equivalent_after_cut(model)
    dw = next(n for n in pruned.graph.node if n.name == "conv2")
    assert weight_shapes(pruned)["conv2"] == (4, 1, 3, 3)
    assert next(a.i for a in dw.attribute if a.name == "group") == 4


def test_squeeze_excite_gate_is_cut_with_the_trunk():
    # trunk t(8) -> GAP -> conv(2) -> relu -> conv(8) -> HardSigmoid -> Mul(t, gate) -> conv(4)
    net = Net()
    t = net.act(net.conv("x", 8))
    gate = net.act(net.conv(net.act(net.conv(net.gap(t), 2, k=1)), 8, k=1), "HardSigmoid", alpha=0.2, beta=0.5)
    model = net.build(net.conv(net.mul(t, gate), 4))
    plan = plan_channels(model, ratio=0.5, input_shape=(1, 3, 16, 16))
    trunk = plan.group("conv0")
    assert trunk.producers == ("conv0", "conv5")  # the excite conv's filters go with the trunk's channels
    assert "conv3" in trunk.consumers  # the squeeze conv reads the pooled trunk
    assert_equivalent_after_cut(model)


def test_resize_and_per_channel_constants_follow_the_group():
    net = Net()
    a = net.conv("x", 8, stride=2)
    b = net.add_const(net.act(a), np.linspace(-1, 1, 8).reshape(1, 8, 1, 1))
    up = net.resize(b)
    model = net.build(net.conv(up, 4))
    plan = plan_channels(model, ratio=0.5, input_shape=(1, 3, 16, 16))
    assert "add2" in plan.group("conv0").followers
    assert_equivalent_after_cut(model)


def test_resize_with_constant_sizes_gets_its_channel_entry_updated():
    net = Net()
    a = net.act(net.conv("x", 8))
    sizes = net._const("sizes", np.array([1, 8, 32, 32]))
    net.inits[-1] = numpy_helper.from_array(np.array([1, 8, 32, 32], np.int64), sizes)
    up = net._node("Resize", [a, "", "", sizes], 8, mode="nearest")
    model = net.build(net.conv(up, 4))
    pruned = assert_equivalent_after_cut(model)
    assert GraphIndex(pruned).array(sizes).tolist() == [1, 4, 32, 32]


def test_conv_transpose_as_producer_and_as_consumer():
    # x -> conv(8) -> relu -> ConvT(8->6) -> Add(per-channel bias) -> relu -> ConvT(6->2)
    net = Net()
    a = net.act(net.conv("x", 8))
    t = net.act(net.add_const(net.conv_t(a, 6), np.arange(6, dtype=np.float32).reshape(1, 6, 1, 1) / 6))
    model = net.build(net.conv_t(t, 2))
    pruned = assert_equivalent_after_cut(model)
    shapes = weight_shapes(pruned)
    assert shapes["convtranspose2"] == (4, 3, 2, 2) and shapes["convtranspose5"] == (3, 2, 2, 2)


def test_groups_the_planner_cannot_follow_are_left_alone_with_the_reason():
    # conv a(8) -> Flatten -> Gemm: a cannot be cut; conv b(8) -> grouped conv(g=2): b cannot be cut
    net = Net(size=4)
    a = net.act(net.conv("x", 8))
    flat = net._node("Flatten", [a], 0)
    gemm_w = net._const("gw", net.rng.standard_normal((8 * 16, 5)))
    y1 = net._node("Gemm", [flat, gemm_w], 0)
    net.rank[y1] = 2
    b = net.act(net.conv("x", 8))
    y2 = net.conv(net.conv(b, 8, group=2), 3)
    model = net.build(y1, y2)
    plan = plan_channels(model, ratio=0.5, input_shape=(1, 3, 4, 4))
    reasons = {s.name: s.reason for s in plan.skipped}
    assert "Flatten" in reasons["conv0"]
    assert "grouped Conv 'conv6'" in reasons["conv4"]
    assert "model output" in reasons["conv7"]
    assert [g.name for g in plan.groups] == []


def test_a_concat_that_reaches_the_output_makes_its_parts_unprunable():
    net = Net()
    a, b = net.conv("x", 4), net.conv("x", 4)
    model = net.build(net.concat(net.act(a), net.act(b)))
    plan = plan_channels(model, ratio=0.5, input_shape=(1, 3, 16, 16))
    assert not plan.groups
    assert all("concatenated into" in s.reason for s in plan.skipped)
    with pytest.raises(ModelError, match="no channel group can be pruned safely"):
        prune_channels(model, ChannelConfig(ratio=0.5, reconstruct=False))


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5])
def test_ratio_outside_the_open_unit_interval_is_refused(ratio):
    net = Net()
    model = net.build(net.conv(net.conv("x", 4), 2))
    with pytest.raises(UsageError, match=r"pruning ratio must be in \(0, 1\)"):
        plan_channels(model, ratio=ratio)
    with pytest.raises(UsageError):
        ChannelConfig(ratio=ratio)


def test_unknown_importance_and_group_names_are_refused_with_the_valid_ones():
    net = Net()
    model = net.build(net.conv(net.conv("x", 4), 2))
    with pytest.raises(UsageError, match="l1, l2, bn, activation"):
        plan_channels(model, ratio=0.5, importance="taylor")
    with pytest.raises(UsageError, match="conv0"):
        plan_channels(model, ratio=0.5, skip=["nope"])


# ---- importance ----------------------------------------------------------------------------------------------

def test_l1_keeps_the_largest_filters_and_bn_keeps_the_largest_gammas():
    net = Net()
    a = net.bn(net.conv("x", 6))
    model = prepare(net.build(net.conv(net.act(a), 2)))
    index = GraphIndex(model)
    w = index.array("w_0").copy()
    w[[1, 4]] *= 100  # filters 1 and 4 dominate by L1
    index.set_array("w_0", w)
    gamma = np.array([9, 0.1, 0.1, 8, 0.1, 7], np.float32)
    index.set_array("g_2", gamma)
    l1 = plan_channels(model, ratio=0.67, importance="l1", input_shape=(1, 3, 16, 16))
    bn = plan_channels(model, ratio=0.5, importance="bn", input_shape=(1, 3, 16, 16))
    assert l1.group("conv0").keep == (1, 4)
    assert bn.group("conv0").keep == (0, 3, 5)


def test_activation_importance_needs_calibration_and_ranks_by_mean_abs_activation():
    net = Net()
    a = net.act(net.conv("x", 6))
    model = prepare(net.build(net.conv(a, 2)))
    index = GraphIndex(model)
    b = np.array([-50, 5, -50, 3, -50, 4], np.float32)  # relu kills channels 0, 2, 4
    index.set_array("b_1", b)
    with pytest.raises(UsageError, match="calibration"):
        plan_channels(model, ratio=0.5, importance="activation")
    calib = [np.random.default_rng(i).standard_normal((1, 3, 16, 16)).astype(np.float32) * 0.1 for i in range(3)]
    plan = plan_channels(model, ratio=0.5, importance="activation", calib=calib)
    assert plan.group("conv0").keep == (1, 3, 5)


# ---- reconstruction ------------------------------------------------------------------------------------------

def test_reconstruction_brings_outputs_closer_to_the_original_than_a_plain_cut():
    net = Net(size=12, seed=3)
    a = net.act(net.conv("x", 16))
    b = net.act(net.conv(a, 16))
    model = net.build(net.conv(b, 6))
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 3, 12, 12)).astype(np.float32) for _ in range(6)]
    held_out = rng.standard_normal((1, 3, 12, 12)).astype(np.float32)
    plan = plan_channels(model, ratio=0.5, input_shape=(1, 3, 12, 12))
    cut = cut_channels(model, plan)
    refit, report = reconstruct(model, cut, plan, calib)
    reference = run(model, held_out)[0]
    error_cut = np.abs(run(cut, held_out)[0] - reference).mean()
    error_refit = np.abs(run(refit, held_out)[0] - reference).mean()
    assert error_refit < error_cut
    assert report.mean_error_fit < report.mean_error_cut
    assert {f.node for f in report.layers} == {"conv2", "conv4"}
    assert all(f.mode == "least squares" for f in report.layers)
    onnx.checker.check_model(refit)


def test_reconstruction_refits_conv_transpose_consumers_and_bias_only_after_a_global_pool():
    net = Net(size=8, seed=1)
    t = net.act(net.conv("x", 8))
    gate = net.act(net.conv(net.gap(t), 8, k=1), "Sigmoid")
    model = net.build(net.conv_t(net.mul(t, gate), 3))
    calib = [np.random.default_rng(i).standard_normal((1, 3, 8, 8)).astype(np.float32) for i in range(4)]
    plan = plan_channels(model, ratio=0.5, input_shape=(1, 3, 8, 8))
    _, report = reconstruct(model, cut_channels(model, plan), plan, calib)
    modes = {f.node: f.mode for f in report.layers}
    assert modes["conv3"] in ("bias only", "kept cut")  # 4 rows (one per image) cannot fit 8 weights
    assert modes["convtranspose6"] in ("least squares", "kept cut")
    assert report.layers and all(f.error_fit <= f.error_cut for f in report.layers)


# ---- the real detector ---------------------------------------------------------------------------------------

def test_ppocr_det_pruned_at_0_3_runs_in_ort_and_both_opencv_engines(det_model, tmp_path):
    from cvtune.model import save_onnx
    from cvtune.runtimes import make_runtime

    plan = plan_channels(det_model, ratio=0.3, input_shape=(1, 3, 96, 96))
    assert len(plan.groups) > 20 and plan.flops_before / plan.flops_after > 1.5
    calib = [np.random.default_rng(i).uniform(-1, 1, (1, 3, 96, 96)).astype(np.float32) for i in range(2)]
    pruned, report = prune_channels(det_model, ChannelConfig(ratio=0.3), calib=calib)
    assert report.reconstruction is not None and report.reconstruction.mean_error_fit < \
        report.reconstruction.mean_error_cut
    path = save_onnx(pruned, tmp_path / "det_pruned.onnx")
    x = calib[0]
    from cvtune.runtimes.opencv import available_engines

    runtimes = (make_runtime("ort"), *(make_runtime("opencv", engine=e) for e in available_engines() if e != "auto"))
    for runtime in runtimes:
        session = runtime.open(path)
        out = session.run(x)
        session.close()
        assert out[0].shape == (1, 1, 96, 96), runtime.label()


def test_protect_tail_leaves_the_layers_nearest_the_output_dense():
    # x -> conv(8) -> relu -> conv(12) -> relu -> conv(6) -> relu -> conv(4) -> y
    net = Net()
    a = net.act(net.conv("x", 8))
    b = net.act(net.conv(a, 12))
    c = net.act(net.conv(b, 6))
    model = net.build(net.conv(c, 4))
    names = [n.name for n in model.graph.node if n.op_type == "Conv"]
    config = ChannelConfig(ratio=0.5, reconstruct=False, protect_tail=2)
    pruned, report = prune_channels(model, config, input_shape=(1, 3, 16, 16))
    kept = {g.name: g.kept for g in report.plan.groups}
    assert kept == {names[0]: 4, names[1]: 6, names[2]: 6}  # the third conv (6 channels) stays whole
    assert "last 2 weighted layers" in report.plan.group(names[2]).note
    assert weight_shapes(pruned)[names[2]] == (6, 6, 3, 3)


def _renamed(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node, name in zip(out.graph.node, names, strict=True):
        node.name = name
    return out


@pytest.mark.parametrize("style", ["empty", "lower-case", "duplicate", "arbitrary"])
def test_pruning_never_depends_on_how_the_nodes_are_named(style, tmp_path):
    # issue 11: a classifier with lower-case (or no) node names made every search candidate fail with
    # "unknown channel group 'conv_87'". The same 4-conv chain, named four ways, prunes the same way.
    from cvtune.passes import BuildContext, ChannelPrune

    net = Net()
    a = net.act(net.conv("x", 8))
    b = net.act(net.conv(a, 12))
    c = net.act(net.conv(b, 6))
    base = net.build(net.conv(c, 4))
    n = len(base.graph.node)
    names = {"empty": [""] * n, "lower-case": [f"conv_{80 + i}" for i in range(n)],
             "duplicate": ["layer"] * n, "arbitrary": [f"{i}/räbbit:{i * 7}" for i in range(n)]}[style]
    model = _renamed(base, names)
    pruned, report = prune_channels(model, ChannelConfig(ratio=0.5, reconstruct=False, protect_tail=2),
                                    input_shape=(1, 3, 16, 16))
    assert sorted(g.kept for g in report.plan.groups) == [4, 6, 6]  # the third conv's group stays whole
    out = ChannelPrune(0.5, importance="l1", protect_tail=2, reconstruct=False).apply(
        model, BuildContext((1, 3, 16, 16), tmp_path))
    assert out.info["channels_pruned"] == report.plan.channels_pruned == 4 + 6
    # a group can be skipped by its producer's output tensor, whatever the node is called
    second_conv_output = [nd for nd in model.graph.node if nd.op_type == "Conv"][1].output[0]
    plan = plan_channels(model, ratio=0.5, input_shape=(1, 3, 16, 16), skip=[second_conv_output])
    assert sorted(g.kept for g in plan.groups) == [3, 4, 12]
