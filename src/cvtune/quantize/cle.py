"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization"; AIMET's CLE) on an ONNX graph.

Per-tensor int8 gives every output channel of a weight the same step size, so one channel with a wide range crushes
the others to a few levels. For two consecutive convolutions joined by a positively homogeneous op (nothing, Relu,
LeakyRelu, PRelu, MaxPool: f(s*x) = s*f(x) for s > 0), dividing channel i of the first by s_i and multiplying the
matching input channel of the second by s_i computes exactly the same function. Choosing s_i = sqrt(r1_i / r2_i)
(r = max |w| of that channel) gives both the same range sqrt(r1_i * r2_i), which evens out the channels of each
weight. Pairs sharing a layer (conv -> depthwise -> conv) are equalized in rounds until the scales settle.
BatchNormalization after a conv is folded into it first (its per-channel scale is what usually spreads the ranges).

    from cvtune.quantize.cle import equalize
    equalized, report = equalize(model)          # a new ModelProto; weights must be initializers
    print(report.summary())
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["CleReport", "EqualizedPair", "channel_spread", "equalize", "fold_batchnorm", "find_pairs"]

# Ops between two convs through which a positive per-channel scale passes unchanged: f(s * x) = s * f(x).
HOMOGENEOUS = frozenset({"Relu", "LeakyRelu", "PRelu", "MaxPool", "Identity"})
MIN_RANGE = 1e-8  # channels with (near) all-zero weights are left alone
DEAD = 1e-4  # for spreads: a channel below this fraction of the widest quantizes to zero anyway (a dead channel)


@dataclass(frozen=True)
class EqualizedPair:
    """Two convs equalized against each other: `first`'s output channels feed `second`'s input channels through
    `through` (the homogeneous ops between them). Spreads are max/min of the per-channel weight ranges."""

    first: str
    second: str
    through: tuple[str, ...]
    channels: int
    spread_before: float
    spread_after: float

    def to_dict(self) -> dict[str, Any]:
        return {"first": self.first, "second": self.second, "through": list(self.through),
                "channels": self.channels, "spread_before": round(self.spread_before, 3),
                "spread_after": round(self.spread_after, 3)}


@dataclass(frozen=True)
class CleReport:
    folded_batchnorm: tuple[str, ...]
    pairs: tuple[EqualizedPair, ...]
    rounds: int

    def summary(self) -> str:
        if not self.pairs:
            return (f"cross-layer equalization: no conv pair joined by a homogeneous op (Relu, PRelu, MaxPool or "
                    f"nothing) to equalize; {len(self.folded_batchnorm)} BatchNorm folded")
        before = float(np.median([p.spread_before for p in self.pairs]))
        after = float(np.median([p.spread_after for p in self.pairs]))
        return (f"cross-layer equalization: {len(self.pairs)} conv pair(s) in {self.rounds} round(s), median "
                f"per-channel weight range spread {before:.1f}x -> {after:.1f}x; "
                f"{len(self.folded_batchnorm)} BatchNorm folded")

    def to_dict(self) -> dict[str, Any]:
        return {"folded_batchnorm": list(self.folded_batchnorm), "rounds": self.rounds,
                "pairs": [p.to_dict() for p in self.pairs], "summary": self.summary()}


