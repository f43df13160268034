"""Reconstruction after a channel cut: refit each consumer layer by least squares on calibration activations.

Channel-pruning / ThiNet style, without training: for every conv whose input channels were cut, gather its input
patches (im2col at sampled output positions) from the *pruned* model and its outputs at the same positions from
the *original* model, then solve a ridge-regularized least-squares problem for the new weights and bias. Layers
are refit in graph order (in waves of layers that do not feed each other), so each fit sees the already refit
layers upstream and errors do not pile up. A held-out fifth of the rows checks each fit; a fit that does not
beat the plain cut on those rows is discarded. Layers with too few rows for the full fit (e.g. squeeze-excite
convs after a global pool) get a bias-only correction (the mean output shift of the cut).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx

from ..errors import ModelError
from .channels import tensor_keeps
from .graph import GraphIndex, node_attr, prepare, run_tensors
from .plan import PruningPlan

__all__ = ["LayerFit", "ReconstructionReport", "reconstruct", "refit_tensors"]


@dataclass(frozen=True)
class LayerFit:
    """One consumer layer: relative output error (||pred - target|| / ||target||, held-out rows) of the plain
    cut and after the refit, and how it was refit."""

    node: str
    op_type: str
    rows: int
    columns: int
    error_cut: float
    error_fit: float
    mode: str  # least squares | bias only | kept cut | skipped: why


@dataclass(frozen=True)
class ReconstructionReport:
    layers: tuple[LayerFit, ...]
    images: int
    ridge: float
    waves: int

    @property
    def mean_error_cut(self) -> float:
        fitted = [f.error_cut for f in self.layers if not f.mode.startswith("skipped")]
        return float(np.mean(fitted)) if fitted else 0.0

    @property
    def mean_error_fit(self) -> float:
        fitted = [f.error_fit for f in self.layers if not f.mode.startswith("skipped")]
        return float(np.mean(fitted)) if fitted else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "ridge": self.ridge, "waves": self.waves,
                "mean_error_cut": self.mean_error_cut, "mean_error_fit": self.mean_error_fit,
                "layers": [asdict(f) for f in self.layers]}

    def table(self):
        from rich.table import Table

        table = Table(title=f"reconstruction ({self.images} calibration images, ridge {self.ridge:g})")
        for col, justify in (("layer", "left"), ("rows", "right"), ("cols", "right"), ("error cut", "right"),
                             ("error refit", "right"), ("mode", "left")):
            table.add_column(col, justify=justify)
        for f in self.layers:
            table.add_row(f.node, str(f.rows), str(f.columns), f"{f.error_cut:.4f}", f"{f.error_fit:.4f}", f.mode)
        table.add_section()
        table.add_row("mean", "", "", f"{self.mean_error_cut:.4f}", f"{self.mean_error_fit:.4f}", "")
        return table


@dataclass
class _Target:
    node: str
    op_type: str
    x: str  # input tensor name
    y: str  # output tensor name
    keep_out: np.ndarray | None
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilations: tuple[int, int]
    positions: list[np.ndarray]
    a_rows: list[np.ndarray]
    y_rows: list[np.ndarray]
    skip: str = ""


def _conv_geometry(node: onnx.NodeProto, w: np.ndarray) -> tuple[tuple, tuple, tuple, tuple, str]:
    kernel = tuple(node_attr(node, "kernel_shape", list(w.shape[2:])))
    strides = tuple(node_attr(node, "strides", [1, 1]))
    pads = tuple(node_attr(node, "pads", [0, 0, 0, 0]))
    dilations = tuple(node_attr(node, "dilations", [1, 1]))
    auto_pad = node_attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    why = ""
    if w.ndim != 4:
        why = "only 2-D convolutions are refit"
    elif auto_pad not in ("NOTSET", "VALID"):
        why = f"auto_pad={auto_pad} is not refit"
    elif node.op_type == "ConvTranspose":
        if (list(kernel) != list(strides) or any(pads) or any(d != 1 for d in dilations)
                or any(node_attr(node, "output_padding", [0, 0])) or node_attr(node, "output_shape")):
            why = "only non-overlapping ConvTranspose (kernel == stride, no padding) is refit"
    return kernel, strides, pads, dilations, why


def _patches(x: np.ndarray, t: _Target, positions: np.ndarray, out_w: int) -> np.ndarray:
    """im2col rows of one image (C, H, W) at the given flat output positions -> (P, C*kh*kw)."""
    (kh, kw), (sh, sw), (dh, dw) = t.kernel, t.strides, t.dilations
    top, left, bottom, right = t.pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right)))
    oy, ox = positions // out_w, positions % out_w
    iy = oy[:, None] * sh + np.arange(kh) * dh
    ix = ox[:, None] * sw + np.arange(kw) * dw
    patches = xp[:, iy[:, :, None], ix[:, None, :]]  # (C, P, kh, kw)
    return patches.transpose(1, 0, 2, 3).reshape(len(positions), -1)


def _rel_error(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.linalg.norm(pred - target) / (np.linalg.norm(target) + 1e-12))


def _plan_targets(index: GraphIndex, plan: PruningPlan, order: dict[str, int]) -> list[_Target]:
    """The consumer layers whose input channels the plan cuts, in graph order."""
    keeps, full = tensor_keeps(plan)
    names = {e.node for g in plan.groups for e in g.edits if e.role == "consumer"}
    names |= {e.node for c in plan.composites for e in c.edits if e.role == "consumer"}
    targets: list[_Target] = []
    for name in sorted(names, key=lambda n: order.get(n, -1)):
        node = index.nodes.get(name)
        if node is None:
            continue
        x = node.input[0]
        if x not in keeps or len(keeps[x]) == full[x]:
            continue  # input channels untouched: the cut is exact for this layer
        w = index.array(node.input[1])
        kernel, strides, pads, dilations, why = _conv_geometry(node, w)
        y = node.output[0]
        keep_out = keeps[y] if y in keeps and len(keeps[y]) < full[y] else None
        targets.append(_Target(name, node.op_type, x, y, keep_out, kernel, strides, pads, dilations, [], [], [],
                               why))
    return targets


def _add_target_rows(t: _Target, y: np.ndarray, rng: np.random.Generator, per_image: int) -> None:
    """Sample output positions of one image's original output `y` (C, H, W) and keep the target rows there."""
    if t.op_type == "ConvTranspose":
        s = t.strides
        grid_h, grid_w = y.shape[1] // s[0], y.shape[2] // s[1]
    else:
        grid_h, grid_w = y.shape[1], y.shape[2]
    count = min(grid_h * grid_w, per_image)
    pos = np.sort(rng.choice(grid_h * grid_w, size=count, replace=False))
    t.positions.append(pos)
    if t.keep_out is not None:
        y = y[t.keep_out]
    if t.op_type == "ConvTranspose":
        (kh, kw), (sh, sw) = t.kernel, t.strides
        blocks = y.reshape(y.shape[0], grid_h, sh, grid_w, sw)[:, :, :kh, :, :kw]
        blocks = blocks.transpose(1, 3, 0, 2, 4).reshape(grid_h * grid_w, -1)
        t.y_rows.append(blocks[pos].astype(np.float64))
    else:
        t.y_rows.append(y.reshape(y.shape[0], -1)[:, pos].T.astype(np.float64))


