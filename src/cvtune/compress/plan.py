"""Structured channel pruning, step 1: find the coupled channels of an ONNX graph and plan the cut.

Like Torch-Pruning's dependency graph, but on ONNX: every 4-D feature map belongs to a *channel space*. A Conv (or
ConvTranspose) with group=1 opens a new space at its output; ops that keep channel i as channel i (BatchNorm,
activations, Resize, pooling, depthwise convs, elementwise Add/Mul with a same-shaped tensor, squeeze-excite gates
multiplied back onto the trunk) merge their input and output spaces. A Concat on the channel axis builds a
*composite* space out of its parts (offset bookkeeping). A group is cut together or not at all; a group that
reaches an op the planner cannot follow, the model's input, or a model output is left alone and listed with why.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from ..model import infer_shapes
from .graph import GraphIndex, node_attr

__all__ = ["Edit", "ChannelGroup", "Composite", "SkippedGroup", "PruningPlan", "GraphChannels", "analyze_channels"]

# Ops whose output channel c depends only on input channel c (input 0); other inputs are scalar parameters.
UNARY_OPS = {
    "Relu", "LeakyRelu", "PRelu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "Mish", "Gelu", "Erf", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Identity",
    "Dropout", "ThresholdedRelu", "Floor", "Ceil", "Round", "Sign", "Cos", "Sin",
}
POOL_OPS = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool"}
BINARY_OPS = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow"}
NORM_PARAMS = {"BatchNormalization": (1, 2, 3, 4), "InstanceNormalization": (1, 2)}


@dataclass(frozen=True)
class Edit:
    """One change the cut makes when the channels of `tensor` shrink: slice input `input_index` of `node` along
    `axis` (kind "slice"), set a depthwise conv's group (kind "group"), or fix a Resize `sizes` input."""

    node: str
    kind: str  # slice | group | resize_sizes
    tensor: str
    input_index: int = -1
    axis: int = 0
    role: str = "follower"  # producer | follower | consumer


@dataclass(frozen=True)
class ChannelGroup:
    """Coupled channels that are cut together: the producers' filters, their followers, every consumer's input."""

    name: str
    channels: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    followers: tuple[str, ...]
    tensors: tuple[str, ...]
    edits: tuple[Edit, ...]
    keep: tuple[int, ...] | None = None  # chosen by the importance criterion; None = keep all
    scores: tuple[float, ...] | None = None
    note: str = ""

    @property
    def kept(self) -> int:
        return self.channels if self.keep is None else len(self.keep)

    @property
    def pruned(self) -> int:
        return self.channels - self.kept


@dataclass(frozen=True)
class Composite:
    """The output of a channel Concat: parts in order (kind group|composite|fixed, name, channels)."""

    name: str
    tensors: tuple[str, ...]
    parts: tuple[tuple[str, str, int], ...]
    edits: tuple[Edit, ...]


