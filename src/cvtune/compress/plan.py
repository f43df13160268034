"""Structured channel pruning, step 1: find the coupled channels of an ONNX graph and plan the cut.

Like Torch-Pruning's dependency graph, but on ONNX: every 4-D feature map belongs to a *channel space*. A Conv (or
ConvTranspose) with group=1 opens a new space at its output; ops that keep channel i as channel i (BatchNorm,
activations, Resize, pooling, depthwise convs, elementwise Add/Mul with a same-shaped tensor, squeeze-excite gates
multiplied back onto the trunk) merge their input and output spaces. A Concat on the channel axis builds a
*composite* space out of its parts (offset bookkeeping). A group is cut together or not at all; a group that
reaches an op the planner cannot follow, the model's input, or a model output is left alone and listed with why.

What each op does is data: OP_HANDLERS maps an op type to one handler function, registered with `@handles(...)`,
that reads and extends the walk's state (ChannelWalk). An op without a handler stops the walk. Supporting a new op
is one decorated function.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from ..model import infer_shapes
from .graph import GraphIndex, node_attr

__all__ = ["Edit", "ChannelGroup", "Composite", "SkippedGroup", "PruningPlan", "GraphChannels", "analyze_channels",
           "ChannelWalk", "Handler", "OP_HANDLERS", "handles"]

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


@dataclass
class ChannelWalk:
    """The state of one walk over a prepared graph: which tensors share a channel space (union-find), who produces
    and consumes each tensor's channels, the edits that follow a tensor's keep, why a tensor must keep all its
    channels, and the channel Concats. Op handlers (OP_HANDLERS) read and extend it, one node at a time."""

    index: GraphIndex
    shapes: dict[str, tuple[int, ...]]
    probe: tuple[int, ...]
    uf: _UnionFind = field(default_factory=_UnionFind)
    tensors: set[str] = field(default_factory=set)
    producers: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # tensor -> producer nodes
    consumers: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    edits: dict[str, list[Edit]] = field(default_factory=lambda: defaultdict(list))  # tensor -> edits with its keep
    unsafe: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # tensor -> why it cannot shrink
    concats: dict[str, tuple[str, list[tuple[str | None, int]]]] = field(default_factory=dict)  # out -> (node, parts)

    @classmethod
    def start(cls, proto: onnx.ModelProto, input_shape: tuple[int, ...] | None = None) -> ChannelWalk:
        """A fresh walk over `proto` with static shapes inferred at `input_shape` (default: from the graph)."""
        input_name, probe = _probe_shape(proto, input_shape)
        return cls(GraphIndex(proto), infer_shapes(proto, {input_name: probe}), probe)

    def channels(self, name: str) -> int | None:
        shape = self.shapes.get(name)
        return shape[1] if shape is not None and len(shape) >= 2 else None

    def track(self, name: str) -> None:
        """Give `name` a channel space of its own (until something links it)."""
        self.tensors.add(name)
        self.uf.find(name)

    def mark(self, name: str, reason: str) -> None:
        """`name`'s channel count must not change, because of `reason` (the first reason is what users see)."""
        if name:
            self.track(name)
            self.unsafe[name].append(reason)

    def link(self, a: str, b: str) -> None:
        """Channel c of `a` is channel c of `b`: one space, cut together."""
        self.tensors.update((a, b))
        self.uf.union(a, b)

    def edit(self, *edits: Edit) -> None:
        """Edits that apply with the keep of their tensor."""
        for e in edits:
            self.edits[e.tensor].append(e)

    def dynamic(self, node: onnx.NodeProto) -> list[tuple[int, str]]:
        """(input index, name) of the node's computed (non-constant) inputs."""
        return [(k, n) for k, n in enumerate(node.input) if n and not self.index.is_const(n)]

    def const_operand(self, node: onnx.NodeProto, k: int) -> None:
        """Constant input k of an elementwise op: scalar-like is fine, per-channel gets sliced, else unsafe."""
        out = node.output[0]
        rank_out = len(self.shapes.get(out, ()))
        arr = self.index.array(node.input[k])
        axis = arr.ndim - (rank_out - 1) if rank_out else -1
        if arr.size <= 1 or axis < 0 or arr.shape[axis] == 1:
            return
        c_out = self.channels(out)
        if c_out is not None and arr.shape[axis] == c_out:
            self.edit(Edit(node.name, "slice", out, k, axis))
            return
        self.mark(out, f"{node.op_type} '{node.name}' has a constant operand of shape {list(arr.shape)} that does "
                       f"not broadcast per channel")


