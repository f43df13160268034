"""Model: an ONNX graph plus what cvtune needs to know about it (shapes, params, FLOPs, sparsity, preprocessing).

Loading is defensive: the file must exist, parse, pass onnx.checker, and keep external data inside its own folder.
A .tflite file is read without TensorFlow (its flatbuffer, through the `tflite` package: inputs, outputs, shapes,
dtypes, quantization, ops) and converted to ONNX on demand (cvtune.convert) wherever a transform needs a graph.
TensorFlow .pb files run through OpenCV (and OpenVINO); their inputs are read with OpenVINO's frontend when installed.
"""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import ModelError, UsageError
from .files import atomic_files, atomic_path, display_path, json_document
from .preprocess import Preprocessing, model_preprocessing
from .zoo import find_by_path

TFLITE_SUFFIX = ".tflite"
TF_SUFFIX = ".pb"
OPENCV_ONLY_SUFFIXES = (TF_SUFFIX,)  # run through OpenCV (and OpenVINO); converted to ONNX only with tf2onnx
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


# Input tensor types cvtune can feed: images become float32 tensors (quantized and fp16 models keep float32 I/O).
FEEDABLE_DTYPES = {onnx.TensorProto.FLOAT: "float32"}
MAX_INPUT_RANK = 4  # N, C, H, W (or N, H, W, C)


def check_model_file(path: str | os.PathLike[str], *, sniff: bool = True) -> Path:
    """The path as a Path if it is an existing regular file (and, for .tflite/.pb, looks like one), else
    ModelError."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {display_path(path)}")
    if not path.is_file():
        raise ModelError(f"{display_path(path)} is not a file; give the path of an .onnx model")
    if sniff and path.suffix.lower() in OPENCV_ONLY_SUFFIXES:
        _sniff_opencv_model(path)
    return path


def _sniff_opencv_model(path: Path) -> None:
    """Refuse a .tflite without the flatbuffer's TFL3 identifier, or a .pb that cannot start a TensorFlow GraphDef,
    before OpenCV's importer (which may crash on garbage) sees it."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ModelError(f"cannot read model {display_path(path)}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".tflite" and (len(head) < 8 or head[4:8] != b"TFL3"):
        raise ModelError(f"{display_path(path)} is not a TFLite model (no TFL3 flatbuffer identifier); is the file "
                         f"truncated or something else?")
    # GraphDef fields: node (1), library (2), version (3), versions (4): a serialized one starts with their tags
    if suffix == ".pb" and (not head or head[0] not in (0x0A, 0x12, 0x18, 0x22)):
        raise ModelError(f"{display_path(path)} is not a TensorFlow GraphDef (.pb); is the file truncated or "
                         f"something else?")