@dataclass(frozen=True)
class SkippedGroup:
    name: str
    channels: int
    producers: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class PruningPlan:
    """What the cut will do. Print it (`table()`), inspect it, then `cut_channels(model, plan)`."""

    groups: tuple[ChannelGroup, ...]
    composites: tuple[Composite, ...]
    skipped: tuple[SkippedGroup, ...]
    importance: str = "l1"
    ratio: float | None = None
    input_shape: tuple[int, ...] = ()
    flops_before: int | None = None
    flops_after: int | None = None
    params_before: int | None = None
    params_after: int | None = None
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def channels_pruned(self) -> int:
        return sum(g.pruned for g in self.groups)

    def group(self, name: str) -> ChannelGroup:
        for g in self.groups:
            if g.name == name or name in g.producers:
                return g
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "importance": self.importance, "ratio": self.ratio, "input_shape": list(self.input_shape),
            "flops_before": self.flops_before, "flops_after": self.flops_after,
            "params_before": self.params_before, "params_after": self.params_after,
            "groups": [{"name": g.name, "channels": g.channels, "kept": g.kept, "producers": list(g.producers),
                        "consumers": list(g.consumers), "followers": list(g.followers),
                        "keep": list(g.keep) if g.keep is not None else None, "note": g.note} for g in self.groups],
            "composites": [{"name": c.name, "parts": [list(p) for p in c.parts]} for c in self.composites],
            "skipped": [{"name": s.name, "channels": s.channels, "producers": list(s.producers), "reason": s.reason}
                        for s in self.skipped],
            "notes": list(self.notes),
        }

    def table(self):
        """A rich Table of the groups (kept/total, producers, consumers) followed by the skipped ones."""
        from rich.table import Table

        title = f"channel pruning plan ({self.importance}"
        title += f", ratio {self.ratio:g})" if self.ratio is not None else ")"
        table = Table(title=title)
        for col, justify in (("group", "left"), ("channels", "right"), ("kept", "right"), ("producers", "left"),
                             ("followers", "right"), ("consumers", "left"), ("note", "left")):
            table.add_column(col, justify=justify)
        for g in self.groups:
            table.add_row(g.name, str(g.channels), str(g.kept), _names(g.producers), str(len(g.followers)),
                          _names(g.consumers), g.note)
        if self.skipped:
            table.add_section()
            for s in self.skipped:
                table.add_row(f"[dim]{s.name}[/]", str(s.channels), "-", _names(s.producers), "", "",
                              f"[yellow]skipped:[/] {s.reason}")
        return table

    def summary(self) -> str:
        parts = [f"{len(self.groups)} prunable groups, {len(self.skipped)} left alone, "
                 f"{self.channels_pruned} channels cut"]
        if self.flops_before and self.flops_after:
            shape = "x".join(map(str, self.input_shape))
            parts.append(f"FLOPs {self.flops_before / 1e9:.2f} G -> {self.flops_after / 1e9:.2f} G "
                         f"({self.flops_before / self.flops_after:.2f}x fewer) at {shape}")
        if self.params_before and self.params_after:
            parts.append(f"params {self.params_before:,} -> {self.params_after:,}")
        return "; ".join(parts)


def _names(names: tuple[str, ...], limit: int = 2) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" +{len(names) - limit}" if len(names) > limit else "")


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


@dataclass
class GraphChannels:
    """The planner's analysis of one prepared graph: prunable groups, composites, and what was left alone."""

    groups: list[ChannelGroup]
    composites: list[Composite]
    skipped: list[SkippedGroup]
    shapes: dict[str, tuple[int, ...]]
    input_shape: tuple[int, ...]


def _probe_shape(proto: onnx.ModelProto, input_shape: tuple[int, ...] | None) -> tuple[str, tuple[int, ...]]:
    inits = {t.name for t in proto.graph.initializer}
    first = next(v for v in proto.graph.input if v.name not in inits)
    if input_shape is not None:
        return first.name, tuple(input_shape)
    dims = first.type.tensor_type.shape.dim
    shape = []
    for i, d in enumerate(dims):
        fixed = d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
        shape.append(fixed or (1 if i == 0 else 224))
    return first.name, tuple(shape)


