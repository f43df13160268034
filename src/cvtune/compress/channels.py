"""Structured channel pruning: score channels, choose what each group keeps (the plan), then cut the graph.

Three independent axes, as in Torch-Pruning: the dependency analysis (plan.analyze_channels), the importance
criterion (IMPORTANCE: l1, l2, bn, activation) and the schedule (one ratio for every group, or per-group ratios,
e.g. from the sensitivity analysis). The cut removes whole filters: producers lose output channels (weights,
bias), BatchNorm/depthwise/per-channel constants follow, and every consumer loses the matching input channels, so
the dense kernels of OpenCV and ONNX Runtime really do less work. Reconstruction lives in reconstruct.py.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from ..errors import ModelError, UsageError
from ..model import Model, infer_shapes, load_onnx
from .graph import GraphIndex, drop_unused_initializers, prepare, run_tensors, set_int_attr
from .plan import ChannelGroup, GraphChannels, PruningPlan, analyze_channels

__all__ = ["IMPORTANCE", "plan_channels", "cut_channels", "tensor_keeps", "channel_activation_means",
           "probe_shape", "check_pruned", "group_aliases", "tail_layers"]

ScoreFn = Callable[[GraphIndex, ChannelGroup, dict[str, np.ndarray]], tuple[np.ndarray, str]]


def _producer_weights(index: GraphIndex, group: ChannelGroup) -> list[tuple[np.ndarray, int]]:
    out = []
    for e in group.edits:
        if e.role == "producer" and e.input_index == 1:
            out.append((index.array(index.nodes[e.node].input[1]), e.axis))
    return out


def _norm_score(order: int) -> ScoreFn:
    def score(index: GraphIndex, group: ChannelGroup, stats: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
        total = np.zeros(group.channels)
        for w, axis in _producer_weights(index, group):
            moved = np.moveaxis(np.abs(w.astype(np.float64)), axis, 0).reshape(w.shape[axis], -1)
            norms = moved.sum(1) if order == 1 else np.sqrt((moved**2).sum(1))
            total += norms / (norms.mean() + 1e-12)  # producers of different scale count equally
        return total, ""

    return score


def _bn_score(index: GraphIndex, group: ChannelGroup, stats: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    total = np.zeros(group.channels)
    found = False
    for e in group.edits:
        node = index.nodes[e.node]
        if node.op_type == "BatchNormalization" and e.input_index == 1:
            gamma = np.abs(index.array(node.input[1]).astype(np.float64))
            total += gamma / (gamma.mean() + 1e-12)
            found = True
    if not found:
        return _norm_score(1)(index, group, stats)[0], "no BatchNorm: l1"
    return total, ""


def _activation_score(index: GraphIndex, group: ChannelGroup, stats: dict[str, np.ndarray]
                      ) -> tuple[np.ndarray, str]:
    total = np.zeros(group.channels)
    for t in _measured_tensors(index, group):
        if t in stats:
            total += stats[t] / (stats[t].mean() + 1e-12)
    return total, ""


IMPORTANCE: dict[str, ScoreFn] = {
    "l1": _norm_score(1),
    "l2": _norm_score(2),
    "bn": _bn_score,
    "activation": _activation_score,
}


def _measured_tensors(index: GraphIndex, group: ChannelGroup) -> list[str]:
    """The group's tensors that leave it (into a consumer conv or a Concat): what the next layers see."""
    picked = [t for t in group.tensors
              if any(n.op_type in ("Conv", "ConvTranspose", "Concat") and n.name not in group.followers
                     for n, _ in index.consumers.get(t, []))]
    return picked or [group.tensors[-1]]


def channel_activation_means(proto: onnx.ModelProto, tensors: Sequence[str], batches: Sequence[np.ndarray]
                             ) -> dict[str, np.ndarray]:
    """Mean |activation| per channel of each tensor over the calibration batches (run in ONNX Runtime)."""
    sums: dict[str, np.ndarray] = {}
    count = 0
    for values in run_tensors(proto, tensors, batches):
        count += 1
        for name, value in values.items():
            axes = tuple(i for i in range(value.ndim) if i != 1)
            mean = np.abs(value).mean(axis=axes, dtype=np.float64)
            sums[name] = sums.get(name, 0) + mean
    return {k: v / max(count, 1) for k, v in sums.items()}


def _keep_count(channels: int, ratio: float, round_to: int) -> int:
    keep = max(1, channels - int(round(ratio * channels)))
    if round_to > 1:
        keep = min(channels, int(math.ceil(keep / round_to) * round_to))
    return keep