def _add_input_rows(t: _Target, x: np.ndarray, img: int) -> None:
    """The layer's input rows (im2col patches, or pixels for ConvTranspose) of one image `x` (C, H, W)."""
    pos = t.positions[img]
    if t.op_type == "ConvTranspose":
        t.a_rows.append(x.reshape(x.shape[0], -1)[:, pos].T.astype(np.float64))
    else:
        out_w = _out_size(x.shape[2], t.kernel[1], t.strides[1], t.pads[1] + t.pads[3], t.dilations[1])
        t.a_rows.append(_patches(x, t, pos, out_w).astype(np.float64))


def reconstruct(original: onnx.ModelProto, pruned: onnx.ModelProto, plan: PruningPlan,
                batches: Sequence[np.ndarray], *, ridge: float = 1e-2, max_rows: int = 8192, seed: int = 0,
                on_wave: Callable[[int, int], None] | None = None,
                activations: Mapping[str, Sequence[np.ndarray]] | None = None, ridge_search: bool = False
                ) -> tuple[onnx.ModelProto, ReconstructionReport]:
    """Refit the consumers of cut channels in `pruned` (made by cut_channels(original, plan)) so their outputs
    match the original's on `batches` (each (1, C, H, W) float32). Returns a new model and per-layer errors.

    `activations` (tensor name -> the original model's value per batch, full channels) saves model runs: targets
    come from it, the first wave's inputs are its kept channels (exact: nothing upstream changed), and later waves
    run only the graph between the tensors the cut leaves unchanged and their inputs. Sensitivity analysis refits
    hundreds of single-group cuts from one set (see refit_tensors for what it must hold). `ridge_search` tries
    ridge/10, ridge and ridge*10 per layer and keeps the one with the smallest held-out error."""
    reference = prepare(original)
    work = onnx.ModelProto()
    work.CopyFrom(pruned)
    index = GraphIndex(work)
    order = {n.name: i for i, n in enumerate(work.graph.node)}
    targets = _plan_targets(index, plan, order)
    fits: list[LayerFit] = []
    active = [t for t in targets if not t.skip]
    n_images = len(batches)
    per_image = max(1, math.ceil(max_rows / max(n_images, 1)))
    rng = np.random.default_rng(seed)
    activations = activations or {}
    # Targets from the original model, at sampled positions.
    missing = [t.y for t in active if t.y not in activations]
    runs = run_tensors(reference, missing, batches) if missing else iter(dict() for _ in batches)
    for img, values in enumerate(runs):
        for t in active:
            y = activations[t.y][img] if t.y in activations else values[t.y]
            _add_target_rows(t, y[0], rng, per_image)
    waves = _waves(work, active)
    keeps, _ = tensor_keeps(plan)
    feeds = _unchanged(work, plan, activations) if activations else {}
    for w_i, wave in enumerate(waves):
        if on_wave:
            on_wave(w_i, len(waves))
        if w_i == 0 and all(t.x in activations for t in wave):
            for img in range(n_images):
                for t in wave:
                    _add_input_rows(t, activations[t.x][img][0][keeps[t.x]], img)
        else:
            values_iter = (_run_from(work, feeds, [t.x for t in wave]) if feeds
                           else run_tensors(work, [t.x for t in wave], batches))
            for img, values in enumerate(values_iter):
                for t in wave:
                    _add_input_rows(t, values[t.x][0], img)
        for t in wave:
            fits.append(_fit(index, t, ridge, (ridge / 10, ridge, ridge * 10) if ridge_search else None))
            t.a_rows, t.y_rows = [], []
    return _finish(work, targets, fits, order, n_images, ridge, len(waves))


