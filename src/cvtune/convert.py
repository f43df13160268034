"""TFLite and TensorFlow models to ONNX, so transforms, ONNX Runtime and OpenVINO apply to them.

Converters are registered by name. `tflite` is cvtune's own: it reads the flatbuffer with the `tflite` package (no
TensorFlow) and maps the float vision ops (convolutions, pooling, elementwise maths, resize, pad, concat, reshape,
MediaPipe's Convolution2DTransposeBias) onto an NCHW ONNX graph, as OpenCV's TFLite importer runs it. Measured on
MediaPipe's models (see README): tflite2onnx 0.4.1 fails on palm_detection_lite (layout propagation) and
selfie_segmentation (HARD_SWISH); tf2onnx's TFLite path imports TensorFlow and leaves the custom transpose
convolution as an op no runtime has; OpenVINO reads .tflite and .pb but writes IR, not ONNX. `tf2onnx` stays
registered for TensorFlow .pb graphs when TensorFlow is installed (an optional extra).

Every result is checked against OpenCV's own run of the original (`check_conversion`), and `ensure_onnx` caches
conversions by content so a search converts once.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import ModelError
from .files import atomic_path, refuse_overwrite_of_input

__all__ = ["CONVERTERS", "ConversionError", "convert", "ensure_onnx", "TFLITE_OPS"]

OPSET = 13
ATOL, RTOL = 1e-4, 1e-3  # check_conversion's tolerance: float32 kernels that sum in another order
NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}  # where an NHWC axis lands in NCHW


class ConversionError(ModelError):
    """A model could not be converted to ONNX; the message names the converter and what it could not do."""


# ---- the TFLite flatbuffer -> ONNX converter ---------------------------------------------------------------------
class _Graph:
    """One TFLite subgraph being rewritten as ONNX: 4-D activations live in NCHW, constants stay numpy arrays
    (folded where they feed DEQUANTIZE) until an op needs them as initializers."""

    def __init__(self, model, data: bytes, path: Path) -> None:
        from .model import TFLITE_DTYPES

        self.model, self.data, self.path = model, data, path
        self.sub = model.Subgraphs(0)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.consts: dict[int, np.ndarray] = {}
        self.names: dict[int, str] = {}
        self.dtypes = TFLITE_DTYPES
        used: set[str] = set()
        for i in range(self.sub.TensorsLength()):
            raw = self.sub.Tensors(i).Name()
            name = raw.decode("utf-8", "replace") if raw else f"t{i}"
            if name in used:
                name = f"{name}__{i}"
            used.add(name)
            self.names[i] = name
            array = self._buffer(i)
            if array is not None:
                self.consts[i] = array
        self._counter = 0

    def _buffer(self, index: int) -> np.ndarray | None:
        tensor = self.sub.Tensors(index)
        buffer = self.model.Buffers(tensor.Buffer())
        if buffer is None:
            return None
        if buffer.Offset() > 1:  # large models keep buffers after the flatbuffer
            raw = self.data[buffer.Offset():buffer.Offset() + buffer.Size()]
        elif buffer.DataLength():
            raw = buffer.DataAsNumpy().tobytes()
        else:
            return None
        dtype = np.dtype(self.dtypes.get(tensor.Type(), "uint8"))
        shape = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()

    # tensors ------------------------------------------------------------------------------------------------
    def shape(self, index: int) -> list[int]:
        tensor = self.sub.Tensors(index)
        return [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []

    def quant(self, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        q = self.sub.Tensors(index).Quantization()
        if q is None or not q.ScaleLength():
            return None
        zero = q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(1, np.int64)
        return np.asarray(q.ScaleAsNumpy(), np.float32), np.asarray(zero, np.int64)

    def is_nchw(self, index: int) -> bool:
        """4-D activations are stored NCHW in the ONNX graph; constants and other ranks keep the file's order."""
        return index not in self.consts and len(self.shape(index)) == 4

    def fresh(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}__cv{self._counter}"

    def const_name(self, array: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def value(self, index: int, *, like: int | None = None) -> str:
        """The ONNX name of tensor `index`; a constant is materialized (laid out to broadcast against the NCHW
        tensor `like` when given)."""
        if index not in self.consts:
            return self.names[index]
        array = self.consts[index]
        if array.dtype == np.float16 or array.dtype == np.float64:
            array = array.astype(np.float32)
        if like is not None and self.is_nchw(like) and array.ndim >= 1 and array.size > 1:
            array = array.reshape((1,) * (4 - array.ndim) + array.shape).transpose(NHWC_TO_NCHW)
        return self.const_name(array, self.names[index])

    def emit(self, op_type: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=self.fresh(op_type), **attrs))

    def activation(self, code: int, x: str, out: str) -> None:
        """A fused activation (ActivationFunctionType) applied to `x`, written to `out`."""
        if code == 0:
            self.emit("Identity", [x], [out])
        elif code == 1:
            self.emit("Relu", [x], [out])
        elif code in (2, 3):
            low, high = (-1.0, 1.0) if code == 2 else (0.0, 6.0)
            self.emit("Clip", [x, self.const_name(np.float32(low), "lo"), self.const_name(np.float32(high), "hi")],
                      [out])
        elif code == 4:
            self.emit("Tanh", [x], [out])
        else:
            raise ConversionError(f"unsupported fused activation {code}")

    def fused(self, op_type: str, inputs: list[str], out_index: int, code: int, **attrs) -> None:
        """`op_type` then the fused activation `code`, ending in tensor `out_index`."""
        out = self.names[out_index]
        if code == 0:
            self.emit(op_type, inputs, [out], **attrs)
            return
        tmp = self.fresh(out)
        self.emit(op_type, inputs, [tmp], **attrs)
        self.activation(code, tmp, out)