class _Graph:
    """Initializers as numpy arrays plus who reads what; writes changed arrays back on `commit`."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.inits = {t.name: t for t in self.graph.initializer}
        self.arrays: dict[str, np.ndarray] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.outputs = {o.name for o in self.graph.output}
        self.dirty: set[str] = set()

    def array(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            self.arrays[name] = numpy_helper.to_array(self.inits[name]).astype(np.float64)
        return self.arrays[name]

    def private_weight(self, name: str) -> bool:
        """An initializer read by exactly one node input (rescaling it changes nothing else)."""
        return name in self.inits and len(self.consumers.get(name, ())) == 1 and \
            self.inits[name].data_type == onnx.TensorProto.FLOAT

    def only_consumer(self, tensor: str) -> onnx.NodeProto | None:
        readers = self.consumers.get(tensor, [])
        if len(readers) != 1 or tensor in self.outputs:
            return None
        return readers[0]

    def set(self, name: str, value: np.ndarray) -> None:
        self.arrays[name] = value
        self.dirty.add(name)

    def commit(self) -> None:
        for name in self.dirty:
            self.inits[name].CopyFrom(numpy_helper.from_array(self.arrays[name].astype(np.float32), name))
        self.dirty.clear()


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _conv_with_weights(g: _Graph, node: onnx.NodeProto | None) -> bool:
    return (node is not None and node.op_type == "Conv" and len(node.input) > 1 and g.private_weight(node.input[1])
            and (len(node.input) < 3 or not node.input[2] or g.private_weight(node.input[2])))


def fold_batchnorm(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Fold every inference-mode BatchNormalization that is the only reader of a Conv's output into that Conv
    (w' = w * gamma / sigma, b' = (b - mean) * gamma / sigma + beta), in place. Returns (model, folded BN names)."""
    g = _Graph(model)
    producer = {o: n for n in g.graph.node for o in n.output}
    folded: list[str] = []
    drop: set[int] = set()
    for bn in list(g.graph.node):
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 or len(bn.input) != 5:
            continue
        conv = producer.get(bn.input[0])
        if not _conv_with_weights(g, conv) or g.only_consumer(bn.input[0]) is not bn:
            continue
        if not all(name in g.inits for name in bn.input[1:]):
            continue
        gamma, beta, mean, var = (g.array(n) for n in bn.input[1:])
        factor = gamma / np.sqrt(var + float(_attr(bn, "epsilon", 1e-5)))
        weight = g.array(conv.input[1])
        g.set(conv.input[1], weight * factor.reshape(-1, *([1] * (weight.ndim - 1))))
        bias = g.array(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(weight.shape[0])
        new_bias = (bias - mean) * factor + beta
        if len(conv.input) > 2 and conv.input[2]:
            g.set(conv.input[2], new_bias)
        else:
            name = f"{conv.name or conv.output[0]}_folded_bias"
            g.graph.initializer.append(numpy_helper.from_array(new_bias.astype(np.float32), name))
            g.inits[name] = g.graph.initializer[-1]
            del conv.input[2:]
            conv.input.append(name)
        conv.output[0] = bn.output[0]
        drop.add(id(bn))
        folded.append(bn.name or bn.output[0])
    g.commit()
    keep = [n for n in g.graph.node if id(n) not in drop]
    del g.graph.node[:]
    g.graph.node.extend(keep)
    used = {i for n in keep for i in n.input}
    unused = [t for t in g.graph.initializer if t.name not in used and t.name not in g.outputs]
    for t in unused:
        g.graph.initializer.remove(t)
    return model, folded


def find_pairs(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, tuple[onnx.NodeProto, ...], onnx.NodeProto]]:
    """(first conv, homogeneous ops between, second conv) for every chain conv -> [Relu|PRelu|...]* -> conv in which
    each intermediate tensor has exactly one reader and both convs own their weights."""
    g = _Graph(model)
    pairs = []
    for first in g.graph.node:
        if not _conv_with_weights(g, first) or len(first.output) != 1:
            continue
        through: list[onnx.NodeProto] = []
        tensor = first.output[0]
        node = g.only_consumer(tensor)
        while node is not None and node.op_type in HOMOGENEOUS and len(node.output) == 1 and node.input[0] == tensor:
            if node.op_type == "PRelu" and node.input[1] not in g.inits:
                break
            through.append(node)
            tensor = node.output[0]
            node = g.only_consumer(tensor)
        if _conv_with_weights(g, node) and node.input[0] == tensor:
            pairs.append((first, tuple(through), node))
    return pairs


def _in_channel_rows(weight: np.ndarray, group: int) -> tuple[int, int]:
    """(input channels per group, output channels per group) of a conv weight (O, I/group, k...)."""
    return weight.shape[1], weight.shape[0] // max(group, 1)