def analyze_channels(proto: onnx.ModelProto, *, input_shape: tuple[int, ...] | None = None) -> GraphChannels:
    """Group the channels of a prepared graph (see graph.prepare). Pure analysis: nothing is scored or cut."""
    index = GraphIndex(proto)
    input_name, probe = _probe_shape(proto, input_shape)
    shapes = infer_shapes(proto, {input_name: probe})
    uf = _UnionFind()
    producers: dict[str, list[str]] = defaultdict(list)  # tensor -> producer node names
    consumers: dict[str, list[str]] = defaultdict(list)
    edits: dict[str, list[Edit]] = defaultdict(list)  # tensor -> edits applying with its keep
    unsafe: dict[str, list[str]] = defaultdict(list)
    concats: dict[str, tuple[str, list[tuple[str | None, int]]]] = {}  # out tensor -> (node, parts)
    tensors: set[str] = set()

    def channels(name: str) -> int | None:
        shape = shapes.get(name)
        return shape[1] if shape is not None and len(shape) >= 2 else None

    def mark(name: str, reason: str) -> None:
        if name:
            tensors.add(name)
            uf.find(name)
            unsafe[name].append(reason)

    def link(a: str, b: str) -> None:
        tensors.update((a, b))
        uf.union(a, b)

    def dynamic(node: onnx.NodeProto) -> list[tuple[int, str]]:
        return [(k, n) for k, n in enumerate(node.input) if n and not index.is_const(n)]

    for name in index.graph_inputs:
        mark(name, f"is the model input '{name}'")
    for name in index.graph_outputs:
        mark(name, f"reaches the model output '{name}', whose shape must not change")

    for node in proto.graph.node:
        op, name = node.op_type, node.name
        ins = dynamic(node)
        if op in ("Conv", "ConvTranspose"):
            x, y = node.input[0], node.output[0]
            if not index.is_const(node.input[1]) or index.is_const(x):
                for n in (x, y):
                    mark(n, f"{op} '{name}' has computed (non-constant) weights or input")
                continue
            w = index.array(node.input[1])
            group = int(node_attr(node, "group", 1))
            has_bias = len(node.input) > 2 and node.input[2] != ""
            if group == 1:
                in_axis, out_axis = (1, 0) if op == "Conv" else (0, 1)
                tensors.update((x, y))
                uf.find(x), uf.find(y)
                consumers[x].append(name)
                edits[x].append(Edit(name, "slice", x, 1, in_axis, "consumer"))
                producers[y].append(name)
                edits[y].append(Edit(name, "slice", y, 1, out_axis, "producer"))
                if has_bias:
                    edits[y].append(Edit(name, "slice", y, 2, 0, "producer"))
            elif op == "Conv" and w.shape[1] == 1 and w.shape[0] == group and channels(x) == group:
                link(x, y)  # depthwise: channel c in -> channel c out
                edits[y].extend([Edit(name, "slice", y, 1, 0), Edit(name, "group", y)])
                if has_bias:
                    edits[y].append(Edit(name, "slice", y, 2, 0))
            else:
                for n in (x, y):
                    mark(n, f"grouped {op} '{name}' (group={group}) is not supported")
            continue
        if op in NORM_PARAMS:
            if len([o for o in node.output if o]) > 1:
                mark(node.input[0], f"{op} '{name}' in training mode")
                mark(node.output[0], f"{op} '{name}' in training mode")
                continue
            link(node.input[0], node.output[0])
            for k in NORM_PARAMS[op]:
                edits[node.output[0]].append(Edit(name, "slice", node.output[0], k, 0))
            continue
        if op in UNARY_OPS or op in POOL_OPS:
            extra_dynamic = [n for k, n in ins if k > 0]
            used_outputs = [o for o in node.output[1:] if o and index.consumers.get(o)]
            if op == "PRelu":
                slope = node.input[1]
                if not index.is_const(slope):
                    extra_dynamic.append(slope)
                else:
                    _const_operand(index, node, 1, node.output[0], channels(node.output[0]),
                                   len(shapes.get(node.output[0], ())), edits, mark)
            if extra_dynamic or used_outputs or not ins:
                for n in [node.input[0], *node.output]:
                    mark(n, f"{op} '{name}' has inputs or outputs the planner does not follow")
                continue
            link(node.input[0], node.output[0])
            continue
        if op in ("Resize", "Upsample"):
            _resize(index, node, link, mark, edits)
            continue
        if op == "Pad":
            _pad(index, node, link, mark)
            continue
        if op in BINARY_OPS:
            _binary(index, node, shapes, link, mark, edits)
            continue
        if op == "Concat":
            y = node.output[0]
            rank = len(shapes.get(y, ()))
            axis = int(node_attr(node, "axis", 1))
            axis = axis + rank if axis < 0 else axis
            if rank < 2:
                for n in [*node.input, y]:
                    mark(n, f"Concat '{name}' has an unknown output shape")
                continue
            if axis != 1:
                for n in node.input:
                    if n and not index.is_const(n):
                        link(n, y)
                continue
            parts: list[tuple[str | None, int]] = []
            for n in node.input:
                c = channels(n) if not index.is_const(n) else int(index.array(n).shape[1])
                if c is None:
                    mark(y, f"Concat '{name}' input '{n}' has an unknown shape")
                    c = 0
                parts.append((None if index.is_const(n) else n, c))
                if not index.is_const(n):
                    tensors.add(n)
                    uf.find(n)
            tensors.add(y)
            uf.find(y)
            concats[y] = (name, parts)
            continue
        # Anything else (Reshape, Flatten, Transpose, Shape, Gemm, MatMul, Softmax, Split, Slice, ...): stop here.
        for _, n in ins:
            mark(n, f"feeds {op} '{name}', which the planner does not follow")
        for n in node.output:
            if n:
                mark(n, f"comes from {op} '{name}', which the planner does not follow")

    return _aggregate(index, uf, tensors, producers, consumers, edits, unsafe, concats, shapes, probe, channels)