Handler = Callable[[ChannelWalk, onnx.NodeProto], None]

# op type -> what the planner does with a node of that type; ops missing here stop the walk (_not_followed).
OP_HANDLERS: dict[str, Handler] = {}


def handles(*ops: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the channel handler of `ops`:

        @handles("Shrink")
        def _shrink(walk: ChannelWalk, node: onnx.NodeProto) -> None:
            walk.link(node.input[0], node.output[0])
    """

    def register(handler: Handler) -> Handler:
        for op in ops:
            if op in OP_HANDLERS:
                raise ValueError(f"op '{op}' already has a channel handler ({OP_HANDLERS[op].__name__}); "
                                 f"del OP_HANDLERS['{op}'] first to replace it")
            OP_HANDLERS[op] = handler
        return handler

    return register


def analyze_channels(proto: onnx.ModelProto, *, input_shape: tuple[int, ...] | None = None) -> GraphChannels:
    """Group the channels of a prepared graph (see graph.prepare). Pure analysis: nothing is scored or cut."""
    walk = ChannelWalk.start(proto, input_shape)
    for name in walk.index.graph_inputs:
        walk.mark(name, f"is the model input '{name}'")
    for name in walk.index.graph_outputs:
        walk.mark(name, f"reaches the model output '{name}', whose shape must not change")
    for node in proto.graph.node:
        OP_HANDLERS.get(node.op_type, _not_followed)(walk, node)
    return _aggregate(walk)


def _not_followed(walk: ChannelWalk, node: onnx.NodeProto) -> None:
    """Anything without a handler (Reshape, Flatten, Transpose, Shape, Gemm, MatMul, Softmax, Split, ...): stop."""
    op, name = node.op_type, node.name
    for _, n in walk.dynamic(node):
        walk.mark(n, f"feeds {op} '{name}', which the planner does not follow")
    for n in node.output:
        if n:
            walk.mark(n, f"comes from {op} '{name}', which the planner does not follow")


@handles("Conv", "ConvTranspose")
def _conv(walk: ChannelWalk, node: onnx.NodeProto) -> None:
    """group=1 opens a new channel space at the output; a depthwise Conv carries channel c to channel c."""
    op, name, index = node.op_type, node.name, walk.index
    x, y = node.input[0], node.output[0]
    if not index.is_const(node.input[1]) or index.is_const(x):
        for n in (x, y):
            walk.mark(n, f"{op} '{name}' has computed (non-constant) weights or input")
        return
    w = index.array(node.input[1])
    group = int(node_attr(node, "group", 1))
    has_bias = len(node.input) > 2 and node.input[2] != ""
    if group == 1:
        in_axis, out_axis = (1, 0) if op == "Conv" else (0, 1)
        walk.track(x)
        walk.track(y)
        walk.consumers[x].append(name)
        walk.edit(Edit(name, "slice", x, 1, in_axis, "consumer"))
        walk.producers[y].append(name)
        walk.edit(Edit(name, "slice", y, 1, out_axis, "producer"))
        if has_bias:
            walk.edit(Edit(name, "slice", y, 2, 0, "producer"))
    elif op == "Conv" and w.shape[1] == 1 and w.shape[0] == group and walk.channels(x) == group:
        walk.link(x, y)  # depthwise: channel c in -> channel c out
        walk.edit(Edit(name, "slice", y, 1, 0), Edit(name, "group", y))
        if has_bias:
            walk.edit(Edit(name, "slice", y, 2, 0))
    else:
        for n in (x, y):
            walk.mark(n, f"grouped {op} '{name}' (group={group}) is not supported")


@handles(*NORM_PARAMS)
def _norm(walk: ChannelWalk, node: onnx.NodeProto) -> None:
    """Per-channel normalization: the output follows the input, its parameters get sliced."""
    op, name = node.op_type, node.name
    if len([o for o in node.output if o]) > 1:
        walk.mark(node.input[0], f"{op} '{name}' in training mode")
        walk.mark(node.output[0], f"{op} '{name}' in training mode")
        return
    walk.link(node.input[0], node.output[0])
    for k in NORM_PARAMS[op]:
        walk.edit(Edit(name, "slice", node.output[0], k, 0))


@handles(*sorted(UNARY_OPS | POOL_OPS))
def _unary(walk: ChannelWalk, node: onnx.NodeProto) -> None:
    """Activations and pooling keep channel c as channel c (PRelu's per-channel slope gets sliced)."""
    op, name, index = node.op_type, node.name, walk.index
    ins = walk.dynamic(node)
    extra_dynamic = [n for k, n in ins if k > 0]
    used_outputs = [o for o in node.output[1:] if o and index.consumers.get(o)]
    if op == "PRelu":
        slope = node.input[1]
        if not index.is_const(slope):
            extra_dynamic.append(slope)
        else:
            walk.const_operand(node, 1)
    if extra_dynamic or used_outputs or not ins:
        for n in [node.input[0], *node.output]:
            walk.mark(n, f"{op} '{name}' has inputs or outputs the planner does not follow")
        return
    walk.link(node.input[0], node.output[0])


@handles("Resize", "Upsample")
def _resize(walk: ChannelWalk, node: onnx.NodeProto) -> None:
    """Spatial resizing follows the channels unless it scales the channel axis or computes its scales/sizes."""
    index = walk.index
    x, y = node.input[0], node.output[0]
    scale_input = 1 if node.op_type == "Upsample" else 2
    scales = node.input[scale_input] if len(node.input) > scale_input else ""
    if scales:
        if not index.is_const(scales):
            walk.mark(x, f"{node.op_type} '{node.name}' has computed scales")
            walk.mark(y, f"{node.op_type} '{node.name}' has computed scales")
            return
        values = index.array(scales)
        if values.size >= 2 and values[1] != 1:
            walk.mark(x, f"{node.op_type} '{node.name}' rescales the channel axis")
            walk.mark(y, f"{node.op_type} '{node.name}' rescales the channel axis")
            return
    sizes = node.input[3] if node.op_type == "Resize" and len(node.input) > 3 else ""
    if sizes:
        if not index.is_const(sizes):
            walk.mark(x, f"Resize '{node.name}' has computed output sizes")
            walk.mark(y, f"Resize '{node.name}' has computed output sizes")
            return
        walk.edit(Edit(node.name, "resize_sizes", y, 3))
    walk.link(x, y)


@handles("Pad")
def _pad(walk: ChannelWalk, node: onnx.NodeProto) -> None:
    """Spatial padding follows the channels; padding the channel axis (or unreadable pads) stops the walk."""
    index = walk.index
    x, y = node.input[0], node.output[0]
    pads_name = node.input[1] if len(node.input) > 1 else ""
    pads = index.array(pads_name) if pads_name and index.is_const(pads_name) else node_attr(node, "pads")
    axes = node.input[3] if len(node.input) > 3 else ""
    if pads is None or axes or (pads_name and not index.is_const(pads_name)):
        walk.mark(x, f"Pad '{node.name}' has pads the planner cannot read")
        walk.mark(y, f"Pad '{node.name}' has pads the planner cannot read")
        return
    pads = list(np.asarray(pads).ravel())
    rank = len(pads) // 2
    if rank >= 2 and (pads[1] != 0 or pads[rank + 1] != 0):
        walk.mark(x, f"Pad '{node.name}' pads the channel axis")
        walk.mark(y, f"Pad '{node.name}' pads the channel axis")
        return
    walk.link(x, y)


@handles(*sorted(BINARY_OPS))
def _binary(walk: ChannelWalk, node: onnx.NodeProto) -> None:
    """Elementwise ops couple same-channel operands (residual adds, gates); channel-broadcast ones stay apart."""
    index = walk.index
    y = node.output[0]
    out_shape = walk.shapes.get(y)
    if out_shape is None or len(out_shape) < 2:
        for n in [*node.input, y]:
            if n and not index.is_const(n):
                walk.mark(n, f"{node.op_type} '{node.name}' has an unknown output shape")
        return
    rank, c_out = len(out_shape), out_shape[1]
    for k, n in enumerate(node.input):
        if not n:
            continue
        if index.is_const(n):
            if node.op_type == "Pow" and k == 1 and index.array(n).size > 1:
                walk.mark(y, f"Pow '{node.name}' has a non-scalar exponent")
            else:
                walk.const_operand(node, k)
            continue
        shape = walk.shapes.get(n)
        if shape is None:
            walk.mark(n, f"{node.op_type} '{node.name}' input '{n}' has an unknown shape")
            walk.mark(y, f"{node.op_type} '{node.name}' input '{n}' has an unknown shape")
            continue
        axis = len(shape) - (rank - 1)
        if axis < 0 or shape[axis] == 1 and c_out != 1:
            continue  # broadcast along channels (e.g. a 1-channel attention map): not coupled
        if shape[axis] == c_out and axis == 1:
            walk.link(n, y)
        else:
            walk.mark(n, f"{node.op_type} '{node.name}' combines shapes {list(shape)} and {list(out_shape)}")
            walk.mark(y, f"{node.op_type} '{node.name}' combines shapes {list(shape)} and {list(out_shape)}")


@handles("Concat")
def _concat(walk: ChannelWalk, node: onnx.NodeProto) -> None:
    """A channel Concat builds a composite space out of its parts; any other axis couples every input."""
    name, index = node.name, walk.index
    y = node.output[0]
    rank = len(walk.shapes.get(y, ()))
    axis = int(node_attr(node, "axis", 1))
    axis = axis + rank if axis < 0 else axis
    if rank < 2:
        for n in [*node.input, y]:
            walk.mark(n, f"Concat '{name}' has an unknown output shape")
        return
    if axis != 1:
        for n in node.input:
            if n and not index.is_const(n):
                walk.link(n, y)
        return
    parts: list[tuple[str | None, int]] = []
    for n in node.input:
        c = walk.channels(n) if not index.is_const(n) else int(index.array(n).shape[1])
        if c is None:
            walk.mark(y, f"Concat '{name}' input '{n}' has an unknown shape")
            c = 0
        parts.append((None if index.is_const(n) else n, c))
        if not index.is_const(n):
            walk.track(n)
    walk.track(y)
    walk.concats[y] = (name, parts)


def _aggregate(walk: ChannelWalk) -> GraphChannels:
    """Turn the walk's channel spaces into prunable groups, composites and skipped groups (with the first reason)."""
    uf, concats, edits = walk.uf, walk.concats, walk.edits
    order = {}
    for i, node in enumerate(walk.index.proto.graph.node):
        for out in node.output:
            order.setdefault(out, i)
    members: dict[str, list[str]] = defaultdict(list)
    for t in sorted(walk.tensors, key=lambda t: (order.get(t, -1), t)):
        members[uf.find(t)].append(t)
    root_producers = {r: [p for t in ts for p in walk.producers.get(t, [])] for r, ts in members.items()}
    root_unsafe = {r: [why for t in ts for why in walk.unsafe.get(t, [])] for r, ts in members.items()}
    root_concats: dict[str, list[str]] = defaultdict(list)
    for y in concats:
        root_concats[uf.find(y)].append(y)
    root_channels = {}
    for r, ts in members.items():
        counts = {walk.channels(t) for t in ts} - {None}
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
        cons = tuple(dict.fromkeys(n for t in ts for n in walk.consumers.get(t, [])))
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
    return GraphChannels(groups, composites, skipped, walk.shapes, walk.probe)
