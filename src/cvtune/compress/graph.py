"""Graph helpers shared by the compression transforms: a working copy with editable weights, producer/consumer
maps, and running a graph with intermediate tensors exposed as outputs (for calibration statistics).

Everything here works on a *prepared* copy (see `prepare`): Constant nodes turned into initializers (PP-OCR keeps
its weights in Constant nodes), every node named, and every non-scalar initializer used by one input only, so
slicing one layer's weights can never change another layer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelError
from ..model import constants_to_initializers

__all__ = ["GraphIndex", "prepare", "node_attr", "subgraph_to", "ort_session", "run_tensors"]


def prepare(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A deterministic editable copy: constants as initializers, unique node names, unshared weights."""
    work = constants_to_initializers(proto)
    used: set[str] = set()
    for i, node in enumerate(work.graph.node):
        if not node.name or node.name in used:
            node.name = f"{node.op_type}_{i}"
        used.add(node.name)
    inits = {t.name: t for t in work.graph.initializer}
    seen: dict[str, int] = defaultdict(int)
    for node in work.graph.node:
        for k, name in enumerate(node.input):
            tensor = inits.get(name)
            if tensor is None or int(np.prod(tensor.dims)) <= 1:
                continue
            seen[name] += 1
            if seen[name] > 1:  # second and later users get their own copy
                copy = onnx.TensorProto()
                copy.CopyFrom(tensor)
                copy.name = f"{name}__{node.name}_{k}"
                work.graph.initializer.append(copy)
                node.input[k] = copy.name
    return work


def node_attr(node: onnx.NodeProto, name: str, default=None):
    """An attribute's Python value, or `default` when the node does not set it."""
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def set_int_attr(node: onnx.NodeProto, name: str, value: int) -> None:
    for attr in node.attribute:
        if attr.name == name:
            attr.i = int(value)
            return
    node.attribute.append(onnx.helper.make_attribute(name, int(value)))


class GraphIndex:
    """Lookup tables over one graph: initializers (read/write as numpy), producers, consumers, graph I/O."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.proto = proto
        graph = proto.graph
        self.inits: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        self.nodes: dict[str, onnx.NodeProto] = {n.name: n for n in graph.node}
        self.producer: dict[str, onnx.NodeProto] = {out: n for n in graph.node for out in n.output if out}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
        for node in graph.node:
            for k, name in enumerate(node.input):
                if name:
                    self.consumers[name].append((node, k))
        self.graph_inputs = [v.name for v in graph.input if v.name not in self.inits]
        self.graph_outputs = [v.name for v in graph.output]

    def is_const(self, name: str) -> bool:
        return name in self.inits

    def array(self, name: str) -> np.ndarray:
        if name not in self.inits:
            raise ModelError(f"tensor '{name}' is not a constant weight in this graph")
        return numpy_helper.to_array(self.inits[name])

    def set_array(self, name: str, value: np.ndarray) -> None:
        """Replace an initializer's data in place (same name, new shape allowed)."""
        old = self.inits[name]
        new = numpy_helper.from_array(np.ascontiguousarray(value.astype(numpy_helper.to_array(old).dtype)), name)
        old.CopyFrom(new)

    def add_array(self, name: str, value: np.ndarray) -> str:
        tensor = numpy_helper.from_array(np.ascontiguousarray(value), name)
        self.proto.graph.initializer.append(tensor)
        self.inits[name] = self.proto.graph.initializer[-1]
        return name


def drop_unused_initializers(proto: onnx.ModelProto) -> None:
    used = {name for node in proto.graph.node for name in node.input}
    used |= {o.name for o in proto.graph.output}
    keep = [t for t in proto.graph.initializer if t.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)


def tensor_types(proto: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor of the graph (inferred; FLOAT where inference cannot tell): sub-graphs cut at
    shape computations (int64) must declare their inputs and outputs with the right type."""
    types = {t.name: t.data_type for t in proto.graph.initializer}
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - an unusual graph: fall back to what it declares
        inferred = proto
    for v in [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]:
        if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
            types[v.name] = v.type.tensor_type.elem_type
    return types


def value_info(name: str, types: dict[str, int]) -> onnx.ValueInfoProto:
    """A shapeless value info of the tensor's own element type (FLOAT when unknown)."""
    return onnx.helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT), None)


def subgraph_to(proto: onnx.ModelProto, outputs: Iterable[str]) -> onnx.ModelProto:
    """A copy holding only the nodes needed to compute `outputs`, which become the graph's outputs."""
    outputs = list(dict.fromkeys(outputs))
    producer = {out: n for n in proto.graph.node for out in n.output if out}
    needed: set[str] = set()
    stack = list(outputs)
    keep_nodes: set[int] = set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is not None and id(node) not in keep_nodes:
            keep_nodes.add(id(node))
            stack.extend(i for i in node.input if i)
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    nodes = [n for n in proto.graph.node if id(n) in keep_nodes]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.graph.output[:]
    types = tensor_types(proto)
    out.graph.output.extend(value_info(o, types) for o in outputs)
    del out.graph.value_info[:]
    drop_unused_initializers(out)
    return out


def ort_session(proto: onnx.ModelProto, *, threads: int | None = None):
    """An ONNX Runtime CPU session straight from a proto (no file): used for calibration statistics."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(proto.SerializeToString(), sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises several types for bad graphs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"ONNX Runtime cannot run the graph while collecting statistics: {first[:300]}") from None


def run_tensors(proto: onnx.ModelProto, tensors: Iterable[str], batches: Iterable[np.ndarray]):
    """Yield {tensor name: value} for each input batch, computing only the part of the graph they need."""
    tensors = list(dict.fromkeys(tensors))
    inits = {t.name for t in proto.graph.initializer}
    if not tensors:
        return
    sub = subgraph_to(proto, tensors)
    session = ort_session(sub)
    input_names = [i.name for i in session.get_inputs()]
    graph_input = next(v.name for v in proto.graph.input if v.name not in inits)
    others = [n for n in input_names if n != graph_input]
    if others:
        raise ModelError(f"calibration feeds one image input, but this model also needs input(s) {', '.join(others)}; "
                         f"models with several inputs are not supported here")
    for batch in batches:
        feed = {graph_input: np.ascontiguousarray(batch, dtype=np.float32)} if graph_input in input_names else {}
        values = session.run(tensors, feed)
        yield dict(zip(tensors, values, strict=True))