def _const_operand(index, node, k, out, c_out, rank_out, edits, mark) -> None:
    """A constant operand of an elementwise op: scalar-like is fine, per-channel gets sliced, else unsafe."""
    arr = index.array(node.input[k])
    axis = arr.ndim - (rank_out - 1) if rank_out else -1
    if arr.size <= 1 or axis < 0 or arr.shape[axis] == 1:
        return
    if c_out is not None and arr.shape[axis] == c_out:
        edits[out].append(Edit(node.name, "slice", out, k, axis))
        return
    mark(out, f"{node.op_type} '{node.name}' has a constant operand of shape {list(arr.shape)} that does not "
              f"broadcast per channel")


def _binary(index, node, shapes, link, mark, edits) -> None:
    y = node.output[0]
    out_shape = shapes.get(y)
    if out_shape is None or len(out_shape) < 2:
        for n in [*node.input, y]:
            if n and not index.is_const(n):
                mark(n, f"{node.op_type} '{node.name}' has an unknown output shape")
        return
    rank, c_out = len(out_shape), out_shape[1]
    for k, n in enumerate(node.input):
        if not n:
            continue
        if index.is_const(n):
            if node.op_type == "Pow" and k == 1 and index.array(n).size > 1:
                mark(y, f"Pow '{node.name}' has a non-scalar exponent")
            else:
                _const_operand(index, node, k, y, c_out, rank, edits, mark)
            continue
        shape = shapes.get(n)
        if shape is None:
            mark(n, f"{node.op_type} '{node.name}' input '{n}' has an unknown shape")
            mark(y, f"{node.op_type} '{node.name}' input '{n}' has an unknown shape")
            continue
        axis = len(shape) - (rank - 1)
        if axis < 0 or shape[axis] == 1 and c_out != 1:
            continue  # broadcast along channels (e.g. a 1-channel attention map): not coupled
        if shape[axis] == c_out and axis == 1:
            link(n, y)
        else:
            mark(n, f"{node.op_type} '{node.name}' combines shapes {list(shape)} and {list(out_shape)}")
            mark(y, f"{node.op_type} '{node.name}' combines shapes {list(shape)} and {list(out_shape)}")


def _resize(index, node, link, mark, edits) -> None:
    x, y = node.input[0], node.output[0]
    scale_input = 1 if node.op_type == "Upsample" else 2
    scales = node.input[scale_input] if len(node.input) > scale_input else ""
    if scales:
        if not index.is_const(scales):
            mark(x, f"{node.op_type} '{node.name}' has computed scales")
            mark(y, f"{node.op_type} '{node.name}' has computed scales")
            return
        values = index.array(scales)
        if values.size >= 2 and values[1] != 1:
            mark(x, f"{node.op_type} '{node.name}' rescales the channel axis")
            mark(y, f"{node.op_type} '{node.name}' rescales the channel axis")
            return
    sizes = node.input[3] if node.op_type == "Resize" and len(node.input) > 3 else ""
    if sizes:
        if not index.is_const(sizes):
            mark(x, f"Resize '{node.name}' has computed output sizes")
            mark(y, f"Resize '{node.name}' has computed output sizes")
            return
        edits[y].append(Edit(node.name, "resize_sizes", y, 3))
    link(x, y)


def _pad(index, node, link, mark) -> None:
    x, y = node.input[0], node.output[0]
    pads_name = node.input[1] if len(node.input) > 1 else ""
    pads = index.array(pads_name) if pads_name and index.is_const(pads_name) else node_attr(node, "pads")
    axes = node.input[3] if len(node.input) > 3 else ""
    if pads is None or axes or (pads_name and not index.is_const(pads_name)):
        mark(x, f"Pad '{node.name}' has pads the planner cannot read")
        mark(y, f"Pad '{node.name}' has pads the planner cannot read")
        return
    pads = list(np.asarray(pads).ravel())
    rank = len(pads) // 2
    if rank >= 2 and (pads[1] != 0 or pads[rank + 1] != 0):
        mark(x, f"Pad '{node.name}' pads the channel axis")
        mark(y, f"Pad '{node.name}' pads the channel axis")
        return
    link(x, y)


