"""Empirical bias correction (NNCF's FastBiasCorrection, AIMET's empirical bias correction) for static int8.

Rounding the weights of a layer does not average out: summed over a kernel, the weight error times a post-ReLU
input (mean > 0) shifts each output channel's mean, and the shift compounds layer after layer. For every quantized
Conv/Gemm this measures, on the calibration images, the float output's per-channel mean and the mean of the same
layer run on its quantize-dequantized input and weights (the quantizer's own scales, read from a QDQ model), both
fed the *float* model's activations, so each layer's shift is its own and the corrections compose. The float
bias is then moved by (float mean - quantized mean) and the model quantized again with the same activation ranges.

One probe model computes all layers at once and outputs only per-channel means, one image at a time: memory holds
one image's activations whatever the number of calibration images.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph import opset_of

__all__ = ["BiasShifts", "apply_bias_shifts", "measure_bias_shifts"]

CORRECTED_OPS = ("Conv", "Gemm")


@dataclass(frozen=True)
class BiasShifts:
    """Per layer (node name): the per-channel shift to add to its float bias, and its float output mean's scale
    (mean |float mean|) to judge the shift against."""

    shifts: dict[str, np.ndarray]
    scale: dict[str, float] = field(default_factory=dict)
    images: int = 0

    def summary(self) -> str:
        if not self.shifts:
            return "bias correction: no quantized Conv/Gemm layer to correct"
        rel = [float(np.abs(s).mean()) / max(self.scale.get(n, 0.0), 1e-12) for n, s in self.shifts.items()]
        return (f"bias correction: {len(self.shifts)} layer(s) on {self.images} image(s), median output mean shift "
                f"{np.median(rel):.2%} of the layer's mean output (max {max(rel):.2%})")

    def save(self, path: Path) -> None:
        np.savez(path, **{f"s::{k}": v for k, v in self.shifts.items()},
                 **{f"m::{k}": np.array(v) for k, v in self.scale.items()}, images=np.array(self.images))

    @classmethod
    def load(cls, path: Path) -> BiasShifts:
        with np.load(path) as data:
            shifts = {k[3:]: data[k] for k in data.files if k.startswith("s::")}
            scale = {k[3:]: float(data[k]) for k in data.files if k.startswith("m::")}
            return cls(shifts, scale, int(data["images"]))

    def to_dict(self) -> dict[str, Any]:
        return {"layers": len(self.shifts), "images": self.images, "summary": self.summary()}


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


@dataclass(frozen=True)
class _Grid:
    """How a quantized model quantizes one layer: its input's (scale, zero point) and its weight's (int tensor,
    scale, zero point, per-channel axis), as initializer names of that model."""

    act: tuple[str, ...]
    weight: tuple[str, ...]
    axis: int | None


def _grid(qmodel: onnx.ModelProto, name: str, op_type: str, nodes: dict[str, onnx.NodeProto],
          producer: dict[str, onnx.NodeProto], inits: set[str]) -> _Grid | None:
    """The grid the quantized model uses for float layer `name`: a QDQ model's DequantizeLinear pair before the
    node, or a QOperator model's QLinearConv / QGemm (named `<name>_quant` by ORT's quantizer); None when the layer
    is not quantized (kept in float)."""
    node = nodes.get(name)
    if node is not None and node.op_type == op_type and len(node.input) > 1:
        act, weight = producer.get(node.input[0]), producer.get(node.input[1])
        if (act is None or weight is None or act.op_type != "DequantizeLinear"
                or weight.op_type != "DequantizeLinear" or weight.input[0] not in inits):
            return None
        axis = next((a.i for a in weight.attribute if a.name == "axis"), None)
        return _Grid(tuple(act.input[1:]), tuple(weight.input), axis)
    fused = nodes.get(f"{name}_quant")
    if fused is None or len(fused.input) < 6 or fused.input[3] not in inits:
        return None
    if fused.op_type == "QLinearConv" and op_type == "Conv":
        axis = 0
    elif fused.op_type == "QGemm" and op_type == "Gemm":
        axis = 0 if _attr(fused, "transB", 0) else 1
    else:
        return None
    scale = next((t for t in qmodel.graph.initializer if t.name == fused.input[4]), None)
    per_channel = scale is not None and int(np.prod(scale.dims or [1])) > 1
    return _Grid(tuple(fused.input[1:3]), tuple(fused.input[3:6]), axis if per_channel else None)


def _reduce_mean(inp: str, out: str, axes: list[int], opset: int, nodes: list, inits: list) -> None:
    if opset >= 18:
        axes_name = f"{out}::axes"
        inits.append(numpy_helper.from_array(np.array(axes, np.int64), axes_name))
        nodes.append(helper.make_node("ReduceMean", [inp, axes_name], [out], keepdims=0))
    else:
        nodes.append(helper.make_node("ReduceMean", [inp], [out], axes=axes, keepdims=0))


def probe_model(float_model: onnx.ModelProto, qdq_model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """The float model plus, for every Conv/Gemm quantized in `qdq_model` (QDQ or QOperator, as ORT's quantizer
    writes them), a copy of the layer reading its quantize-dequantized float input and weights, on that model's own
    grid; outputs are the per-channel output means of both. Returns (probe, the layer names measured)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(float_model)
    graph = probe.graph
    opset = opset_of(probe)
    q_inits = {t.name: t for t in qdq_model.graph.initializer}
    q_nodes = {n.name: n for n in qdq_model.graph.node if n.name}
    q_producer = {o: n for n in qdq_model.graph.node for o in n.output}
    names = set(q_inits)
    f_inits = {t.name for t in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    outputs: list[onnx.ValueInfoProto] = []
    measured: list[str] = []
    for node in list(graph.node):
        if node.op_type not in CORRECTED_OPS or not node.name or len(node.input) < 2 or node.input[1] not in f_inits:
            continue
        if node.op_type == "Gemm" and _attr(node, "transA", 0):
            continue
        grid = _grid(qdq_model, node.name, node.op_type, q_nodes, q_producer, names)
        if grid is None:
            continue
        tag = f"bc::{node.name}"

        def copy(name: str, tag: str = tag) -> str:
            if not name:
                return ""
            inits.append(numpy_helper.from_array(numpy_helper.to_array(q_inits[name]), f"{tag}::{name}"))
            return f"{tag}::{name}"

        if any(i and i not in q_inits for i in (*grid.act, *grid.weight)):
            continue
        act_q = [node.input[0], *(copy(i) for i in grid.act)]
        nodes.append(helper.make_node("QuantizeLinear", act_q, [f"{tag}::xq"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{tag}::xq", *act_q[1:]], [f"{tag}::x"]))
        dq = helper.make_node("DequantizeLinear", [copy(i) for i in grid.weight], [f"{tag}::w"])
        if grid.axis is not None:
            dq.attribute.append(helper.make_attribute("axis", grid.axis))
        nodes.append(dq)
        twin = helper.make_node(node.op_type, [f"{tag}::x", f"{tag}::w", *node.input[2:]], [f"{tag}::y"],
                                name=f"{tag}::layer")
        twin.attribute.extend(node.attribute)
        nodes.append(twin)
        rank = len(numpy_helper.to_array(next(t for t in graph.initializer if t.name == node.input[1])).shape)
        axes = [0] if node.op_type == "Gemm" else [0, *range(2, rank)]
        for src, kind in ((node.output[0], "f"), (f"{tag}::y", "q")):
            out = f"{tag}::mean_{kind}"
            _reduce_mean(src, out, axes, opset, nodes, inits)
            outputs.append(helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
        measured.append(node.name)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.extend(outputs)
    del graph.value_info[:]
    return probe, measured


def measure_bias_shifts(float_model: str | Path, qdq_model: str | Path, calibration: Iterable[np.ndarray]
                        ) -> BiasShifts:
    """Per quantized Conv/Gemm of `qdq_model` (a QDQ quantization of `float_model`, same node names): float output
    mean minus quantized output mean per channel, over the calibration tensors (streamed one at a time)."""
    import onnxruntime as ort

    probe, measured = probe_model(onnx.load(str(float_model)), onnx.load(str(qdq_model)))
    if not measured:
        return BiasShifts({})
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    sums: dict[str, np.ndarray] = {}
    images = 0
    for tensor in calibration:
        for name, value in zip(names, session.run(None, {input_name: tensor}), strict=True):
            sums[name] = sums.get(name, 0) + np.asarray(value, np.float64)
        images += 1
    if not images:
        return BiasShifts({})
    shifts, scale = {}, {}
    for layer in measured:
        mean_f, mean_q = sums[f"bc::{layer}::mean_f"] / images, sums[f"bc::{layer}::mean_q"] / images
        shifts[layer] = (mean_f - mean_q).astype(np.float32)
        scale[layer] = float(np.abs(mean_f).mean())
    return BiasShifts(shifts, scale, images)


def apply_bias_shifts(model: onnx.ModelProto, shifts: BiasShifts, *, skip: Iterable[str] = ()
                      ) -> tuple[onnx.ModelProto, int]:
    """A copy of the float `model` with each measured layer's bias moved by its shift (a zero bias added where the
    layer has none); layers in `skip` (kept in float) are left alone. Returns (model, layers corrected)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    skipped = set(skip)
    corrected = 0
    for node in graph.node:
        shift = shifts.shifts.get(node.name)
        if shift is None or node.name in skipped:
            continue
        if node.op_type == "Gemm":
            shift = shift / float(_attr(node, "beta", 1.0) or 1.0)
        has_bias = len(node.input) > 2 and node.input[2] in inits
        current = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32) if has_bias else 0.0
        if has_bias and np.shape(current) != np.shape(shift) and np.size(current) != 1:
            continue  # a broadcast bias of another shape: leave it
        value = (current + shift).astype(np.float32)
        name = f"{node.name}::corrected_bias"
        graph.initializer.append(numpy_helper.from_array(value, name))
        inits[name] = graph.initializer[-1]
        if has_bias:
            readers[node.input[2]] -= 1
            node.input[2] = name
        elif len(node.input) == 2:
            node.input.append(name)
        else:
            continue
        corrected += 1
    keep = [t for t in graph.initializer if readers.get(t.name, 1) > 0]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return out, corrected
