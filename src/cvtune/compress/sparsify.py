"""Unstructured sparsification: zero individual weights of Conv/ConvTranspose/Gemm/MatMul layers.

Methods: magnitude (smallest |w| per layer, or ranked globally across layers), random (a baseline: the article's
"random column" idea done without breaking the layer) and threshold (|w| < t). The tensors keep their shapes, so
dense kernels in OpenCV and ONNX Runtime run exactly as much arithmetic as before: zeros shrink the *compressed*
artifact (zip/deflate of the file), not the latency. The report says so, and bench/bench_compress.py measures it.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import ModelError, UsageError
from ..files import refuse_overwrite_of_input
from ..model import WEIGHTED_OPS, load_onnx, save_onnx_with_report
from .graph import GraphIndex, prepare

__all__ = ["METHODS", "SCOPES", "SparsifyConfig", "LayerSparsity", "SparsityReport", "prunable_layers", "sparsify",
           "sparsify_file", "deflate_size", "report_path"]

METHODS = ("magnitude", "random", "threshold")
SCOPES = ("layer", "global")
ZEROS_NOTE = ("zeros keep every tensor's shape: dense OpenCV/ORT kernels do the same work, so expect the compressed "
              "size to shrink and the latency not to (bench/bench_compress.py measures both)")


@dataclass(frozen=True)
class SparsifyConfig:
    """What to zero. `sparsity` for magnitude/random, `threshold` for threshold; `layer_sparsity` overrides per
    layer (e.g. an allocation from the sensitivity analysis; layers it does not name stay dense)."""

    method: str = "magnitude"
    sparsity: float | None = None
    threshold: float | None = None
    scope: str = "layer"  # magnitude only: rank per layer, or one global ranking over all layers
    skip_first: bool = True
    skip_last: bool = True
    skip: tuple[str, ...] = ()
    layer_sparsity: tuple[tuple[str, float], ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"unknown sparsification method '{self.method}'; choose one of: {', '.join(METHODS)}")
        if self.scope not in SCOPES:
            raise UsageError(f"unknown scope '{self.scope}'; choose one of: {', '.join(SCOPES)}")
        if self.method == "threshold":
            if self.threshold is None or not self.threshold >= 0:
                raise UsageError("the threshold method needs a threshold T >= 0 (weights with |w| < T become 0)")
        elif not self.layer_sparsity:
            if self.sparsity is None or not 0 < self.sparsity < 1:
                raise UsageError(f"the sparsity must be in (0, 1), e.g. 0.5 for half the weights (got {self.sparsity})")
        for name, value in self.layer_sparsity:
            if not 0 <= value < 1:
                raise UsageError(f"sparsity for layer '{name}' must be in [0, 1) (got {value})")


@dataclass(frozen=True)
class LayerSparsity:
    name: str
    op_type: str
    weight: str
    params: int
    target: float | None  # None: skipped
    sparsity: float  # achieved fraction of exact zeros
    skipped: str = ""


@dataclass(frozen=True)
class SparsityReport:
    """Per-layer and total sparsity, parameter count, file and compressed (deflate) sizes before and after."""

    method: str
    config: dict[str, Any]
    layers: tuple[LayerSparsity, ...]
    weight_params: int  # elements of Conv/ConvTranspose/Gemm/MatMul weights
    zeros: int
    file_bytes: int
    compressed_bytes: int
    original_file_bytes: int
    original_compressed_bytes: int
    original_zeros: int = 0
    note: str = ZEROS_NOTE
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        return self.zeros / self.weight_params if self.weight_params else 0.0

    @property
    def compressed_ratio(self) -> float:
        """Compressed size after / before (< 1 means the zipped model got smaller)."""
        return self.compressed_bytes / self.original_compressed_bytes if self.original_compressed_bytes else 1.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sparsity"] = self.sparsity
        data["compressed_ratio"] = self.compressed_ratio
        return data

    def table(self):
        """A rich Table: one row per layer, then the totals."""
        from rich.table import Table

        table = Table(title=f"{self.method} sparsification")
        for col, justify in (("layer", "left"), ("op", "left"), ("params", "right"), ("target", "right"),
                             ("sparsity", "right"), ("note", "left")):
            table.add_column(col, justify=justify)
        for layer in self.layers:
            target = "-" if layer.target is None else f"{layer.target:.2f}"
            table.add_row(layer.name, layer.op_type, f"{layer.params:,}", target, f"{layer.sparsity:.1%}",
                          layer.skipped)
        table.add_section()
        table.add_row("total", "", f"{self.weight_params:,}", "", f"{self.sparsity:.1%}",
                      f"file {_kib(self.original_file_bytes)} -> {_kib(self.file_bytes)}; deflate "
                      f"{_kib(self.original_compressed_bytes)} -> {_kib(self.compressed_bytes)} "
                      f"({self.compressed_ratio:.2f}x)")
        return table


def _kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB"


def deflate_size(data: bytes) -> int:
    """Size after deflate at zip's default level: what the model costs to ship zipped."""
    return len(zlib.compress(data, 6))