def _aggregate(index, uf, tensors, producers, consumers, edits, unsafe, concats, shapes, probe, channels
               ) -> GraphChannels:
    order = {}
    for i, node in enumerate(index.proto.graph.node):
        for out in node.output:
            order.setdefault(out, i)
    members: dict[str, list[str]] = defaultdict(list)
    for t in sorted(tensors, key=lambda t: (order.get(t, -1), t)):
        members[uf.find(t)].append(t)
    root_producers = {r: [p for t in ts for p in producers.get(t, [])] for r, ts in members.items()}
    root_unsafe = {r: [why for t in ts for why in unsafe.get(t, [])] for r, ts in members.items()}
    root_concats: dict[str, list[str]] = defaultdict(list)
    for y in concats:
        root_concats[uf.find(y)].append(y)
    root_channels = {}
    for r, ts in members.items():
        counts = {channels(t) for t in ts} - {None}
        if len(counts) > 1:
            root_unsafe[r].append(f"tensors disagree on the channel count ({sorted(counts)})")
        root_channels[r] = min(counts) if counts else 0
    # A composite must be defined by exactly one Concat and have no producer of its own.
    for r, ys in root_concats.items():
        if root_producers.get(r):
            root_unsafe[r].append("mixes a channel Concat with convolution outputs")
        if len(ys) > 1:
            root_unsafe[r].append("is the output of several channel Concats")
    # Unsafe composites make their parts unsafe (the concat output's channel count must not change).
    changed = True
    while changed:
        changed = False
        for r, ys in root_concats.items():
            if not root_unsafe.get(r):
                continue
            for y in ys:
                for part, _ in concats[y][1]:
                    if part is None:
                        continue
                    pr = uf.find(part)
                    if not root_unsafe.get(pr):
                        why = root_unsafe[r][0]
                        root_unsafe[pr].append(f"is concatenated into a tensor that {why}"
                                               if not why.startswith("is concatenated") else why)
                        changed = True
    groups: list[ChannelGroup] = []
    skipped: list[SkippedGroup] = []
    group_name: dict[str, str] = {}
    for r, ts in members.items():
        prods = tuple(dict.fromkeys(root_producers.get(r, [])))
        if not prods:
            continue
        name = prods[0]
        c = root_channels[r]
        if root_unsafe.get(r):
            skipped.append(SkippedGroup(name, c, prods, root_unsafe[r][0]))
            continue
        if r in root_concats:
            continue
        if c < 2:
            skipped.append(SkippedGroup(name, c, prods, "has a single channel"))
            continue
        group_edits = tuple(e for t in ts for e in edits.get(t, []))
        followers = tuple(dict.fromkeys(e.node for e in group_edits if e.role == "follower"))
        cons = tuple(dict.fromkeys(n for t in ts for n in consumers.get(t, [])))
        groups.append(ChannelGroup(name, c, prods, cons, followers, tuple(ts), group_edits))
        group_name[r] = name
    composites: list[Composite] = []
    composite_name: dict[str, str] = {}
    for r, ys in root_concats.items():
        if root_unsafe.get(r):
            continue
        composite_name[r] = concats[ys[0]][0]
    for r, name in composite_name.items():
        parts = []
        for part, c in concats[root_concats[r][0]][1]:
            pr = uf.find(part) if part is not None else None
            if pr in group_name:
                parts.append(("group", group_name[pr], c))
            elif pr in composite_name:
                parts.append(("composite", composite_name[pr], c))
            else:
                parts.append(("fixed", part or "", c))
        ts = members[r]
        comp_edits = tuple(e for t in ts for e in edits.get(t, []))
        composites.append(Composite(name, tuple(ts), tuple(parts), comp_edits))
    return GraphChannels(groups, composites, skipped, shapes, probe)