def _second_ranges(weight: np.ndarray, group: int) -> np.ndarray:
    """max |w| over everything that reads input channel i, for every input channel of a (grouped) conv."""
    per_group, out_per_group = _in_channel_rows(weight, group)
    channels = per_group * group
    ranges = np.zeros(channels)
    for i in range(channels):
        gi, j = divmod(i, per_group)
        ranges[i] = np.abs(weight[gi * out_per_group:(gi + 1) * out_per_group, j]).max()
    return ranges


def _scale_second(weight: np.ndarray, group: int, scale: np.ndarray) -> np.ndarray:
    per_group, out_per_group = _in_channel_rows(weight, group)
    out = weight.copy()
    for i, s in enumerate(scale):
        gi, j = divmod(i, per_group)
        out[gi * out_per_group:(gi + 1) * out_per_group, j] *= s
    return out


def _first_ranges(weight: np.ndarray) -> np.ndarray:
    return np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1)


def channel_spread(ranges: np.ndarray) -> float:
    """max / min of per-channel weight ranges, dead channels (below DEAD x the widest) left out: 1.0 is even."""
    live = ranges[ranges > max(MIN_RANGE, DEAD * float(ranges.max(initial=0.0)))]
    return float(live.max() / live.min()) if live.size else 1.0


def _pair_spread(w1: np.ndarray, w2: np.ndarray, group: int) -> float:
    return max(channel_spread(_first_ranges(w1)), channel_spread(_second_ranges(w2, group)))


def equalize(model: onnx.ModelProto, *, max_rounds: int = 20, tolerance: float = 1e-3
             ) -> tuple[onnx.ModelProto, CleReport]:
    """A copy of `model` with BatchNorms folded into their convs and every conv pair of `find_pairs` equalized
    (rounds until no scale moves by more than `tolerance`, at most `max_rounds`). The float outputs are unchanged
    up to float32 rounding. Weights must be initializers (cvtune.model.constants_to_initializers)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out, folded = fold_batchnorm(out)
    pairs = find_pairs(out)
    g = _Graph(out)
    before: list[float] = []
    for first, _, second in pairs:
        w1, w2 = g.array(first.input[1]), g.array(second.input[1])
        before.append(_pair_spread(w1, w2, int(_attr(second, "group", 1))))
    rounds = 0
    for rounds in range(1, max_rounds + 1):  # noqa: B007 - the count is reported
        moved = 0.0
        for first, _, second in pairs:  # the ops between pass a positive per-channel scale through unchanged
            w1, w2 = g.array(first.input[1]), g.array(second.input[1])
            group = int(_attr(second, "group", 1))
            r1, r2 = _first_ranges(w1), _second_ranges(w2, group)
            if r1.shape != r2.shape:  # channel counts disagree (a reshape we did not see): leave the pair alone
                continue
            live = (r1 > MIN_RANGE) & (r2 > MIN_RANGE)
            scale = np.ones_like(r1)
            scale[live] = np.sqrt(r1[live] / r2[live])
            moved = max(moved, float(np.abs(np.log(scale)).max()) if scale.size else 0.0)
            g.set(first.input[1], w1 / scale.reshape(-1, *([1] * (w1.ndim - 1))))
            if len(first.input) > 2 and first.input[2]:
                g.set(first.input[2], g.array(first.input[2]) / scale)
            g.set(second.input[1], _scale_second(w2, group, scale))
        if moved < math.log1p(tolerance):
            break
    report_pairs = []
    for (first, through, second), spread0 in zip(pairs, before, strict=True):
        w1, w2 = g.array(first.input[1]), g.array(second.input[1])
        after = _pair_spread(w1, w2, int(_attr(second, "group", 1)))
        report_pairs.append(EqualizedPair(first.name or first.output[0], second.name or second.output[0],
                                          tuple(n.op_type for n in through), int(w1.shape[0]), spread0, after))
    g.commit()
    return out, CleReport(tuple(folded), tuple(report_pairs), rounds if pairs else 0)