def _changed_tensors(work: onnx.ModelProto, plan: PruningPlan) -> set[str]:
    """Tensors of `work` at or downstream of a node the plan edits."""
    keeps, full = tensor_keeps(plan)
    edited = {e.node for g in [*plan.groups, *plan.composites] for e in g.edits
              if e.tensor in keeps and len(keeps[e.tensor]) < full[e.tensor]}
    changed: set[str] = set()
    for node in work.graph.node:
        if node.name in edited or any(i in changed for i in node.input if i):
            changed.update(o for o in node.output if o)
    return changed


def _unchanged(work: onnx.ModelProto, plan: PruningPlan, activations: Mapping[str, Sequence[np.ndarray]]
               ) -> dict[str, Sequence[np.ndarray]]:
    changed = _changed_tensors(work, plan)
    return {t: v for t, v in activations.items() if t not in changed}


def _run_from(work: onnx.ModelProto, feeds: Mapping[str, Sequence[np.ndarray]], outputs: list[str]):
    """Yield {output: value} per image, computing `outputs` from the `feeds` tensors (graph cut there)."""
    from .graph import drop_unused_initializers, ort_session, tensor_types, value_info

    producer = {o: n for n in work.graph.node for o in n.output if o}
    inits = {t.name for t in work.graph.initializer}
    keep: set[int] = set()
    inputs: list[str] = []
    stack, seen = list(outputs), set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in feeds:
            inputs.append(name)
            continue
        node = producer.get(name)
        if node is None:
            if name not in inits:
                inputs.append(name)  # the model input, when no cached tensor covers it
            continue
        if id(node) not in keep:
            keep.add(id(node))
            stack.extend(i for i in node.input if i)
    missing = [i for i in inputs if i not in feeds]
    if missing:
        raise ModelError(f"internal: reconstruction from cached tensors misses {missing[:3]}")
    sub = onnx.ModelProto()
    sub.CopyFrom(work)
    nodes = [n for n in work.graph.node if id(n) in keep]
    del sub.graph.node[:]
    sub.graph.node.extend(nodes)
    del sub.graph.input[:]
    types = tensor_types(work)
    sub.graph.input.extend(value_info(i, types) for i in inputs)
    del sub.graph.output[:]
    sub.graph.output.extend(value_info(o, types) for o in outputs)
    del sub.graph.value_info[:]
    drop_unused_initializers(sub)
    session = ort_session(sub)
    n_images = len(next(iter(feeds.values()))) if feeds else 0
    for img in range(n_images):
        values = session.run(outputs, {i: feeds[i][img] for i in inputs})
        yield dict(zip(outputs, values, strict=True))