def plan_channels(model: onnx.ModelProto | str | os.PathLike[str], *, ratio: float | None = None,
                  ratios: dict[str, float] | None = None, importance: str = "l1",
                  calib: Sequence[np.ndarray] | None = None, input_shape: tuple[int, ...] | None = None,
                  skip: Sequence[str] = (), protect_tail: int = 0, round_to: int = 1) -> PruningPlan:
    """Analyze, score and choose the channels each group keeps. `ratio` applies to every prunable group, `ratios`
    (group or producer name -> ratio) overrides it per group; `skip` names groups to leave dense, and
    `protect_tail` leaves dense the groups produced by the last N Conv/ConvTranspose layers (found by position,
    never by name). Names may be group names, producer node names, or a producer's output tensor name, so a model
    whose nodes have no names, duplicate names or any spelling works the same. Nothing is cut here: see
    cut_channels."""
    if importance not in IMPORTANCE:
        raise UsageError(f"unknown importance '{importance}'; choose one of: {', '.join(IMPORTANCE)}")
    for value in [ratio, *(ratios or {}).values()]:
        if value is not None and not 0 < value < 1:
            raise UsageError(f"the pruning ratio must be in (0, 1): the fraction of each group's channels to remove "
                             f"(got {value})")
    if ratio is None and not ratios:
        raise UsageError("channel pruning needs a ratio in (0, 1), e.g. 0.3")
    if round_to < 1:
        raise UsageError(f"round_to must be >= 1 (got {round_to})")
    if protect_tail < 0:
        raise UsageError(f"protect_tail must be >= 0 (got {protect_tail})")
    original = model if isinstance(model, onnx.ModelProto) else load_onnx(model)
    work = prepare(original)
    shape = input_shape or probe_shape(model)
    analysis = analyze_channels(work, input_shape=shape)
    aliases = group_aliases(original, work, analysis)
    skip = [_resolve(aliases, analysis, n) for n in skip]
    ratios = {_resolve(aliases, analysis, n): r for n, r in (ratios or {}).items()}
    protected = set(tail_layers(work, protect_tail))
    index = GraphIndex(work)
    stats: dict[str, np.ndarray] = {}
    if importance == "activation":
        if not calib:
            raise UsageError("activation importance needs calibration images: give calibration images")
        tensors = [t for g in analysis.groups for t in _measured_tensors(index, g)]
        stats = channel_activation_means(work, tensors, calib)
    groups = []
    for g in analysis.groups:
        names = {g.name, *g.producers}
        if names & set(skip):
            groups.append(replace(g, note="skipped by name"))
            continue
        if names & protected:
            groups.append(replace(g, note=f"left dense: produced by one of the last {protect_tail} weighted layers"))
            continue
        r = next((ratios[n] for n in (g.name, *g.producers) if ratios and n in ratios), ratio)
        if r is None:
            groups.append(g)
            continue
        scores, note = IMPORTANCE[importance](index, g, stats)
        n_keep = _keep_count(g.channels, r, round_to)
        keep = tuple(sorted(int(i) for i in np.argsort(-scores, kind="stable")[:n_keep]))
        groups.append(replace(g, keep=keep, scores=tuple(float(s) for s in scores), note=note))
    plan = PruningPlan(tuple(groups), tuple(analysis.composites), tuple(analysis.skipped), importance=importance,
                       ratio=ratio, input_shape=tuple(analysis.input_shape))
    return _with_costs(original, plan)


def probe_shape(model) -> tuple[int, ...] | None:
    """The model's default input shape (zoo entry or preprocessing) for a file; None for an in-memory proto."""
    if isinstance(model, onnx.ModelProto):
        return None
    try:
        return Model.load(model).default_input_shape()
    except ModelError:
        return None


