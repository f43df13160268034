"""Tiny ONNX graphs built in code for tests (shared by several test files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_relu(path: Path | None = None, *, channels: int = 4, size: int = 8, dynamic: bool = False,
              seed: int = 0) -> onnx.ModelProto:
    """x(1,3,H,W) -> Conv(3->C, 3x3, pad 1) -> Relu -> y(1,C,H,W)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "b")
    dims = ["N", 3, "H", "W"] if dynamic else [1, 3, size, size]
    out_dims = ["N", channels, "H", "W"] if dynamic else [1, channels, size, size]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"], name="relu0")],
        "conv_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, str(path))
    return model


def conv_chain(path: Path | None = None, *, size: int = 16, hidden: int = 8, seed: int = 0) -> onnx.ModelProto:
    """x(1,3,H,W) -> Conv(3->hidden) -> Relu -> Conv(hidden->4) -> y: the smallest graph with a prunable group."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
             for name, shape in (("w0", (hidden, 3, 3, 3)), ("b0", (hidden,)), ("w1", (4, hidden, 3, 3)),
                                 ("b1", (4,)))]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
         helper.make_node("Conv", ["r0", "w1", "b1"], ["y"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
        "conv_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, size, size])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, str(path))
    return model


def head_model(path: Path, outputs: dict[str, np.ndarray], *, size: tuple[int, int] = (64, 64),
               gain: float = 0.0) -> Path:
    """A stand-in detector/segmenter whose outputs are laid out as a published head returns them:

        x (1, 3, H, W) -> ReduceMean -> m (1,)
        out_k = const_k + gain * m        for each named output (gain 0: exactly const_k on every image)

    `gain` > 0 makes outputs depend on the image (a model to quantize or to compare with another)."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0)]
    inits = [numpy_helper.from_array(np.array(gain, np.float32), "gain")]
    nodes.append(helper.make_node("Mul", ["m", "gain"], ["g"]))
    graph_outputs = []
    for name, value in outputs.items():
        value = np.asarray(value, np.float32)
        inits.append(numpy_helper.from_array(value, f"{name}_const"))
        nodes.append(helper.make_node("Add", [f"{name}_const", "g"], [name]))
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, *size])],
                              graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# ---- models cvtune must refuse at load (the bad-input catalogue) ------------------------------------------------

def no_input(path: Path) -> onnx.ModelProto:
    """A graph with no input at all: y = Constant."""
    const = numpy_helper.from_array(np.ones((1, 4), np.float32), "c")
    graph = helper.make_graph([helper.make_node("Constant", [], ["y"], value=const)], "no_input", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return model


def unary(path: Path, *, dims: list[int], elem_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """x(dims, elem_type) -> Cast(float) -> Relu -> y: any rank and input type (5-D, uint8, ...)."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT), helper.make_node("Relu", ["f"], ["y"])],
        "unary", [helper.make_tensor_value_info("x", elem_type, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return model


def with_external_data(folder: Path, location: str, *, data_path: Path | None = None) -> Path:
    """conv_relu saved as folder/m.onnx with its weights in external data named `location` (written at
    `data_path`, default folder/location). The location may point anywhere: '../w.bin', '/abs/w.bin', a link."""
    folder.mkdir(parents=True, exist_ok=True)
    proto = conv_relu()
    onnx.external_data_helper.convert_model_to_external_data(proto, all_tensors_to_one_file=True,
                                                             location="weights.bin", size_threshold=0)
    onnx.save(proto, str(folder / "m.onnx"))
    written = folder / "weights.bin"
    proto = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(proto, str(folder / "m.onnx"))
    target = data_path if data_path is not None else folder / location
    if target.resolve() != written.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        written.replace(target)
    return folder / "m.onnx"
