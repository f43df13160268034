"""The channel planner's op-handler registry: which ops it follows is data (OP_HANDLERS), an op without a handler
stops the walk with a reason naming it, and supporting a new op is one `@handles(...)` function."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cvtune.compress import cut_channels, plan_channels
from cvtune.compress.graph import ort_session
from cvtune.compress.plan import OP_HANDLERS, ChannelWalk, handles

SHAPE = (1, 3, 8, 8)


def conv_op_conv(op: str, **attrs) -> onnx.ModelProto:
    """x(1,3,8,8) -> Conv 'conv0' (3->8) -> c0 -> <op> 'mid' -> m -> Conv 'conv1' (8->4) -> y."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
             for name, shape in (("w0", (8, 3, 1, 1)), ("b0", (8,)), ("w1", (4, 8, 1, 1)))]
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0"),
             helper.make_node(op, ["c0"], ["m"], name="mid", **attrs),
             helper.make_node("Conv", ["m", "w1"], ["y"], name="conv1")]
    graph = helper.make_graph(nodes, "conv_op_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model


@pytest.fixture
def restore_handlers():
    """Handlers a test registers are gone afterwards."""
    saved = dict(OP_HANDLERS)
    yield
    OP_HANDLERS.clear()
    OP_HANDLERS.update(saved)


def test_the_registry_covers_the_ops_the_planner_follows_and_only_those():
    followed = {"Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "Relu", "PRelu", "Clip",
                "HardSwish", "Sigmoid", "MaxPool", "GlobalAveragePool", "Resize", "Upsample", "Pad", "Add", "Mul",
                "Sub", "Div", "Pow", "Concat"}
    assert followed <= set(OP_HANDLERS)
    assert not {"Reshape", "Flatten", "Transpose", "Gemm", "MatMul", "Softmax", "Split", "Slice", "LRN"} & set(
        OP_HANDLERS)
    # one function per op family
    assert OP_HANDLERS["Conv"] is OP_HANDLERS["ConvTranspose"]
    assert OP_HANDLERS["Relu"] is OP_HANDLERS["MaxPool"] is OP_HANDLERS["PRelu"]
    assert OP_HANDLERS["Add"] is OP_HANDLERS["Mul"] is not OP_HANDLERS["Concat"]


def test_an_op_without_a_handler_leaves_its_group_alone_with_a_reason_naming_the_op():
    # LRN mixes neighbouring channels: cutting conv0's filters would change what the kept channels see.
    model = conv_op_conv("LRN", size=3)
    plan = plan_channels(model, ratio=0.5, input_shape=SHAPE)
    reasons = {s.name: s.reason for s in plan.skipped}
    assert reasons["conv0"] == "feeds LRN 'mid', which the planner does not follow"
    assert plan.groups == ()
    assert plan.channels_pruned == 0


def test_registering_a_handler_for_a_new_op_makes_its_group_prunable(restore_handlers):
    model = conv_op_conv("Shrink", lambd=0.1)
    before = plan_channels(model, ratio=0.5, input_shape=SHAPE)
    assert "Shrink 'mid'" in {s.name: s.reason for s in before.skipped}["conv0"]

    @handles("Shrink")
    def _shrink(walk: ChannelWalk, node: onnx.NodeProto) -> None:
        walk.link(node.input[0], node.output[0])  # elementwise: channel c in is channel c out

    plan = plan_channels(model, ratio=0.5, input_shape=SHAPE)
    group = plan.group("conv0")
    assert (group.channels, group.kept, group.consumers) == (8, 4, ("conv1",))
    assert "m" in group.tensors
    pruned = cut_channels(model, plan)
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    (y,) = ort_session(pruned).run(None, {"x": x})
    assert y.shape == (1, 4, 8, 8)


def test_a_handler_can_refuse_a_tensor_with_its_own_reason(restore_handlers):
    @handles("Shrink")
    def _shrink(walk: ChannelWalk, node: onnx.NodeProto) -> None:
        walk.mark(node.input[0], f"Shrink '{node.name}' is not supported yet")

    plan = plan_channels(conv_op_conv("Shrink"), ratio=0.5, input_shape=SHAPE)
    assert {s.name: s.reason for s in plan.skipped}["conv0"] == "Shrink 'mid' is not supported yet"


def test_a_second_handler_for_an_op_is_refused_and_the_first_stays():
    conv = OP_HANDLERS["Conv"]
    with pytest.raises(ValueError, match=r"op 'Conv' already has a channel handler .* del OP_HANDLERS\['Conv'\]"):
        handles("Conv")(lambda walk, node: None)
    assert OP_HANDLERS["Conv"] is conv