def _finish(work: onnx.ModelProto, targets: list[_Target], fits: list[LayerFit], order: dict[str, int],
            n_images: int, ridge: float, waves: int) -> tuple[onnx.ModelProto, ReconstructionReport]:
    fits += [LayerFit(t.node, t.op_type, 0, 0, float("nan"), float("nan"), f"skipped: {t.skip}")
             for t in targets if t.skip]
    fits.sort(key=lambda f: order.get(f.node, -1))
    try:
        onnx.checker.check_model(work)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - refits change values, not structure
        raise ModelError(f"the reconstructed model fails onnx.checker: {str(exc).splitlines()[0][:300]}") from None
    return work, ReconstructionReport(tuple(fits), n_images, ridge, waves)


def refit_tensors(pruned: onnx.ModelProto, plan: PruningPlan) -> tuple[list[str], list[str]]:
    """The original tensors `reconstruct(..., activations=...)` reads instead of running the model: the inputs of
    the first wave of refit layers and the outputs of all of them."""
    index = GraphIndex(pruned)
    order = {n.name: i for i, n in enumerate(pruned.graph.node)}
    active = [t for t in _plan_targets(index, plan, order) if not t.skip]
    waves = _waves(pruned, active)
    return ([t.x for t in waves[0]] if waves else []), [t.y for t in active]


def _out_size(size: int, kernel: int, stride: int, pads: int, dilation: int) -> int:
    return (size + pads - dilation * (kernel - 1) - 1) // stride + 1


