"""Graph-level checks and small rewrites the quantizers share: refuse already-quantized or fp16 models, list the
nodes that can be quantized, give every node a name (exclusion lists need them), raise the opset, compact."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx

from ..errors import ModelError

# Ops that only appear in models that are already quantized (ONNX and ORT's com.microsoft domain).
QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
    "MatMulInteger", "QGemm", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearAveragePool",
    "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "QLinearReduceMean", "QAttention",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits", "QLinearWhere",
})
# Per-channel DequantizeLinear (an `axis` attribute) exists from opset 13; older models must be raised first.
PER_CHANNEL_MIN_OPSET = 13


def opset_of(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def op_counts(proto: onnx.ModelProto) -> dict[str, int]:
    return dict(Counter(n.op_type for n in proto.graph.node).most_common())


def check_not_quantized(proto: onnx.ModelProto, path: str | Path) -> None:
    """ModelError when the model already holds quantization ops or fp16 weights: quantize the float original."""
    counts = Counter(n.op_type for n in proto.graph.node if n.op_type in QUANTIZED_OPS)
    if counts:
        found = ", ".join(f"{n} {op}" for op, n in counts.most_common(3))
        raise ModelError(f"{path} is already quantized (it has {found}); quantize the float32 original instead")
    halves = [t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    floats = [t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    if halves and len(halves) >= len(floats):
        raise ModelError(f"{path} already holds fp16 weights ({len(halves)} tensors, e.g. '{halves[0]}'); "
                         f"quantize the float32 original instead")


def name_nodes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Give unnamed nodes a unique name (`<OpType>_<index>`), in place; ORT's exclusion lists match by name."""
    taken = {n.name for n in proto.graph.node if n.name}
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    return proto


def weighted_nodes(proto: onnx.ModelProto, op_types: tuple[str, ...]) -> list[onnx.NodeProto]:
    """Nodes of `op_types` whose weight (input 1) is a constant initializer: what int8 can shrink."""
    inits = {t.name for t in proto.graph.initializer}
    return [n for n in proto.graph.node if n.op_type in op_types and len(n.input) > 1 and n.input[1] in inits]


def check_quantizable(proto: onnx.ModelProto, path: str | Path, op_types: tuple[str, ...], exclude: tuple[str, ...],
                      *, hint: str = "") -> list[str]:
    """Names of the nodes that will be quantized; ModelError when there are none (or all are excluded)."""
    names = [n.name for n in weighted_nodes(proto, op_types)]
    if not names:
        raise ModelError(f"{path} has no {'/'.join(op_types)} node with constant weights, so there is nothing to "
                         f"quantize{hint}")
    unknown = sorted(set(exclude) - {n.name for n in proto.graph.node})
    if unknown:
        raise ModelError(f"the excluded node(s) are not in {path}: {', '.join(unknown[:5])}; `cvtune inspect` lists "
                         f"node names")
    left = [n for n in names if n not in set(exclude)]
    if not left:
        raise ModelError(f"every quantizable node of {path} is excluded ({len(names)} nodes); exclude fewer")
    return left


def raise_opset(proto: onnx.ModelProto, version: int) -> tuple[onnx.ModelProto, str]:
    """The model converted to at least `version` (onnx.version_converter), and a note saying what happened."""
    have = opset_of(proto)
    if have >= version:
        return proto, ""
    try:
        converted = onnx.version_converter.convert_version(proto, version)
        onnx.checker.check_model(converted)
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        raise ModelError(f"per-channel int8 needs opset >= {version} (DequantizeLinear's axis), but converting "
                         f"this opset-{have} model failed: {str(exc).splitlines()[0][:200]}; use per-tensor "
                         f"(per-channel off)") from None
    return converted, f"opset {have} -> {version} (per-channel DequantizeLinear needs an axis attribute)"


# Suffixes ORT's quantizer appends to the names it generates, and short forms with the same meaning.
GENERATED_SUFFIXES = (
    ("_DequantizeLinear_Output", "_dq"), ("_QuantizeLinear_Output", "_q"), ("_DequantizeLinear", "_DQ"),
    ("_QuantizeLinear", "_Q"), ("_quantized_scale", "_qs"), ("_quantized_zero_point", "_qzp"),
    ("_zero_point", "_zp"), ("_quantized", "_i8"), ("_scale", "_s"),
)


def _drop_zero_points(proto: onnx.ModelProto) -> None:
    """Remove all-zero zero points of DequantizeLinear on constants (symmetric weights, int32 biases): the input
    is optional and defaults to 0, so the math is unchanged."""
    from onnx import numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if (node.op_type == "DequantizeLinear" and node.domain in ("", "ai.onnx") and len(node.input) == 3
                and node.input[0] in inits and node.input[2] in inits
                and not numpy_helper.to_array(inits[node.input[2]]).any()):
            del node.input[2]
    used = {i for n in proto.graph.node for i in n.input} | {o.name for o in proto.graph.output}
    keep = [t for t in proto.graph.initializer if t.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)


