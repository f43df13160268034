"""Per-group sensitivity curves, cheap enough to run inside the search.

For each prunable channel group and a few ratios: cut that group alone (importance-ranked, kept counts rounded
as the allocation will), refit the layers after the cut by least squares, and measure on a small calibration
sample (a) the output error (NMSE, additive across groups) and (b) the task-level agreement with the original
(compress.agreement: hmean of text boxes, top-1, detections; 1.0 = unchanged). What makes it cheap:

- the original model runs once per chunk of groups, exposing the tensors those groups need (memory-bounded);
- the refit reads those cached activations (a single cut's refit layers see exactly the original's kept
  channels), so no model runs for reconstruction;
- each point runs only the part of the graph downstream of the cut, fed from the cached tensors;
- the curves are cached on disk, keyed by model content + calibration tensors + task + settings.

    curves = channel_curves(proto, calib_tensors, task="textdet")
    curves.table()
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx

from ..errors import ModelError, UsageError
from ..files import write_json
from .agreement import agreement_for, output_nmse
from .channels import IMPORTANCE, _measured_tensors, channel_activation_means, cut_channels
from .cost import cache_dir, keep_fraction
from .graph import GraphIndex, ort_session, prepare, run_tensors, tensor_types, value_info
from .plan import ChannelGroup, GraphChannels, PruningPlan, analyze_channels
from .reconstruct import reconstruct, refit_tensors

__all__ = ["CurvePoint", "GroupCurve", "ChannelCurves", "channel_curves", "DEFAULT_LEVELS", "single_group_plan",
           "evaluate_model", "sample_count"]

DEFAULT_LEVELS = (0.25, 0.5, 0.75)
FORMAT = "cvtune-channel-curves/1"


@dataclass(frozen=True)
class CurvePoint:
    """One group cut at `ratio` (the effective fraction of its channels removed, after rounding)."""

    ratio: float
    nmse: float
    agreement: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class GroupCurve:
    name: str
    channels: int
    points: tuple[CurvePoint, ...]

    def at(self, ratio: float) -> CurvePoint:
        for p in self.points:
            if abs(p.ratio - ratio) < 1e-9:
                return p
        raise KeyError(ratio)


@dataclass(frozen=True)
class ChannelCurves:
    """Sensitivity of every measured group, on `images` calibration tensors, with the measure used."""

    key: str
    task: str
    measure: str
    images: int
    levels: tuple[float, ...]
    round_to: int
    importance: str
    curves: tuple[GroupCurve, ...]
    left_alone: tuple[tuple[str, str], ...] = ()  # (group, why not measured)
    seconds: float = 0.0

    def curve(self, name: str) -> GroupCurve:
        for c in self.curves:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "key": self.key, "task": self.task, "measure": self.measure,
                "images": self.images, "levels": list(self.levels), "round_to": self.round_to,
                "importance": self.importance, "seconds": self.seconds,
                "curves": [{"name": c.name, "channels": c.channels,
                            "points": [[p.ratio, p.nmse, p.agreement, p.low, p.high] for p in c.points]}
                           for c in self.curves],
                "left_alone": [list(x) for x in self.left_alone]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChannelCurves:
        if data.get("format") != FORMAT:
            raise UsageError(f"not a cvtune channel-curves file (format {data.get('format')!r})")
        curves = tuple(GroupCurve(c["name"], int(c["channels"]),
                                  tuple(CurvePoint(*p) for p in c["points"])) for c in data["curves"])
        return cls(data["key"], data["task"], data["measure"], int(data["images"]), tuple(data["levels"]),
                   int(data["round_to"]), data["importance"], curves,
                   tuple(tuple(x) for x in data.get("left_alone", [])), float(data.get("seconds", 0.0)))

    def table(self):
        """A rich Table: per group, each measured ratio (after rounding) -> agreement / output NMSE."""
        from rich.table import Table

        table = Table(title=f"channel sensitivity on {self.images} images: ratio cut -> agreement ({self.measure}) "
                            f"/ output NMSE")
        table.add_column("group")
        table.add_column("channels", justify="right")
        table.add_column("points")
        for c in self.curves:
            table.add_row(c.name, str(c.channels),
                          "   ".join(f"{p.ratio:.2f}: {p.agreement:.3f} / {p.nmse:.1e}" for p in c.points))
        for name, why in self.left_alone:
            table.add_row(f"[dim]{name}[/]", "", f"[yellow]not measured:[/] {why}")
        return table


def _effective(channels: int, ratio: float, round_to: int) -> float:
    """The fraction really removed when `ratio` is asked of a group of `channels` (after rounding)."""
    return round(1.0 - keep_fraction(channels, ratio, round_to), 6)


def single_group_plan(analysis: GraphChannels, group: ChannelGroup, keep: Sequence[int], *,
                      input_shape: tuple[int, ...], importance: str) -> PruningPlan:
    """A plan that cuts `group` only, keeping channels `keep`."""
    groups = tuple(replace(g, keep=tuple(int(i) for i in keep)) if g.name == group.name else g
                   for g in analysis.groups)
    return PruningPlan(groups, tuple(analysis.composites), tuple(analysis.skipped), importance=importance,
                       input_shape=tuple(input_shape))


def keep_by_score(scores: np.ndarray, channels: int, ratio: float, round_to: int) -> tuple[int, ...]:
    n_keep = int(round(keep_fraction(channels, ratio, round_to) * channels))
    return tuple(sorted(int(i) for i in np.argsort(-scores, kind="stable")[:n_keep]))


def _downstream(work: onnx.ModelProto, seeds: set[str]) -> tuple[list[onnx.NodeProto], list[str]]:
    """Nodes at or downstream of the `seeds` node names, in graph order, and their inputs computed upstream."""
    inits = {t.name for t in work.graph.initializer}
    affected_tensors: set[str] = set()
    nodes = []
    for node in work.graph.node:
        if node.name in seeds or any(i in affected_tensors for i in node.input if i):
            nodes.append(node)
            affected_tensors.update(o for o in node.output if o)
    boundary = []
    for node in nodes:
        for i in node.input:
            if i and i not in inits and i not in affected_tensors and i not in boundary:
                boundary.append(i)
    return nodes, boundary


def _suffix_model(model: onnx.ModelProto, seeds: set[str], outputs: Sequence[str]
                  ) -> tuple[onnx.ModelProto, list[str], list[str]]:
    """The part of `model` downstream of the seed nodes, with its upstream inputs as graph inputs; returns the
    model, its inputs and which of `outputs` it computes (the others are unchanged by the cut)."""
    from .graph import drop_unused_initializers

    nodes, boundary = _downstream(model, seeds)
    produced = {o for n in nodes for o in n.output}
    outs = [o for o in outputs if o in produced]
    sub = onnx.ModelProto()
    sub.CopyFrom(model)
    del sub.graph.node[:]
    sub.graph.node.extend(nodes)
    del sub.graph.input[:]
    types = tensor_types(model)
    sub.graph.input.extend(value_info(b, types) for b in boundary)
    del sub.graph.output[:]
    sub.graph.output.extend(value_info(o, types) for o in outs)
    del sub.graph.value_info[:]
    drop_unused_initializers(sub)
    return sub, boundary, outs


def evaluate_model(model: onnx.ModelProto, calib: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """Every output of `model` on each calibration tensor (ONNX Runtime)."""
    session = ort_session(model)
    name = session.get_inputs()[0].name
    return [list(session.run(None, {name: np.ascontiguousarray(x, np.float32)})) for x in calib]


def sample_count(shape: tuple[int, ...], *, base: int = 4, side: int = 480, cap: int = 64) -> int:
    """How many calibration images the curves need for an input of `shape`: `base` images of `side` x `side`
    pixels' worth, so small inputs (a 48 x 320 text line, a 224 classifier crop) get more images for the same
    cost: 4 text lines cannot show a recognizer's damage (measured: all cuts looked free on PP-OCR rec)."""
    pixels = max(1, int(np.prod(shape[2:])))
    return int(min(cap, max(base, base * side * side // pixels)))


def _tensors_key(calib: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for x in calib:
        digest.update(np.asarray(x.shape, np.int64).tobytes())
        digest.update(np.ascontiguousarray(x, np.float32).tobytes())
    return digest.hexdigest()


def channel_curves(model: onnx.ModelProto, calib: Sequence[np.ndarray], *, task: str | None = None,
                   levels: Sequence[float] = DEFAULT_LEVELS, importance: str = "activation", round_to: int = 8,
                   groups: Sequence[str] | None = None, ridge: float = 1e-2, max_rows: int = 2048,
                   memory_mb: float = 1024.0, cache: bool = True,
                   on_group: Callable[[int, int, str], None] | None = None) -> ChannelCurves:
    """Sensitivity curves of the prunable groups of `model` (only `groups` when given) on `calib` (a few
    (1, C, H, W) float32 tensors), with reconstruction. `task` picks the agreement measure (compress.agreement);
    kept channel counts are rounded up to multiples of `round_to`, as the allocation will cut them. Cached under
    cache_dir() by model content, calibration tensors, task and settings."""
    if not calib:
        raise UsageError("sensitivity curves need calibration images")
    if importance not in IMPORTANCE:
        raise UsageError(f"unknown importance '{importance}'; choose one of: {', '.join(IMPORTANCE)}")
    levels = tuple(sorted({float(lv) for lv in levels}))
    if not levels or any(not 0 < lv < 1 for lv in levels):
        raise UsageError(f"sensitivity levels must lie in (0, 1) (got {list(levels)})")
    started = time.perf_counter()
    work = prepare(model)
    shape = tuple(calib[0].shape)
    analysis = analyze_channels(work, input_shape=shape)
    wanted = [g for g in analysis.groups if groups is None or g.name in set(groups)]
    key_src = json.dumps({"model": hashlib.sha256(work.SerializeToString()).hexdigest(), "calib": _tensors_key(calib),
                          "task": task, "levels": list(levels), "importance": importance, "round_to": round_to,
                          "ridge": ridge, "max_rows": max_rows, "groups": sorted(g.name for g in wanted)},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    path = cache_dir() / "prune" / f"curves-{key}.json"
    if cache and path.is_file():
        try:
            return ChannelCurves.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError, UsageError):
            pass
    index = GraphIndex(work)
    reference = evaluate_model(work, calib)
    measure_name, agree = agreement_for(task, reference[0])
    try:
        agree(reference, reference)
    except Exception:  # noqa: BLE001 - outputs the task's decoder cannot read: compare raw outputs instead
        measure_name, agree = agreement_for("cosine")
    stats: dict[str, np.ndarray] = {}
    if importance == "activation":
        tensors = [t for g in wanted for t in _measured_tensors(index, g)]
        stats = channel_activation_means(work, tensors, calib)
    outputs = [o.name for o in work.graph.output]
    curves: list[GroupCurve] = []
    left_alone: list[tuple[str, str]] = []
    jobs = _points(wanted, levels, round_to, left_alone)
    chunks = _chunks(work, analysis, [(g, pts) for g, pts in jobs], calib, memory_mb)
    done = 0
    for chunk, needed in chunks:
        inputs = {v.name for v in work.graph.input}
        computed = [t for t in needed if t not in inputs]
        cached: dict[str, list[np.ndarray]] = {t: [] for t in computed}
        for values in run_tensors(work, computed, calib):
            for t in computed:
                cached[t].append(values[t])
        for t in needed:
            if t in inputs:
                cached[t] = [np.ascontiguousarray(x, np.float32) for x in calib]
        for group, ratios in chunk:
            if on_group:
                on_group(done, len(jobs), group.name)
            done += 1
            scores, _ = IMPORTANCE[importance](index, group, stats)
            seeds = _seeds(analysis, group.name)
            points = []
            for ratio in ratios:
                keep = keep_by_score(scores, group.channels, ratio, round_to)
                plan = single_group_plan(analysis, group, keep, input_shape=shape, importance=importance)
                cand = _cut_and_measure(work, plan, group, seeds, cached, calib, outputs, reference, ridge,
                                        max_rows)
                nmse = float(np.mean([output_nmse(r, c) for r, c in zip(reference, cand, strict=True)]))
                a = agree(reference, cand)
                points.append(CurvePoint(ratio, nmse, a.value, a.low, a.high))
            curves.append(GroupCurve(group.name, group.channels, tuple(points)))
        del cached
    order = {g.name: i for i, g in enumerate(analysis.groups)}
    curves.sort(key=lambda c: order[c.name])
    result = ChannelCurves(key, task or "", measure_name, len(calib), levels, round_to, importance, tuple(curves),
                           tuple(left_alone), round(time.perf_counter() - started, 2))
    if cache:
        write_json(path, result.to_dict())
    return result


def _points(groups: Sequence[ChannelGroup], levels: Sequence[float], round_to: int,
            left_alone: list[tuple[str, str]]) -> list[tuple[ChannelGroup, list[float]]]:
    """Per group, the distinct effective ratios the levels give after rounding (none: the group is too narrow)."""
    jobs = []
    for g in groups:
        ratios = sorted({_effective(g.channels, lv, round_to) for lv in levels} - {0.0})
        if ratios:
            jobs.append((g, ratios))
        else:
            left_alone.append((g.name, f"{g.channels} channels: no level cuts a whole multiple of {round_to}"))
    return jobs


def _seeds(analysis: GraphChannels, group: str) -> set[str]:
    """Nodes a cut of `group` edits: its own, and those of the channel Concats it is (transitively) part of."""
    inside = {group}
    changed = True
    while changed:
        changed = False
        for c in analysis.composites:
            if c.name not in inside and any(part in inside for kind, part, _ in c.parts if kind != "fixed"):
                inside.add(c.name)
                changed = True
    nodes = {e.node for g in analysis.groups if g.name == group for e in g.edits}
    return nodes | {e.node for c in analysis.composites if c.name in inside for e in c.edits}


def _needed(work: onnx.ModelProto, analysis: GraphChannels, group: ChannelGroup,
            shape: tuple[int, ...]) -> set[str]:
    """Original tensors one group's points read: the cut's upstream inputs, and every refit layer's input and
    output."""
    _, boundary = _downstream(work, _seeds(analysis, group.name))
    plan = single_group_plan(analysis, group, range(max(1, group.channels // 2)), input_shape=shape,
                             importance="l1")
    cut = cut_channels(work, plan, check=False)
    xs, ys = refit_tensors(cut, plan)
    return set(boundary) | set(xs) | set(ys)


def _chunks(work: onnx.ModelProto, analysis: GraphChannels, jobs: list[tuple[ChannelGroup, list[float]]],
            calib: Sequence[np.ndarray], memory_mb: float
            ) -> list[tuple[list[tuple[ChannelGroup, list[float]]], list[str]]]:
    """Jobs split so the original tensors each chunk caches fit in `memory_mb` (estimated from inferred shapes;
    a single group over the budget gets a chunk of its own)."""
    shape = tuple(calib[0].shape)
    pixels = [float(np.prod(x.shape[2:])) for x in calib]
    scale = sum(pixels) / float(np.prod(shape[2:]))
    graph_inputs = {v.name for v in work.graph.input}

    def megabytes(tensors: set[str]) -> float:
        total = 0.0
        for t in tensors:
            dims = analysis.shapes.get(t)
            if dims is None:
                dims = shape if t in graph_inputs else (1, 64, *shape[2:])
            total += float(np.prod(dims)) * 4 * scale
        return total / 2**20

    chunks: list[tuple[list[tuple[ChannelGroup, list[float]]], list[str]]] = []
    current: list[tuple[ChannelGroup, list[float]]] = []
    tensors: set[str] = set()
    for job in jobs:
        need = _needed(work, analysis, job[0], shape)
        if current and megabytes(tensors | need) > memory_mb:
            chunks.append((current, sorted(tensors)))
            current, tensors = [], set()
        current.append(job)
        tensors |= need
    if current:
        chunks.append((current, sorted(tensors)))
    return chunks


def _cut_and_measure(work: onnx.ModelProto, plan: PruningPlan, group: ChannelGroup, seeds: set[str],
                     cached: Mapping[str, list[np.ndarray]], calib: Sequence[np.ndarray], outputs: list[str],
                     reference: list[list[np.ndarray]], ridge: float, max_rows: int) -> list[list[np.ndarray]]:
    """The model's outputs on each calibration tensor after cutting (and refitting) one group, computing only the
    graph downstream of the cut from the cached tensors."""
    cut = cut_channels(work, plan, check=False)
    cut, _ = reconstruct(work, cut, plan, calib, ridge=ridge, max_rows=max_rows, activations=cached)
    sub, boundary, outs = _suffix_model(cut, seeds, outputs)
    missing = [b for b in boundary if b not in cached]
    if missing:
        raise ModelError(f"internal: sensitivity cache misses {missing[:3]} for group {group.name}")
    if not outs:
        return [list(r) for r in reference]
    session = ort_session(sub)
    results = []
    for img, ref in enumerate(reference):
        feed = {b: cached[b][img] for b in boundary}
        values = dict(zip(outs, session.run(outs, feed), strict=True))
        results.append([values.get(o, r) for o, r in zip(outputs, ref, strict=True)])
    return results