def _waves(proto: onnx.ModelProto, targets: list[_Target]) -> list[list[_Target]]:
    """Targets in graph order, grouped so that no target in a wave feeds another target of the same wave."""
    producer = {o: n for n in proto.graph.node for o in n.output}
    ancestors: dict[str, set[str]] = {}
    for t in targets:
        seen: set[str] = set()
        stack = [t.x]
        while stack:
            node = producer.get(stack.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            stack.extend(i for i in node.input if i)
        ancestors[t.node] = seen
    remaining = list(targets)
    waves = []
    while remaining:
        pending = {t.node for t in remaining}
        wave = [t for t in remaining if not (ancestors[t.node] & pending)]
        if not wave:  # cannot happen in a DAG; refit one at a time rather than loop
            wave = remaining[:1]
        waves.append(wave)
        done = {t.node for t in wave}
        remaining = [t for t in remaining if t.node not in done]
    return waves


def _fit(index: GraphIndex, t: _Target, ridge: float, ridges: tuple[float, ...] | None = None) -> LayerFit:
    """Refit one layer by ridge least squares on its training rows; `ridges` (default: just `ridge`) are tried
    and the one with the smallest error on the held-out rows wins."""
    ridges = ridges or (ridge,)
    node = index.nodes[t.node]
    a = np.concatenate(t.a_rows)
    y = np.concatenate(t.y_rows)
    w = index.array(node.input[1]).astype(np.float64)
    has_bias = len(node.input) > 2 and node.input[2] != ""
    if t.op_type == "ConvTranspose":
        w_flat = w.reshape(w.shape[0], -1)  # (C_in, C_out*kh*kw): rows @ w_flat = output block
        bias = index.array(node.input[2]).astype(np.float64) if has_bias else np.zeros(w.shape[1])
        y = y - np.repeat(bias, t.kernel[0] * t.kernel[1])[None, :]
        bias_cols = None
    else:
        w_flat = w.reshape(w.shape[0], -1).T  # (C_in*kh*kw, C_out)
        bias = index.array(node.input[2]).astype(np.float64) if has_bias else np.zeros(w.shape[0])
        y = y - bias[None, :]
        bias_cols = bias
    rows, cols = a.shape
    val = np.arange(rows) % 5 == 4
    train = ~val if val.any() else np.ones(rows, bool)
    if not val.any():
        val = train
    pred_cut = a @ w_flat
    error_cut = _rel_error(pred_cut[val], y[val])
    fit_bias = bias_cols is not None
    n_params = cols + (1 if fit_bias else 0)
    if train.sum() >= 2 * n_params:
        a_train = np.hstack([a[train], np.ones((train.sum(), 1))]) if fit_bias else a[train]
        current = np.vstack([w_flat, np.zeros((1, w_flat.shape[1]))]) if fit_bias else w_flat
        gram = a_train.T @ a_train
        rhs = a_train.T @ y[train]
        a_val = np.hstack([a[val], np.ones((val.sum(), 1))]) if fit_bias else a[val]
        best = None
        for r in ridges:  # the ridge with the smallest held-out error
            lam = r * float(np.trace(gram)) / gram.shape[0] + 1e-12
            sol = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), rhs + lam * current)
            err = _rel_error(a_val @ sol, y[val])
            if best is None or err < best[0]:
                best = (err, r, sol)
        _, chosen, solution = best
        new_w, shift = (solution[:-1], solution[-1]) if fit_bias else (solution, None)
        mode = "least squares" if len(ridges) == 1 else f"least squares (ridge {chosen:g})"
    elif fit_bias:
        new_w, shift = w_flat, (y[train] - pred_cut[train]).mean(axis=0)
        mode = "bias only"
    else:
        return LayerFit(t.node, t.op_type, rows, cols, error_cut, error_cut, "skipped: too few rows")
    pred = a[val] @ new_w + (shift if shift is not None else 0)
    error_fit = _rel_error(pred, y[val])
    if not error_fit < error_cut:
        return LayerFit(t.node, t.op_type, rows, cols, error_cut, error_cut, "kept cut")
    dtype = index.array(node.input[1]).dtype
    if t.op_type == "ConvTranspose":
        index.set_array(node.input[1], new_w.reshape(w.shape).astype(dtype))
    else:
        index.set_array(node.input[1], new_w.T.reshape(w.shape).astype(dtype))
        new_bias = (bias + shift).astype(dtype)
        if has_bias:
            index.set_array(node.input[2], new_bias)
        else:
            while len(node.input) < 2:
                node.input.append("")
            node.input.append(index.add_array(f"{t.node}.refit_bias", new_bias))
    return LayerFit(t.node, t.op_type, rows, cols, error_cut, error_fit, mode)