def _short_name(name: str) -> str:
    for long, short in GENERATED_SUFFIXES:
        if name.endswith(long):
            return name[: -len(long)] + short
    return name


def _shorten_generated_names(proto: onnx.ModelProto, original: set[str]) -> None:
    """Shorten the suffixes of names the quantizer generated (never an original or graph input/output name),
    skipping any rename that would collide."""
    graph = proto.graph
    fixed = original | {v.name for v in graph.input} | {v.name for v in graph.output}
    tensors = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
    taken = set(tensors) | fixed
    rename: dict[str, str] = {}
    for name in sorted(tensors - fixed):
        short = _short_name(name)
        if short != name and short not in taken:
            rename[name] = short
            taken.add(short)
    for tensor in graph.initializer:
        tensor.name = rename.get(tensor.name, tensor.name)
    node_names = {n.name for n in graph.node}
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]
        if node.name not in original:
            short = _short_name(node.name)
            if short != node.name and short not in node_names:
                node_names.add(short)
                node.name = short


def compact(proto: onnx.ModelProto, original_names: set[str] | None = None) -> onnx.ModelProto:
    """Shrink a quantized model without changing what it computes, in place: drop intermediate shape annotations
    (runtimes re-infer them) and doc strings, all-zero constant zero points, and (given the float model's names)
    shorten the quantizer's generated name suffixes. On PP-OCR det this is ~5% of the int8 file."""
    del proto.graph.value_info[:]
    proto.doc_string = ""
    for node in proto.graph.node:
        node.doc_string = ""
    _drop_zero_points(proto)
    if original_names is not None:
        _shorten_generated_names(proto, original_names)
    return proto


def all_names(proto: onnx.ModelProto) -> set[str]:
    """Every tensor and node name in a model (to tell original names from generated ones)."""
    graph = proto.graph
    return ({t.name for t in graph.initializer} | {v.name for v in graph.input} | {v.name for v in graph.output}
            | {o for n in graph.node for o in n.output} | {n.name for n in graph.node})


def float_inputs_for(proto: onnx.ModelProto, nodes: set[str]) -> int:
    """Let the named (excluded) nodes read float activations, in place: an input coming from a
    QuantizeLinear -> DequantizeLinear pair is rewired to the float tensor before the pair, and pairs nobody reads
    any more are removed. Returns how many inputs were rewired.

    Needed because ONNX Runtime's WeightBiasQuantization graph transformer quantizes, at session start, the float
    weights of any Conv/Gemm/ConvTranspose that sits between DequantizeLinear and QuantizeLinear: a layer excluded
    from quantization would silently run in int8 again."""
    graph = proto.graph
    producer = {o: n for n in graph.node for o in n.output}
    rewired = 0
    for node in graph.node:
        if node.name not in nodes:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
                rewired += 1
    drop_unread_qdq(graph)
    return rewired


def with_float_layers(qdq: onnx.ModelProto, float_model: onnx.ModelProto, names: set[str] | list[str]
                      ) -> onnx.ModelProto:
    """A copy of a QDQ model (quantized with QDQKeepRemovableActivations, so every float tensor still exists) in
    which the named layers run in float: they read the float activations and the float model's own weights and
    bias. A cheap stand-in for quantizing again with those layers excluded, used to rank layers."""
    out = onnx.ModelProto()
    out.CopyFrom(qdq)
    graph = out.graph
    twins = {n.name: n for n in float_model.graph.node if n.name}
    float_inits = {t.name: t for t in float_model.graph.initializer}
    have = {t.name for t in graph.initializer}
    tensors = have | {i.name for i in graph.input} | {o for n in graph.node for o in n.output}
    for node in graph.node:
        twin = twins.get(node.name)
        if node.name not in names or twin is None:
            continue
        if any(i and i not in tensors and i not in float_inits for i in twin.input):
            continue  # a float tensor the quantizer folded away: leave this layer quantized
        inputs = []
        for i in twin.input:
            if i in float_inits and i not in have:  # the quantizer replaced it (a DequantizeLinear may own the name)
                renamed = f"{i}::float"
                if renamed not in have:
                    tensor = onnx.TensorProto()
                    tensor.CopyFrom(float_inits[i])
                    tensor.name = renamed
                    graph.initializer.append(tensor)
                    have.add(renamed)
                i = renamed
            inputs.append(i)
        del node.input[:]
        node.input.extend(inputs)
    drop_unread_qdq(graph)
    return out


def drop_unread_qdq(graph: onnx.GraphProto) -> None:
    """Remove DequantizeLinear, then QuantizeLinear nodes whose outputs nobody reads, then unread initializers."""
    for _ in range(2):
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        keep = [n for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                or any(o in used for o in n.output)]
        del graph.node[:]
        graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