def report_path(output: str | os.PathLike[str]) -> Path:
    """Where the JSON report of a pruned model goes: OUT.onnx -> OUT.prune.json."""
    output = Path(output)
    return output.with_name(output.stem + ".prune.json")


def prunable_layers(proto: onnx.ModelProto) -> list[tuple[onnx.NodeProto, str]]:
    """(node, weight initializer name) of every Conv/ConvTranspose/Gemm/MatMul with a constant weight, in graph
    order. `proto` must be prepared (graph.prepare) so that Constant-node weights count."""
    index = GraphIndex(proto)
    layers = []
    seen: set[str] = set()
    for node in proto.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        candidates = [node.input[1]] if node.op_type != "MatMul" else [node.input[1], node.input[0]]
        weight = next((c for c in candidates if index.is_const(c)), None)
        if weight is None or weight in seen or index.array(weight).ndim < 2:
            continue
        seen.add(weight)
        layers.append((node, weight))
    return layers


def _targets(layers, config: SparsifyConfig) -> dict[str, tuple[float | None, str]]:
    """Layer name -> (target sparsity or None, why skipped)."""
    names = [node.name for node, _ in layers]
    by_weight = {w: node.name for node, w in layers}
    known = set(names) | set(by_weight)
    unknown = [s for s in config.skip if s not in known]
    unknown += [n for n, _ in config.layer_sparsity if n not in known]
    if unknown:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise UsageError(f"unknown layer '{unknown[0]}' (in the layers to skip or a sparsity allocation); "
                         f"layers are: {shown}")
    skip = {by_weight.get(s, s) for s in config.skip}
    overrides = {by_weight.get(n, n): v for n, v in config.layer_sparsity}
    out: dict[str, tuple[float | None, str]] = {}
    for i, name in enumerate(names):
        if name in skip:
            out[name] = (None, "skipped by name")
        elif config.skip_first and i == 0:
            out[name] = (None, "first layer (skip_first)")
        elif config.skip_last and i == len(names) - 1 and len(names) > 1:
            out[name] = (None, "last layer (skip_last)")
        elif config.layer_sparsity:
            value = overrides.get(name, 0.0)
            out[name] = (value, "") if value > 0 else (None, "dense in the allocation")
        else:
            out[name] = (config.threshold if config.method == "threshold" else config.sparsity, "")
    return out


def _zero_smallest(w: np.ndarray, fraction: float) -> np.ndarray:
    k = int(round(fraction * w.size))
    if k <= 0:
        return w
    flat = w.ravel().copy()
    flat[np.argpartition(np.abs(flat), k - 1)[:k]] = 0
    return flat.reshape(w.shape)