def _options(op, cls):
    table = op.BuiltinOptions()
    if table is None:
        return None
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return options


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding along one axis: (before, after); the odd pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _pads(graph: _Graph, x: int, kernel: tuple[int, int], strides: tuple[int, int], padding: int,
          dilations: tuple[int, int] = (1, 1)) -> list[int]:
    if padding == 1:  # VALID
        return [0, 0, 0, 0]
    _, h, w, _ = graph.shape(x)
    top, bottom = _same_pads(h, kernel[0], strides[0], dilations[0])
    left, right = _same_pads(w, kernel[1], strides[1], dilations[1])
    return [top, left, bottom, right]


TFLITE_OPS: dict[str, Callable[[_Graph, object], None]] = {}


def _op(*names: str):
    """Register a TFLite op rule under its builtin name (or custom code)."""

    def register(fn):
        for name in names:
            TFLITE_OPS[name] = fn
        return fn

    return register


def _ins(op) -> list[int]:
    return [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []


def _outs(op) -> list[int]:
    return [int(i) for i in op.OutputsAsNumpy()]


def _weights(g: _Graph, index: int, what: str) -> np.ndarray:
    if index not in g.consts:
        raise ConversionError(f"{what} weights are computed at run time; only constant weights are supported")
    return g.consts[index].astype(np.float32)


@_op("CONV_2D")
def _conv(g: _Graph, op) -> None:
    import tflite

    ins, out = _ins(op), _outs(op)[0]
    opt = _options(op, tflite.Conv2DOptions)
    w = _weights(g, ins[1], "CONV_2D")  # (O, kh, kw, I)
    groups = g.shape(ins[0])[3] // w.shape[3]
    strides, dil = (opt.StrideH(), opt.StrideW()), (opt.DilationHFactor(), opt.DilationWFactor())
    inputs = [g.value(ins[0]), g.const_name(w.transpose(NHWC_TO_NCHW), g.names[ins[1]])]
    if len(ins) > 2 and ins[2] >= 0:
        inputs.append(g.value(ins[2]))
    g.fused("Conv", inputs, out, opt.FusedActivationFunction(), kernel_shape=list(w.shape[1:3]),
            strides=list(strides), dilations=list(dil), group=groups,
            pads=_pads(g, ins[0], w.shape[1:3], strides, opt.Padding(), dil))


@_op("DEPTHWISE_CONV_2D")
def _depthwise(g: _Graph, op) -> None:
    import tflite

    ins, out = _ins(op), _outs(op)[0]
    opt = _options(op, tflite.DepthwiseConv2DOptions)
    w = _weights(g, ins[1], "DEPTHWISE_CONV_2D")  # (1, kh, kw, C*M)
    channels = g.shape(ins[0])[3]
    strides, dil = (opt.StrideH(), opt.StrideW()), (opt.DilationHFactor(), opt.DilationWFactor())
    inputs = [g.value(ins[0]), g.const_name(w.transpose(3, 0, 1, 2), g.names[ins[1]])]
    if len(ins) > 2 and ins[2] >= 0:
        inputs.append(g.value(ins[2]))
    g.fused("Conv", inputs, out, opt.FusedActivationFunction(), kernel_shape=list(w.shape[1:3]),
            strides=list(strides), dilations=list(dil), group=channels,
            pads=_pads(g, ins[0], w.shape[1:3], strides, opt.Padding(), dil))


def _transpose_conv(g: _Graph, x: int, w_index: int, bias: int | None, out: int, padding: int,
                    strides: tuple[int, int], activation: int) -> None:
    w = _weights(g, w_index, "transpose convolution")  # (O, kh, kw, I)
    kh, kw = w.shape[1:3]
    _, h, wd, _ = g.shape(x)
    _, oh, ow, _ = g.shape(out)
    pads, extra = [], []
    for size, target, k, s in ((h, oh, kh, strides[0]), (wd, ow, kw, strides[1])):
        total = s * (size - 1) + k - target  # what ONNX must crop to land on the file's output size
        before = max(total, 0) // 2 if padding == 0 else 0
        pads.append((before, max(total, 0) - before))
        extra.append(max(-total, 0))
    inputs = [g.value(x), g.const_name(w.transpose(3, 0, 1, 2), g.names[w_index])]
    if bias is not None and bias >= 0:
        inputs.append(g.value(bias))
    g.fused("ConvTranspose", inputs, out, activation, kernel_shape=[kh, kw], strides=list(strides),
            pads=[pads[0][0], pads[1][0], pads[0][1], pads[1][1]], output_padding=extra)


@_op("TRANSPOSE_CONV")
def _transpose_conv_builtin(g: _Graph, op) -> None:
    import tflite

    ins = _ins(op)  # output_shape, weights, input, [bias]
    opt = _options(op, tflite.TransposeConvOptions)
    _transpose_conv(g, ins[2], ins[1], ins[3] if len(ins) > 3 else None, _outs(op)[0], opt.Padding(),
                    (opt.StrideH(), opt.StrideW()), opt.FusedActivationFunction())


@_op("Convolution2DTransposeBias")
def _transpose_conv_mediapipe(g: _Graph, op) -> None:
    """MediaPipe's custom op: input, weights (O, kh, kw, I), bias; options are a raw TfLiteTransposeConvParams
    struct {padding (1 = SAME, 2 = VALID), stride_width, stride_height}."""
    ins = _ins(op)
    raw = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
    if len(raw) < 12:
        raise ConversionError("Convolution2DTransposeBias without its padding/stride parameters")
    padding, stride_w, stride_h = struct.unpack("<iii", raw[:12])
    _transpose_conv(g, ins[0], ins[1], ins[2] if len(ins) > 2 else None, _outs(op)[0], 0 if padding == 1 else 1,
                    (stride_h, stride_w), 0)


@_op("MAX_POOL_2D", "AVERAGE_POOL_2D")
def _pool(g: _Graph, op) -> None:
    import tflite

    ins, out = _ins(op), _outs(op)[0]
    opt = _options(op, tflite.Pool2DOptions)
    kernel, strides = (opt.FilterHeight(), opt.FilterWidth()), (opt.StrideH(), opt.StrideW())
    attrs = {"kernel_shape": list(kernel), "strides": list(strides),
             "pads": _pads(g, ins[0], kernel, strides, opt.Padding())}
    if _name_of(g, op) == "AVERAGE_POOL_2D":
        g.fused("AveragePool", [g.value(ins[0])], out, opt.FusedActivationFunction(), count_include_pad=0, **attrs)
    else:
        g.fused("MaxPool", [g.value(ins[0])], out, opt.FusedActivationFunction(), **attrs)


def _binary(onnx_op: str, options_cls: str):
    def rule(g: _Graph, op) -> None:
        import tflite

        ins, out = _ins(op), _outs(op)[0]
        a, b = ins
        if g.is_nchw(a) != g.is_nchw(b) and a not in g.consts and b not in g.consts:
            raise ConversionError(f"{onnx_op} between a 4-D and a {len(g.shape(b))}-D activation")
        opt = _options(op, getattr(tflite, options_cls))
        code = opt.FusedActivationFunction() if opt is not None else 0
        g.fused(onnx_op, [g.value(a, like=b), g.value(b, like=a)], out, code)

    return rule


for _name, _onnx, _cls in (("ADD", "Add", "AddOptions"), ("SUB", "Sub", "SubOptions"), ("MUL", "Mul", "MulOptions"),
                           ("DIV", "Div", "DivOptions")):
    TFLITE_OPS[_name] = _binary(_onnx, _cls)


@_op("MAXIMUM", "MINIMUM")
def _max_min(g: _Graph, op) -> None:
    ins, out = _ins(op), _outs(op)[0]
    kind = "Max" if _name_of(g, op) == "MAXIMUM" else "Min"
    g.emit(kind, [g.value(ins[0], like=ins[1]), g.value(ins[1], like=ins[0])], [g.names[out]])


def _name_of(g: _Graph, op) -> str:
    from .model import tflite_op_name

    return tflite_op_name(g.model, op)


def _unary(onnx_op: str, **attrs):
    def rule(g: _Graph, op) -> None:
        g.emit(onnx_op, [g.value(_ins(op)[0])], [g.names[_outs(op)[0]]], **attrs)

    return rule


TFLITE_OPS.update({"RELU": _unary("Relu"), "LOGISTIC": _unary("Sigmoid"), "TANH": _unary("Tanh"),
                   "ELU": _unary("Elu"), "EXP": _unary("Exp"), "ABS": _unary("Abs"), "NEG": _unary("Neg"),
                   "SQRT": _unary("Sqrt"), "FLOOR": _unary("Floor")})


@_op("RELU6", "RELU_N1_TO_1")
def _clip(g: _Graph, op) -> None:
    g.activation(3 if _name_of(g, op) == "RELU6" else 2, g.value(_ins(op)[0]), g.names[_outs(op)[0]])


@_op("HARD_SWISH")
def _hard_swish(g: _Graph, op) -> None:
    """x * HardSigmoid(x) with alpha 1/6, beta 0.5: HardSwish spelled with ops every engine has."""
    x, out = g.value(_ins(op)[0]), g.names[_outs(op)[0]]
    gate = g.fresh(out)
    g.emit("HardSigmoid", [x], [gate], alpha=1.0 / 6.0, beta=0.5)
    g.emit("Mul", [x, gate], [out])


@_op("LEAKY_RELU")
def _leaky(g: _Graph, op) -> None:
    import tflite

    opt = _options(op, tflite.LeakyReluOptions)
    g.emit("LeakyRelu", [g.value(_ins(op)[0])], [g.names[_outs(op)[0]]], alpha=float(opt.Alpha()))


@_op("PRELU")
def _prelu(g: _Graph, op) -> None:
    x, slope = _ins(op)
    g.emit("PRelu", [g.value(x), g.value(slope, like=x)], [g.names[_outs(op)[0]]])


@_op("DEQUANTIZE")
def _dequantize(g: _Graph, op) -> None:
    """Constant weights stored as float16 or int8 are folded to float32; a run-time DEQUANTIZE is unsupported."""
    src, out = _ins(op)[0], _outs(op)[0]
    if src not in g.consts:
        raise ConversionError("DEQUANTIZE of a run-time tensor (a quantized model); convert a float model instead")
    array = g.consts[src]
    if array.dtype in (np.int8, np.uint8, np.int16, np.int32):
        scale, zero = g.quant(src) or (np.ones(1, np.float32), np.zeros(1, np.int64))
        axis = g.sub.Tensors(src).Quantization().QuantizedDimension()
        shape = [1] * array.ndim
        if scale.size > 1:
            shape[axis] = scale.size
        array = (array.astype(np.float32) - zero.reshape(shape)) * scale.reshape(shape)
    g.consts[out] = array.astype(np.float32)


@_op("CONCATENATION")
def _concat(g: _Graph, op) -> None:
    import tflite

    ins, out = _ins(op), _outs(op)[0]
    opt = _options(op, tflite.ConcatenationOptions)
    rank = len(g.shape(out))
    axis = opt.Axis() % rank
    nchw = g.is_nchw(out) or any(g.is_nchw(i) for i in ins)
    g.fused("Concat", [g.value(i, like=out if nchw else None) for i in ins], out, opt.FusedActivationFunction(),
            axis=NHWC_AXIS[axis] if nchw and rank == 4 else axis)


@_op("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def _reshape(g: _Graph, op) -> None:
    """Reshape in the file's (NHWC) element order: back to NHWC first when the input is stored NCHW, and to NCHW
    after when the output is 4-D. The target is the output tensor's static shape."""
    x, out = _ins(op)[0], _outs(op)[0]
    source = g.value(x)
    if g.is_nchw(x):
        nhwc = g.fresh(g.names[x])
        g.emit("Transpose", [source], [nhwc], perm=list(NCHW_TO_NHWC))
        source = nhwc
    target = g.shape(out)
    if not target or any(d < 0 for d in target):
        raise ConversionError(f"{_name_of(g, op)} to a dynamic shape")
    shape = g.const_name(np.asarray(target, np.int64), "shape")
    if len(target) == 4:
        flat = g.fresh(g.names[out])
        g.emit("Reshape", [source, shape], [flat])
        g.emit("Transpose", [flat], [g.names[out]], perm=list(NHWC_TO_NCHW))
    else:
        g.emit("Reshape", [source, shape], [g.names[out]])


@_op("PAD", "PADV2")
def _pad(g: _Graph, op) -> None:
    ins, out = _ins(op), _outs(op)[0]
    if ins[1] not in g.consts:
        raise ConversionError("PAD with run-time paddings")
    pads = g.consts[ins[1]].astype(np.int64).reshape(-1, 2)  # (rank, [before, after]) in the file's order
    if g.is_nchw(ins[0]):
        pads = pads[list(NHWC_TO_NCHW)]
    inputs = [g.value(ins[0]), g.const_name(np.concatenate([pads[:, 0], pads[:, 1]]), "pads")]
    if len(ins) > 2:
        inputs.append(g.const_name(g.consts[ins[2]].astype(np.float32).reshape(()), "pad_value"))
    g.emit("Pad", inputs, [g.names[out]], mode="constant")


@_op("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")
def _resize(g: _Graph, op) -> None:
    import tflite

    ins, out = _ins(op), _outs(op)[0]
    bilinear = _name_of(g, op) == "RESIZE_BILINEAR"
    opt = _options(op, tflite.ResizeBilinearOptions if bilinear else tflite.ResizeNearestNeighborOptions)
    n, h, w, c = g.shape(out)
    if opt.AlignCorners():
        mode = "align_corners"
    elif opt.HalfPixelCenters():
        mode = "half_pixel" if bilinear else "tf_half_pixel_for_nn"
    else:
        mode = "asymmetric"
    attrs = {"mode": "linear" if bilinear else "nearest", "coordinate_transformation_mode": mode}
    if not bilinear:
        attrs["nearest_mode"] = "round_prefer_ceil" if opt.AlignCorners() else "floor"
    g.emit("Resize", [g.value(ins[0]), "", "", g.const_name(np.asarray([n, c, h, w], np.int64), "sizes")],
           [g.names[out]], **attrs)


@_op("MEAN", "REDUCE_MAX", "SUM")
def _reduce(g: _Graph, op) -> None:
    import tflite

    ins, out = _ins(op), _outs(op)[0]
    opt = _options(op, tflite.ReducerOptions)
    rank = len(g.shape(ins[0]))
    axes = [int(a) % rank for a in np.atleast_1d(g.consts[ins[1]])]
    keep = bool(opt.KeepDims()) if opt is not None else False
    if g.is_nchw(ins[0]):
        axes = sorted(NHWC_AXIS[a] for a in axes)
        if not keep and set(axes) != {2, 3}:
            raise ConversionError(f"{_name_of(g, op)} over axes {axes} without keep_dims")
    kind = {"MEAN": "ReduceMean", "REDUCE_MAX": "ReduceMax", "SUM": "ReduceSum"}[_name_of(g, op)]
    if kind == "ReduceSum":
        g.emit(kind, [g.value(ins[0]), g.const_name(np.asarray(axes, np.int64), "axes")], [g.names[out]],
               keepdims=int(keep))
    else:
        g.emit(kind, [g.value(ins[0])], [g.names[out]], axes=axes, keepdims=int(keep))


@_op("FULLY_CONNECTED")
def _fully_connected(g: _Graph, op) -> None:
    import tflite

    ins, out = _ins(op), _outs(op)[0]
    opt = _options(op, tflite.FullyConnectedOptions)
    w = _weights(g, ins[1], "FULLY_CONNECTED")  # (O, I)
    source = g.value(ins[0])
    if g.is_nchw(ins[0]):
        nhwc = g.fresh(g.names[ins[0]])
        g.emit("Transpose", [source], [nhwc], perm=list(NCHW_TO_NHWC))
        source = nhwc
    flat = g.fresh(g.names[ins[0]])
    g.emit("Reshape", [source, g.const_name(np.asarray([-1, w.shape[1]], np.int64), "shape")], [flat])
    inputs = [flat, g.const_name(w, g.names[ins[1]])]
    if len(ins) > 2 and ins[2] >= 0:
        inputs.append(g.value(ins[2]))
    target = g.shape(out)
    if len(target) == 2:
        g.fused("Gemm", inputs, out, opt.FusedActivationFunction(), transB=1)
        return
    flat_out = g.fresh(g.names[out])
    g.emit("Gemm", inputs, [flat_out], transB=1)
    shaped = g.fresh(g.names[out])
    g.emit("Reshape", [flat_out, g.const_name(np.asarray(target, np.int64), "shape")], [shaped])
    g.activation(opt.FusedActivationFunction(), shaped, g.names[out])


@_op("SOFTMAX")
def _softmax(g: _Graph, op) -> None:
    import tflite

    ins, out = _ins(op), _outs(op)[0]
    opt = _options(op, tflite.SoftmaxOptions)
    x = g.value(ins[0])
    beta = float(opt.Beta()) if opt is not None else 1.0
    if beta != 1.0:
        scaled = g.fresh(g.names[out])
        g.emit("Mul", [x, g.const_name(np.float32(beta), "beta")], [scaled])
        x = scaled
    g.emit("Softmax", [x], [g.names[out]], axis=1 if g.is_nchw(ins[0]) else -1)


def _graph_value(g: _Graph, index: int) -> onnx.ValueInfoProto:
    from .model import TFLITE_DTYPES

    shape = g.shape(index)
    tensor = g.sub.Tensors(index)
    if tensor.ShapeSignatureLength():
        shape = [d if s >= 0 else None for d, s in zip(shape, tensor.ShapeSignatureAsNumpy(), strict=False)]
    if len(shape) == 4:
        shape = [shape[i] for i in NHWC_TO_NCHW]
    dtype = TFLITE_DTYPES.get(tensor.Type(), "float32")
    elem = helper.np_dtype_to_tensor_dtype(np.dtype("float32" if dtype == "float16" else dtype))
    dims = [d if d is not None else ("batch" if i == 0 else f"d{i}") for i, d in enumerate(shape)]
    return helper.make_tensor_value_info(g.names[index], elem, dims)


def tflite_to_onnx(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Convert a float .tflite model to an NCHW ONNX graph (opset 13). Inputs and outputs keep the file's names;
    4-D ones are NCHW, as OpenCV's TFLite importer runs them. ConversionError lists the ops it has no rule for."""
    from .model import read_tflite, tflite_model

    path = Path(path)
    facts = read_tflite(path)
    model = tflite_model(path)
    if facts.subgraphs > 1:
        raise ConversionError(f"{path.name} has {facts.subgraphs} subgraphs (control flow); cvtune's TFLite converter "
                              f"handles single-graph models")
    missing = sorted(op for op in facts.ops if op not in TFLITE_OPS)
    if missing:
        raise ConversionError(f"cvtune's TFLite converter has no rule for op(s) {', '.join(missing)} in {path.name} "
                              f"(it knows {len(TFLITE_OPS)}: cvtune.convert.TFLITE_OPS); the model still runs in "
                              f"OpenCV as it is")
    if facts.quantized_input or any(t.dtype in ("int8", "uint8") for t in facts.outputs):
        raise ConversionError(f"{path.name} is a quantized (integer) TFLite model; cvtune's TFLite converter handles "
                              f"float models (float16/int8 weights are fine)")
    g = _Graph(model, path.read_bytes(), path)
    for k in range(g.sub.OperatorsLength()):
        op = g.sub.Operators(k)
        name = _name_of(g, op)
        try:
            TFLITE_OPS[name](g, op)
        except ConversionError as exc:
            raise ConversionError(f"cvtune's TFLite converter cannot convert {name} (operator {k}) in {path.name}: "
                                  f"{exc}") from None
    inputs = [_graph_value(g, int(i)) for i in g.sub.InputsAsNumpy()]
    outputs = []
    for i in g.sub.OutputsAsNumpy():
        i = int(i)
        if i in g.consts:  # an output folded to a constant still needs a node producing it
            g.emit("Identity", [g.value(i)], [g.names[i]])
        outputs.append(_graph_value(g, i))
    graph = helper.make_graph(g.nodes, path.stem, inputs, outputs, g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cvtune.convert", producer_version="tflite")
    proto.ir_version = 8
    for key, value in (("cvtune.source_format", "tflite"), ("cvtune.source_layout", "NHWC"),
                       ("cvtune.source_file", path.name)):
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"cvtune's TFLite converter produced an invalid graph for {path.name}: "
                              f"{str(exc).splitlines()[0][:200]}") from None
    return proto


# ---- other converters and the registry ---------------------------------------------------------------------------
def _tf2onnx(path: Path, output: Path) -> None:
    """tf2onnx in a child process (it imports TensorFlow): frozen .pb graphs, NCHW inputs."""
    from .model import model_io

    try:
        import tf2onnx  # noqa: F401
    except Exception:  # noqa: BLE001 - tf2onnx raises ModuleNotFoundError for tensorflow too
        raise ConversionError(f"converting {path.name} to ONNX needs tf2onnx and TensorFlow, which are not installed: "
                              f"pip install 'cvtune[tensorflow]'; the model still runs in OpenCV as it is") from None
    inputs, outputs = model_io(path)
    names = lambda infos: ",".join(f"{t.name}:0" for t in infos)  # noqa: E731
    args = [sys.executable, "-m", "tf2onnx.convert", "--graphdef", str(path), "--output", str(output),
            "--inputs", names(inputs), "--outputs", names(outputs), "--inputs-as-nchw", names(inputs)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not output.is_file():
        last = next((ln for ln in reversed(done.stderr.splitlines()) if ln.strip()), "no output")
        raise ConversionError(f"tf2onnx could not convert {path.name}: {last[:300]}")


def _cvtune_tflite(path: Path, output: Path) -> None:
    proto = tflite_to_onnx(path)
    with atomic_path(output) as tmp:
        onnx.save(proto, str(tmp))


@dataclass(frozen=True)
class Converter:
    """A way to turn a model file into ONNX: its name, the suffixes it reads, and the function that writes."""

    name: str
    suffixes: tuple[str, ...]
    run: Callable[[Path, Path], None]
    note: str


CONVERTERS: dict[str, Converter] = {c.name: c for c in (
    Converter("tflite", (".tflite",), _cvtune_tflite, "cvtune's own, from the flatbuffer (no TensorFlow)"),
    Converter("tf2onnx", (".pb",), _tf2onnx, "TensorFlow frozen graphs; needs tensorflow + tf2onnx"),
)}


def converter_for(path: Path, name: str | None = None) -> Converter:
    """The converter `name`, or the first registered one that reads this suffix."""
    if name is not None:
        if name not in CONVERTERS:
            raise ConversionError(f"unknown converter '{name}'; choose one of: {', '.join(CONVERTERS)}")
        return CONVERTERS[name]
    suffix = path.suffix.lower()
    for conv in CONVERTERS.values():
        if suffix in conv.suffixes:
            return conv
    readable = sorted({s for c in CONVERTERS.values() for s in c.suffixes})
    raise ConversionError(f"no converter reads {suffix or 'files without a suffix'} ({path.name}); converters read: "
                          f"{', '.join(readable)}")


@dataclass(frozen=True)
class ConversionResult:
    """Where the ONNX model went, which converter made it, and how it compares with OpenCV's run of the original
    (None when not checked)."""

    source: Path
    output: Path
    converter: str
    nodes: int
    check: dict | None = None

    def to_dict(self) -> dict:
        return {"source": str(self.source), "output": str(self.output), "converter": self.converter,
                "nodes": self.nodes, "check": self.check}


def convert(model_path: str | os.PathLike[str], output: str | os.PathLike[str], *, converter: str | None = None,
            check: bool = True, images: list[np.ndarray] | None = None) -> ConversionResult:
    """Convert a .tflite (or .pb) model to ONNX at `output` (atomically; never over the input). With `check`, both
    run on the same inputs (random ones plus `images`, already preprocessed NCHW) and the result is refused if an
    output differs from OpenCV's run of the original."""
    from .model import check_model_file

    source = check_model_file(model_path)
    output = Path(output)
    refuse_overwrite_of_input(output, source)
    conv = converter_for(source, converter)
    conv.run(source, output)
    proto = onnx.load(str(output), load_external_data=False)
    report = None
    if check:
        report = check_conversion(source, output, images=images)
        if not report["equivalent"]:
            output.unlink(missing_ok=True)
            raise ConversionError(f"the {conv.name} converter's ONNX model differs from OpenCV's run of {source.name} "
                                  f"({report['detail']}); nothing written")
    return ConversionResult(source, output, conv.name, len(proto.graph.node), report)


def check_conversion(source: Path, converted: Path, *, images: list[np.ndarray] | None = None,
                     n_random: int = 2, seed: int = 0) -> dict:
    """Run the original in OpenCV (classic engine, which returns every TFLite output) and the ONNX model in ONNX
    Runtime on the same inputs; compare outputs by name. Equivalent when every output is within ATOL + RTOL x its
    largest magnitude (float32 kernels differ in summation order; cosine is reported, not judged, because a
    sigmoid output near zero everywhere makes it noise)."""
    from .model import default_input_shape
    from .runtimes import make_runtime
    from .runtimes.opencv import reference_engine

    shape = default_input_shape(source)
    engine = reference_engine()
    ref = make_runtime("opencv", engine=engine).open(source)
    cand = make_runtime("ort", threads=1).open(converted)
    rng = np.random.default_rng(seed)
    inputs = [rng.random(shape, dtype=np.float32) for _ in range(n_random)] + list(images or [])
    worst_abs, worst_cos, ok, detail = 0.0, 1.0, True, ""
    try:
        for x in inputs:
            got = dict(zip(cand.output_names, cand.run(x), strict=True))
            for name, a in zip(ref.output_names, ref.run(x), strict=True):
                if name not in got:
                    return {"equivalent": False, "detail": f"output '{name}' is missing from the ONNX model",
                            "inputs_checked": len(inputs)}
                a64, b64 = np.asarray(a, np.float64).ravel(), np.asarray(got[name], np.float64).ravel()
                if a64.shape != b64.shape:
                    return {"equivalent": False, "inputs_checked": len(inputs),
                            "detail": f"output '{name}' has shape {list(got[name].shape)}, OpenCV's {list(a.shape)}"}
                scale = float(np.abs(a64).max(initial=0.0))
                diff = float(np.abs(a64 - b64).max(initial=0.0))
                denom = np.linalg.norm(a64) * np.linalg.norm(b64)
                worst_cos = min(worst_cos, float(a64 @ b64 / denom) if denom > 0 else float(np.allclose(a64, b64)))
                if diff > ATOL + RTOL * scale:
                    ok = False
                if diff >= worst_abs:
                    worst_abs, detail = diff, f"output '{name}': max abs diff {diff:.3g} where values reach {scale:.3g}"
    finally:
        ref.close()
        cand.close()
    return {"equivalent": ok, "max_abs_diff": worst_abs, "cosine": worst_cos, "inputs_checked": len(inputs),
            "detail": detail or "identical", "reference": f"opencv:{engine}"}


def cache_dir() -> Path:
    """Where converted models are kept: converted/ in cvtune's cache (files.cache_root)."""
    from .files import cache_root

    return cache_root() / "converted"


def ensure_onnx(model_path: str | os.PathLike[str]) -> Path:
    """An ONNX file for any model: the path itself for .onnx, else its conversion, made once per file content
    (cached under cache_dir(), keyed by the file's SHA-256 and the converter) and reused by every process."""
    from .model import check_model_file

    path = check_model_file(model_path)
    if path.suffix.lower() == ".onnx":
        return path
    conv = converter_for(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
    target = cache_dir() / f"{path.stem}-{conv.name}-{digest}.onnx"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        conv.run(path, target)
    return target