def tail_layers(work: onnx.ModelProto, count: int) -> tuple[str, ...]:
    """Names (in the prepared graph) of the last `count` Conv/ConvTranspose nodes in graph order."""
    if count <= 0:
        return ()
    weighted = [n.name for n in work.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    return tuple(weighted[-count:])


def group_aliases(original: onnx.ModelProto, work: onnx.ModelProto, analysis: GraphChannels) -> dict[str, str]:
    """Every name a user or a caller may use for a producer -> its name in the prepared graph: the prepared node
    name, the node's first output tensor (unique in any valid graph, kept by `prepare`), and the original node
    name when it was non-empty and unique. Node names are whatever the exporter wrote (or nothing), so nothing
    else may rely on them."""
    by_output = {n.output[0]: n.name for n in work.graph.node if n.output}
    aliases: dict[str, str] = {}
    for n in work.graph.node:
        aliases[n.name] = n.name
        if n.output and n.output[0]:
            aliases.setdefault(n.output[0], n.name)
    counts: dict[str, int] = {}
    for n in original.graph.node:
        counts[n.name] = counts.get(n.name, 0) + 1
    for n in original.graph.node:
        if n.name and counts[n.name] == 1 and n.output and n.output[0] in by_output:
            aliases.setdefault(n.name, by_output[n.output[0]])
    return aliases


def _resolve(aliases: dict[str, str], analysis: GraphChannels, name: str) -> str:
    """A group or producer name as the planner knows it, or a UsageError listing the valid ones."""
    known = {n for g in analysis.groups for n in (g.name, *g.producers)}
    known |= {n for s in analysis.skipped for n in (s.name, *s.producers)}
    resolved = aliases.get(name, name)
    if resolved not in known:
        shown = ", ".join(g.name for g in analysis.groups[:6]) + (", ..." if len(analysis.groups) > 6 else "")
        raise UsageError(f"unknown channel group '{name}'; prunable groups are named after their first "
                         f"producer (node name, or its output tensor): {shown or '(none)'}")
    return resolved


def _with_costs(original: onnx.ModelProto, plan: PruningPlan) -> PruningPlan:
    """Fill FLOPs and parameter counts before and after the cut, at the plan's probe input shape."""
    before = Model(Path("original.onnx"), prepare(original))
    after = Model(Path("pruned.onnx"), cut_channels(original, plan, check=False))
    shape = plan.input_shape
    return replace(plan, flops_before=before.total_flops(shape), flops_after=after.total_flops(shape),
                   params_before=before.param_count, params_after=after.param_count)


def tensor_keeps(plan: PruningPlan) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Channels kept per tensor (groups and composites of the plan) and each such tensor's full channel count."""
    keeps: dict[str, np.ndarray] = {}
    full: dict[str, int] = {}
    group_keep = {g.name: (np.arange(g.channels) if g.keep is None else np.asarray(g.keep, dtype=np.int64),
                           g.channels) for g in plan.groups}
    composites = {c.name: c for c in plan.composites}
    resolved: dict[str, tuple[np.ndarray, int]] = {}

    def composite(name: str, depth: int = 0) -> tuple[np.ndarray, int]:
        if name in resolved:
            return resolved[name]
        if depth > len(composites):
            raise ModelError(f"the plan's concat '{name}' refers to itself")
        pieces, offset = [], 0
        for kind, part, channels in composites[name].parts:
            if kind == "group" and part in group_keep:
                pieces.append(group_keep[part][0] + offset)
            elif kind == "composite" and part in composites:
                pieces.append(composite(part, depth + 1)[0] + offset)
            else:
                pieces.append(np.arange(channels) + offset)
            offset += channels
        resolved[name] = (np.concatenate(pieces) if pieces else np.zeros(0, np.int64), offset)
        return resolved[name]

    for g in plan.groups:
        for t in g.tensors:
            keeps[t], full[t] = group_keep[g.name]
    for c in plan.composites:
        keep, channels = composite(c.name)
        for t in c.tensors:
            keeps[t], full[t] = keep, channels
    return keeps, full


def cut_channels(model: onnx.ModelProto | str | os.PathLike[str], plan: PruningPlan, *, check: bool = True
                 ) -> onnx.ModelProto:
    """Apply the plan: a new model whose pruned channels are gone (the argument is never modified)."""
    original = model if isinstance(model, onnx.ModelProto) else load_onnx(model)
    work = prepare(original)
    index = GraphIndex(work)
    keeps, full = tensor_keeps(plan)
    edits = [e for g in plan.groups for e in g.edits] + [e for c in plan.composites for e in c.edits]
    for e in edits:
        keep, channels = keeps[e.tensor], full[e.tensor]
        if len(keep) == channels:
            continue
        node = index.nodes.get(e.node)
        if node is None:
            raise ModelError(f"the pruning plan does not match this model: it has no node '{e.node}'")
        if e.kind == "group":
            set_int_attr(node, "group", len(keep))
            continue
        name = node.input[e.input_index]
        value = index.array(name)
        if e.kind == "resize_sizes":
            value = value.copy()
            value[1] = len(keep)
        else:
            if value.ndim <= e.axis or value.shape[e.axis] != channels:
                raise ModelError(f"the pruning plan does not match this model: '{name}' of node '{e.node}' has "
                                 f"shape {list(value.shape)}, expected {channels} along axis {e.axis}")
            value = np.take(value, keep, axis=e.axis)
        index.set_array(name, value)
    del work.graph.value_info[:]
    drop_unused_initializers(work)
    if check:
        check_pruned(original, work, plan.input_shape)
    return work


def check_pruned(original: onnx.ModelProto, pruned: onnx.ModelProto, input_shape: tuple[int, ...]) -> None:
    """onnx.checker passes and every model output keeps the original's shape at the probe input shape."""
    try:
        onnx.checker.check_model(pruned)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"the pruned model fails onnx.checker: {str(exc).strip().splitlines()[0][:300]}") from None
    if not input_shape:
        return
    inits = {t.name for t in original.graph.initializer}
    first = next(v.name for v in original.graph.input if v.name not in inits)
    before = infer_shapes(original, {first: input_shape})
    after = infer_shapes(pruned, {first: input_shape})
    for out in original.graph.output:
        if out.name in before and before[out.name] != after.get(out.name):
            raise ModelError(f"pruning changed the shape of model output '{out.name}' "
                             f"({list(before[out.name])} -> {after.get(out.name)}); please report this graph")