def sparsify(model: onnx.ModelProto | str | os.PathLike[str], config: SparsifyConfig
             ) -> tuple[onnx.ModelProto, SparsityReport]:
    """Zero weights as `config` says. Returns the new model (the argument is never modified) and its report."""
    original = model if isinstance(model, onnx.ModelProto) else load_onnx(model)
    original_bytes = Path(model).read_bytes() if not isinstance(model, onnx.ModelProto) else \
        original.SerializeToString()
    work = prepare(original)
    layers = prunable_layers(work)
    if not layers:
        raise ModelError("the model has no Conv/ConvTranspose/Gemm/MatMul layer with constant weights to sparsify")
    targets = _targets(layers, config)
    if all(t is None for t, _ in targets.values()):
        raise UsageError(f"every prunable layer ({len(layers)}) is skipped; skip fewer layers or let "
                         f"the first and last layers be pruned")
    index = GraphIndex(work)
    weights = {w: index.array(w) for _, w in layers}
    original_zeros = sum(int(np.count_nonzero(w == 0)) for w in weights.values())
    active = [(node, w) for node, w in layers if targets[node.name][0] is not None]
    if config.method == "magnitude" and config.scope == "global" and not config.layer_sparsity:
        magnitudes = np.concatenate([np.abs(weights[w]).ravel() for _, w in active])
        k = int(round(config.sparsity * magnitudes.size))
        mask = np.ones(magnitudes.size, dtype=bool)
        if k > 0:
            mask[np.argpartition(magnitudes, k - 1)[:k]] = False
        start = 0
        for _, w in active:
            size = weights[w].size
            weights[w] = np.where(mask[start:start + size].reshape(weights[w].shape), weights[w], 0).astype(
                weights[w].dtype)
            start += size
    else:
        rng = np.random.default_rng(config.seed)
        for node, w in active:
            target = targets[node.name][0]
            if config.method == "threshold":
                weights[w] = np.where(np.abs(weights[w]) < target, 0, weights[w]).astype(weights[w].dtype)
            elif config.method == "magnitude":
                weights[w] = _zero_smallest(weights[w], target)
            else:
                k = int(round(target * weights[w].size))
                flat = weights[w].ravel().copy()
                flat[rng.permutation(flat.size)[:k]] = 0
                weights[w] = flat.reshape(weights[w].shape)
    for _, w in active:
        index.set_array(w, weights[w])
    try:
        onnx.checker.check_model(work)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - editing values cannot break structure
        raise ModelError(f"sparsified model fails onnx.checker: {str(exc).splitlines()[0]}") from None
    data = work.SerializeToString()
    report_layers = tuple(
        LayerSparsity(node.name, node.op_type, w, int(weights[w].size), targets[node.name][0],
                      float(np.count_nonzero(weights[w] == 0) / weights[w].size), targets[node.name][1])
        for node, w in layers)
    report = SparsityReport(
        method=config.method, config={k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        layers=report_layers, weight_params=int(sum(w.size for w in weights.values())),
        zeros=int(sum(np.count_nonzero(w == 0) for w in weights.values())), file_bytes=len(data),
        compressed_bytes=deflate_size(data), original_file_bytes=len(original_bytes),
        original_compressed_bytes=deflate_size(original_bytes), original_zeros=original_zeros)
    return work, report


def sparsify_file(model_path: str | os.PathLike[str], output: str | os.PathLike[str] | None, config: SparsifyConfig,
                  ) -> SparsityReport:
    """Sparsify a model file; with `output`, write the model and OUT.prune.json atomically (None: dry run)."""
    if output is not None:
        refuse_overwrite_of_input(output, model_path)
        refuse_overwrite_of_input(report_path(output), model_path)
    proto, report = sparsify(model_path, config)
    if output is not None:
        written: list[SparsityReport] = []

        def sidecar(data: bytes) -> dict:
            written.append(_with_written_size(report, data))
            return {"input": str(model_path), "output": str(output), **written[0].to_dict()}

        save_onnx_with_report(proto, output, report_path(output), sidecar, schema="prune")  # one commit
        report = written[0]
    return report


def _with_written_size(report: SparsityReport, data: bytes) -> SparsityReport:
    return SparsityReport(**{**{f: getattr(report, f) for f in report.__dataclass_fields__},
                             "file_bytes": len(data), "compressed_bytes": deflate_size(data)})