def check_inputs(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """Refuse, with the reason, a model cvtune cannot feed images to: no input, an input of rank 0 or above 4, or
    an input that is not float32. Runs at load, before any runtime sees the model."""
    where = display_path(path)
    inits = {t.name for t in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in inits]
    if not inputs:
        raise ModelError(f"{where} has no inputs: there is nothing to feed images to")
    first = inputs[0]
    ttype = first.type.tensor_type if first.type.HasField("tensor_type") else None
    if ttype is None:
        raise ModelError(f"{where}: input '{first.name}' is not a tensor; cvtune feeds image tensors")
    if ttype.elem_type not in FEEDABLE_DTYPES:
        name = onnx.TensorProto.DataType.Name(ttype.elem_type) if ttype.elem_type in \
            onnx.TensorProto.DataType.values() else str(ttype.elem_type)
        raise ModelError(f"{where}: input '{first.name}' is {name.lower()}; cvtune feeds float32 image tensors "
                         f"(a model that takes {name.lower()} needs a float32 input added in front of it)")
    if ttype.HasField("shape"):
        rank = len(ttype.shape.dim)
        if rank == 0 or rank > MAX_INPUT_RANK:
            raise ModelError(f"{where}: input '{first.name}' has {rank} dims; cvtune feeds images as tensors of at "
                             f"most {MAX_INPUT_RANK} dims (NxCxHxW)")


def _check_external_data(proto: onnx.ModelProto, folder: Path, path: Path) -> None:
    """Reject external-data locations that are absolute or escape the model's folder (../)."""
    root = folder.resolve()
    for tensor in _all_initializers(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not location or os.path.isabs(location) or Path(location).is_absolute():
            raise ModelError(f"{display_path(path)}: tensor '{tensor.name}' has external data at an absolute location "
                             f"'{location}'; external data must sit in the model's own folder")
        target = (root / location).resolve()
        if root != target and root not in target.parents:
            raise ModelError(f"{display_path(path)}: tensor '{tensor.name}' points its external data outside the "
                             f"model's folder "
                             f"('{location}'); refusing to read it")
        if not target.is_file():
            raise ModelError(f"{display_path(path)}: external data file '{location}' for tensor '{tensor.name}' is "
                             f"missing")
        if target.stat().st_nlink > 1:
            raise ModelError(f"{display_path(path)}: external data file '{location}' for tensor '{tensor.name}' is a "
                             f"hard link (its bytes may belong to a file outside the model's folder); copy it "
                             f"instead of linking it")


def constant_tensors(proto: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Initializers plus the tensors of Constant nodes (named after the node's output)."""
    tensors = list(proto.graph.initializer)
    for node in proto.graph.node:
        if node.op_type == "Constant":
            attr = next((a for a in node.attribute if a.name == "value"), None)
            if attr is not None:
                tensor = onnx.TensorProto()
                tensor.CopyFrom(attr.t)
                tensor.name = node.output[0]
                tensors.append(tensor)
    return tensors


def constants_to_initializers(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where every tensor-valued Constant node is an initializer instead. Numerically identical; makes
    weights editable in one place (pruning, quantization). Returns a new proto, never edits the argument."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    keep = []
    for node in out.graph.node:
        attr = next((a for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if attr is not None and len(node.attribute) == 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attr.t)
            tensor.name = node.output[0]
            out.graph.initializer.append(tensor)
        else:
            keep.append(node)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    return out


def _all_initializers(proto: onnx.ModelProto):
    yield from proto.graph.initializer
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from attr.g.initializer


def load_onnx(path: str | os.PathLike[str], *, check: bool = True) -> onnx.ModelProto:
    """Load an ONNX model with weights, validated. Every failure is a ModelError with one clear line. A .tflite or
    .pb file is converted to ONNX first (convert.ensure_onnx: cached by content; its error names the converter)."""
    path = check_model_file(path, sniff=False)
    if path.suffix.lower() in (TFLITE_SUFFIX, TF_SUFFIX):
        from .convert import ensure_onnx

        path = ensure_onnx(path)
    where = display_path(path)
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
        detail = _first_sentence(str(exc)) or "parse failed"
        raise ModelError(f"{where} is not a readable ONNX model ({type(exc).__name__}: {detail}); "
                         f"is the file truncated?") from None
    if not proto.graph.node and not proto.graph.input:
        raise ModelError(f"{where} parsed as ONNX but holds no graph; is it really a model file?")
    _check_external_data(proto, path.parent, path)
    try:
        onnx.load_external_data_for_model(proto, os.fsdecode(path.parent))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{where}: cannot read external data: {_first_sentence(str(exc))}") from None
    if check:
        try:
            onnx.checker.check_model(proto if proto.ByteSize() < 2**31 - 1 else os.fsdecode(path))
        except (onnx.checker.ValidationError, ValueError) as exc:
            raise ModelError(f"{where} fails onnx.checker: {_first_sentence(str(exc))}") from None
        check_inputs(proto, path)
    return proto


def check_model_inputs(path: str | os.PathLike[str]) -> None:
    """check_inputs on a model file without loading its weights (cheap: for commands that hand the file to a
    runtime directly, such as evaluation)."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        return
    try:
        proto = onnx.load(os.fsdecode(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - the runtime's loader says what is wrong with an unreadable file
        return
    check_inputs(proto, path)


def _first_sentence(text: str, limit: int = 400) -> str:
    """A library's error message on one line, cut at a word boundary (never mid-word) when it is very long."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    return line[:limit].rsplit(" ", 1)[0] + " (...)"


def _save_to(proto: onnx.ModelProto, tmp: Path, path: Path) -> None:
    if proto.ByteSize() >= 2**31 - 1:
        onnx.save(proto, os.fsdecode(tmp), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save(proto, os.fsdecode(tmp))


def save_onnx(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Save atomically (temp file + rename); models over 2 GB get their weights in one external file beside."""
    path = Path(path)
    with atomic_path(path, size_hint=proto.ByteSize()) as tmp:
        _save_to(proto, tmp, path)
    return path


def save_onnx_with_report(proto: onnx.ModelProto, path: str | os.PathLike[str], report_path: str | os.PathLike[str],
                          report, *, schema: str) -> bytes:
    """Save a model and its JSON report as one commit (files.atomic_files: the report is in place before the model
    appears, so a model never exists without it). `report(model_bytes) -> dict` builds the report from the bytes
    as saved. Returns those bytes."""
    import json

    path = Path(path)
    with atomic_files(path, report_path, size_hint=proto.ByteSize()) as (tmp_model, tmp_report):
        _save_to(proto, tmp_model, path)
        data = tmp_model.read_bytes()
        text = json.dumps(json_document(schema, report(data)), indent=2, ensure_ascii=False, default=str) + "\n"
        tmp_report.write_bytes(text.encode("utf-8", "backslashreplace"))
    return data


@dataclass(frozen=True)
class Quantization:
    """Affine quantization a file declares for a tensor: real = scale * (q - zero_point), per channel along `axis`
    when there are several scales. A uint8 image input with scale 1/255 and zero point 0 takes raw pixels."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    def to_dict(self) -> dict:
        return {"scale": list(self.scale), "zero_point": list(self.zero_point), "axis": self.axis}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int | str | None, ...]  # ints are fixed, strings/None are dynamic
    dtype: str
    quantization: Quantization | None = None  # TFLite tensors: as the file declares
    layout: str | None = None  # "NHWC" for 4-D TFLite tensors (the file's own order); None for ONNX

    @property
    def dynamic_dims(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.shape) if not isinstance(d, int) or d <= 0)

    def to_dict(self) -> dict:
        data = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "dynamic_dims": list(self.dynamic_dims)}
        if self.quantization is not None:
            data["quantization"] = self.quantization.to_dict()
        if self.layout:
            data["layout"] = self.layout
        return data

    def as_fed(self) -> TensorInfo:
        """The tensor as cvtune's runtimes feed or return it: 4-D NHWC tensors become NCHW (OpenCV's TFLite
        importer and cvtune's converter both use NCHW), everything else is unchanged."""
        if self.layout != "NHWC" or len(self.shape) != 4:
            return self
        n, h, w, c = self.shape
        return TensorInfo(self.name, (n, c, h, w), self.dtype, self.quantization, "NCHW")


def _tensor_info(value: onnx.ValueInfoProto) -> TensorInfo:
    ttype = value.type.tensor_type
    dims: list[int | str | None] = []
    for d in ttype.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type).name if ttype.elem_type else "unknown"
    return TensorInfo(value.name, tuple(dims), dtype)


MAX_SHAPE_RANK = 6
MAX_DIM = 100_000
MAX_SHAPE_ELEMENTS = 2**31 - 1  # one float32 tensor of 8 GB: beyond that no runtime here takes it


def parse_shape(text: str) -> tuple[int, ...]:
    """'1x3x640x640' -> (1, 3, 640, 640); anything else is a UsageError saying the expected form."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != len(parts) or not 2 <= len(shape) <= MAX_SHAPE_RANK or any(d <= 0 for d in shape):
        raise UsageError(f"bad input shape {text!r}: expected positive integers joined by x (2 to "
                         f"{MAX_SHAPE_RANK} of them), e.g. 1x3x640x640")
    if any(d > MAX_DIM for d in shape) or math.prod(shape) > MAX_SHAPE_ELEMENTS:
        raise UsageError(f"input shape {text!r} is too large (at most {MAX_DIM} per dim and "
                         f"{MAX_SHAPE_ELEMENTS:,} values in all)")
    return shape


@dataclass(frozen=True)
class LayerFlops:
    name: str
    op_type: str
    flops: int  # multiply-accumulates x 2
    params: int


@dataclass
class Model:
    """An ONNX model and its facts. Build with `Model.load(path)`."""

    path: Path
    proto: onnx.ModelProto
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Model:
        path = Path(path)
        proto = load_onnx(path)
        return cls(path, proto, model_preprocessing(path, proto=proto))

    # ---- graph facts ---------------------------------------------------------------------------------
    @property
    def initializer_names(self) -> set[str]:
        return {t.name for t in self.proto.graph.initializer}

    @property
    def inputs(self) -> list[TensorInfo]:
        inits = self.initializer_names
        return [_tensor_info(v) for v in self.proto.graph.input if v.name not in inits]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [_tensor_info(v) for v in self.proto.graph.output]

    @property
    def opset(self) -> int:
        return next((o.version for o in self.proto.opset_import if o.domain in ("", "ai.onnx")), 0)

    @property
    def file_size(self) -> int:
        return self.path.stat().st_size

    def weights(self) -> dict[str, np.ndarray]:
        """Every constant tensor by name: initializers and Constant nodes (PP-OCR exports keep weights there)."""
        return {t.name: numpy_helper.to_array(t) for t in constant_tensors(self.proto)}

    @property
    def param_count(self) -> int:
        """Elements of the weight tensors of Conv/ConvTranspose/Gemm/MatMul and BatchNormalization, plus biases."""
        sizes = {t.name: int(np.prod(t.dims)) if t.dims else 1 for t in constant_tensors(self.proto)}
        used = {i for n in self.proto.graph.node if n.op_type in WEIGHTED_OPS + ("BatchNormalization",)
                for i in n.input[1:]}
        return int(sum(sizes[name] for name in used if name in sizes))

    def op_histogram(self) -> dict[str, int]:
        return dict(Counter(n.op_type for n in self.proto.graph.node).most_common())

    def weight_sparsity(self) -> dict[str, float]:
        """Fraction of exact zeros in Conv/ConvTranspose/Gemm/MatMul weights: total and per layer."""
        weights = self.weights()
        zeros = total = 0
        per_layer: dict[str, float] = {}
        for node in self.proto.graph.node:
            if node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in weights:
                w = weights[node.input[1]]
                z = int(np.count_nonzero(w == 0))
                per_layer[node.name or node.output[0]] = z / max(w.size, 1)
                zeros += z
                total += w.size
        return {"total": zeros / total if total else 0.0, **per_layer}

    def default_input_shape(self) -> tuple[int, ...]:
        """The first input's shape with dynamic dims filled from the preprocessing spec (or 224), H and W where
        its layout puts them (NCHW: dims 2, 3; NHWC: dims 1, 2, channels in dim 3)."""
        info = self.inputs[0]
        shape = list(info.shape)
        pre = self.preprocessing
        height, width = pre.input_size or (224, 224)
        zoo_entry = find_by_path(self.path)
        if zoo_entry:
            height, width = zoo_entry.default_shape[2], zoo_entry.default_shape[3]
        if pre.layout == "NHWC":
            fill = {1: height, 2: width, 3: pre.n_channels}
        else:
            fill = {1: pre.n_channels, 2: height, 3: width}
        return tuple(d if isinstance(d, int) and d > 0 else (1 if i == 0 else fill.get(i, 1))
                     for i, d in enumerate(shape))

    def flops(self, input_shape: tuple[int, ...] | None = None) -> list[LayerFlops]:
        """FLOPs (2 x MACs) of Conv, ConvTranspose, Gemm and MatMul from shapes inferred at `input_shape`."""
        shape = input_shape or self.default_input_shape()
        shapes = infer_shapes(self.proto, {self.inputs[0].name: shape})
        weights = {t.name: tuple(t.dims) for t in constant_tensors(self.proto)}
        layers = []
        for node in self.proto.graph.node:
            if node.op_type not in WEIGHTED_OPS:
                continue
            out = shapes.get(node.output[0])
            ins = [shapes.get(i) or weights.get(i) for i in node.input]
            macs = _macs(node, ins, out)
            params = sum(int(np.prod(weights[i])) for i in node.input[1:] if i in weights)
            layers.append(LayerFlops(node.name or node.output[0], node.op_type, 2 * macs, params))
        return layers

    def total_flops(self, input_shape: tuple[int, ...] | None = None) -> int:
        return sum(layer.flops for layer in self.flops(input_shape))


def _macs(node: onnx.NodeProto, ins: list, out) -> int:
    if out is None or any(i is None for i in ins[:2]):
        return 0
    if node.op_type == "Conv":
        w = ins[1]  # (C_out, C_in/group, kh, kw)
        return int(np.prod(out) * int(np.prod(w[1:])))
    if node.op_type == "ConvTranspose":
        x, w = ins[0], ins[1]  # w: (C_in, C_out/group, kh, kw); every input pixel scatters a kernel
        return int(np.prod(x) * int(np.prod(w[1:])))
    if node.op_type in ("Gemm", "MatMul"):
        a = ins[0]
        k = a[-1]
        if node.op_type == "Gemm":
            trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
            k = a[0] if trans_a else a[-1]
        return int(np.prod(out) * k)
    return 0


def infer_shapes(proto: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Static shapes of every value for given input shapes (onnx shape inference on a copy with fixed inputs)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for value in copy.graph.input:
        if value.name in input_shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, input_shapes[value.name], strict=False):
                dim.Clear()
                dim.dim_value = int(size)
    try:
        inferred = onnx.shape_inference.infer_shapes(copy, data_prop=True)
    except Exception:  # noqa: BLE001 - fall back to no inference on exotic graphs
        inferred = copy
    shapes: dict[str, tuple[int, ...]] = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


# ---- TFLite and TensorFlow files: what they declare, read without TensorFlow ---------------------------------------
TFLITE_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8",
                 10: "float64", 16: "uint32", 17: "uint16"}


@dataclass(frozen=True)
class TfliteFacts:
    """What a .tflite file declares (first subgraph): inputs and outputs as the file orders them (4-D tensors are
    NHWC), operator counts, schema version and description. `inputs_fed`/`outputs_fed` are what runtimes use."""

    path: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    ops: dict[str, int]
    version: int
    description: str
    subgraphs: int

    @property
    def inputs_fed(self) -> list[TensorInfo]:
        return [t.as_fed() for t in self.inputs]

    @property
    def outputs_fed(self) -> list[TensorInfo]:
        return [t.as_fed() for t in self.outputs]

    @property
    def quantized_input(self) -> bool:
        """True when the first input is an integer tensor with a declared scale (the model takes quantized pixels)."""
        first = self.inputs[0]
        return first.dtype in ("uint8", "int8") and first.quantization is not None

    def to_dict(self) -> dict:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
                "ops": dict(self.ops), "schema_version": self.version, "description": self.description,
                "subgraphs": self.subgraphs}


def _tflite_tensor(tensor) -> TensorInfo:
    shape = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
    if tensor.ShapeSignatureLength():  # -1 marks a dynamic dim (the batch, usually)
        shape = [d if s >= 0 else None for d, s in zip(shape, tensor.ShapeSignatureAsNumpy(), strict=False)]
    quant = None
    q = tensor.Quantization()
    if q is not None and q.ScaleLength():
        quant = Quantization(tuple(float(v) for v in q.ScaleAsNumpy()),
                             tuple(int(v) for v in q.ZeroPointAsNumpy()) if q.ZeroPointLength() else (0,),
                             int(q.QuantizedDimension()))
    name = tensor.Name().decode("utf-8", "replace") if tensor.Name() else ""
    return TensorInfo(name, tuple(shape), TFLITE_DTYPES.get(tensor.Type(), f"type{tensor.Type()}"), quant,
                      "NHWC" if len(shape) == 4 else None)


def tflite_model(path: Path):
    """The parsed flatbuffer (tflite.Model) of a .tflite file; ModelError if it is not one."""
    import tflite

    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier); is the file truncated or "
                         f"misnamed?")
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraph")
        model.Subgraphs(0).TensorsLength()
    except Exception as exc:  # noqa: BLE001 - flatbuffers raises struct/index errors on bad files
        raise ModelError(f"{path} is not a readable TFLite model ({type(exc).__name__}: {exc})") from None
    return model


def tflite_op_name(model, op) -> str:
    """The builtin operator name (CONV_2D, ...) or, for a custom op, its custom code (Convolution2DTransposeBias)."""
    import tflite

    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    if builtin == tflite.BuiltinOperator.CUSTOM:
        return code.CustomCode().decode("utf-8", "replace") if code.CustomCode() else "CUSTOM"
    return tflite.BUILTIN_OPCODE2NAME.get(builtin, f"op{builtin}")


def read_tflite(path: str | os.PathLike[str]) -> TfliteFacts:
    """Inputs, outputs (names, shapes, dtypes, quantization), ops and version of a .tflite file, cached per file
    version. No TensorFlow needed."""
    path = check_model_file(path)
    stat = path.stat()
    return _read_tflite_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _read_tflite_cached(path: str, _mtime_ns: int, _size: int) -> TfliteFacts:
    model = tflite_model(Path(path))
    graph = model.Subgraphs(0)
    inputs = tuple(_tflite_tensor(graph.Tensors(int(i))) for i in graph.InputsAsNumpy())
    outputs = tuple(_tflite_tensor(graph.Tensors(int(i))) for i in graph.OutputsAsNumpy())
    if not inputs:
        raise ModelError(f"{path}: the TFLite graph declares no input")
    ops = Counter(tflite_op_name(model, graph.Operators(k)) for k in range(graph.OperatorsLength()))
    description = model.Description().decode("utf-8", "replace") if model.Description() else ""
    return TfliteFacts(Path(path), inputs, outputs, dict(ops.most_common()), int(model.Version()), description,
                       int(model.SubgraphsLength()))


def _read_tensorflow_io(path: Path) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Inputs and outputs of a TensorFlow .pb through OpenVINO's TensorFlow frontend (NHWC as the graph says)."""
    try:
        import openvino as ov
    except ImportError:
        raise UsageError(f"{path.name} is a TensorFlow graph: cvtune reads its inputs with OpenVINO's frontend "
                         f"(pip install 'cvtune[openvino]'), or give the input shape, e.g. 1x3x224x224") from None
    try:
        graph = ov.Core().read_model(str(path))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError with multi-line text
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise ModelError(f"OpenVINO cannot read {path} to find its inputs ({first[:200]}); give the input shape, "
                         f"e.g. 1x3x224x224") from None

    def info(port) -> TensorInfo:
        shape = tuple(int(d.get_length()) if d.is_static else None for d in port.get_partial_shape())
        name = port.get_any_name() if port.get_names() else ""
        return TensorInfo(name, shape, port.get_element_type().to_dtype().name, None,
                          "NHWC" if len(shape) == 4 else None)

    return [info(p) for p in graph.inputs], [info(p) for p in graph.outputs]


def model_io(path: str | os.PathLike[str]) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """(inputs, outputs) of any model file as cvtune's runtimes feed and return them (4-D TFLite/TF tensors in
    NCHW), without converting it: the ONNX graph's, the TFLite flatbuffer's, or a .pb's through OpenVINO."""
    path = check_model_file(path)
    suffix = path.suffix.lower()
    if suffix == TFLITE_SUFFIX:
        facts = read_tflite(path)
        return facts.inputs_fed, facts.outputs_fed
    if suffix == TF_SUFFIX:
        inputs, outputs = _read_tensorflow_io(path)
        return [t.as_fed() for t in inputs], [t.as_fed() for t in outputs]
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - the full loader says what is wrong
        proto = load_onnx(path, check=False)
    inits = {t.name for t in proto.graph.initializer}
    return ([_tensor_info(v) for v in proto.graph.input if v.name not in inits],
            [_tensor_info(v) for v in proto.graph.output])


def default_input_shape(path: str | os.PathLike[str]) -> tuple[int, ...]:
    """The input shape cvtune feeds a model file when none is given: ONNX's with dynamic dims filled (Model), a
    TFLite/TF file's first input as NCHW (a dynamic batch becomes 1). UsageError when a dim cannot be known."""
    path = check_model_file(path)
    if path.suffix.lower() not in (TFLITE_SUFFIX, TF_SUFFIX):
        return Model.load(path).default_input_shape()
    first = model_io(path)[0][0]
    shape = tuple(d if isinstance(d, int) and d > 0 else (1 if i == 0 else None) for i, d in enumerate(first.shape))
    if any(d is None for d in shape):
        raise UsageError(f"{path.name}: input '{first.name}' has dynamic dims "
                         f"{'x'.join(str(d) if d else '?' for d in shape)}; give the input shape, e.g. 1x3x224x224")
    return shape  # type: ignore[return-value]
