"""Prepare a model for every engine: make dynamic dims static for one input shape, simplify with onnxslim, and
prove the result computes the same thing as the original (max abs diff and cosine on random and real inputs).

The OpenCV classic engine rejects dynamic Shape ops (PP-OCR cls/rec) until this is done. A .tflite (or .pb) model is
converted to ONNX first (cvtune.convert, checked against OpenCV's run of the original), then prepared the same way.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from .errors import ModelError, UsageError
from .files import atomic_path, refuse_overwrite_of_input
from .model import Model, load_onnx


@dataclass(frozen=True)
class Equivalence:
    """How close two models' outputs are on the same inputs (worst over inputs and outputs)."""

    max_abs_diff: float
    cosine: float
    inputs_checked: int

    @property
    def equivalent(self) -> bool:
        return self.cosine > 0.9999 and self.max_abs_diff < 1e-3

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "cosine": self.cosine, "inputs_checked": self.inputs_checked,
                "equivalent": self.equivalent}


def make_static(proto: onnx.ModelProto, input_shape: tuple[int, ...]) -> onnx.ModelProto:
    """A copy whose first graph input has exactly `input_shape` (other shapes re-inferred by onnxslim)."""
    inits = {t.name for t in proto.graph.initializer}
    first = next(v for v in proto.graph.input if v.name not in inits)
    dims = first.type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise UsageError(f"input shape {'x'.join(map(str, input_shape))} has {len(input_shape)} dims but input "
                         f"'{first.name}' has {len(dims)}")
    for i, (dim, size) in enumerate(zip(dims, input_shape, strict=True)):
        if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != size:
            raise UsageError(f"input '{first.name}' dim {i} is fixed at {dim.dim_value}, cannot set it to {size}")
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    target = next(v for v in out.graph.input if v.name == first.name)
    for dim, size in zip(target.type.tensor_type.shape.dim, input_shape, strict=True):
        dim.Clear()
        dim.dim_value = int(size)
    return out


def simplify(proto: onnx.ModelProto, input_shape: tuple[int, ...] | None = None) -> onnx.ModelProto:
    """onnxslim: constant folding, shape-op elimination and fusions; with a static input shape, Shape ops vanish."""
    import onnxslim

    kwargs = {}
    if input_shape is not None:
        inits = {t.name for t in proto.graph.initializer}
        name = next(v.name for v in proto.graph.input if v.name not in inits)
        kwargs["input_shapes"] = [f"{name}:{','.join(map(str, input_shape))}"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return onnxslim.slim(proto, **kwargs)
    except Exception as exc:  # noqa: BLE001 - onnxslim raises many types
        raise ModelError(f"simplification failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None


def compare_outputs(reference: str | Path, candidate: str | Path, input_shape: tuple[int, ...], *,
                    real_inputs: list[np.ndarray] | None = None, n_random: int = 2, seed: int = 0) -> Equivalence:
    """Run both models in ONNX Runtime on random inputs (and real ones when given) and compare every output."""
    from .runtimes import make_runtime

    runtime = make_runtime("ort", threads=1)
    ref, cand = runtime.open(reference), runtime.open(candidate)
    rng = np.random.default_rng(seed)
    inputs = [rng.random(input_shape, dtype=np.float32) * 2 - 1 for _ in range(n_random)] + list(real_inputs or [])
    worst_diff, worst_cos = 0.0, 1.0
    for x in inputs:
        for a, b in zip(ref.run(x), cand.run(x), strict=True):
            a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
            if a.shape != b.shape:
                return Equivalence(float("inf"), 0.0, len(inputs))
            worst_diff = max(worst_diff, float(np.abs(a - b).max(initial=0.0)))
            denom = np.linalg.norm(a) * np.linalg.norm(b)
            worst_cos = min(worst_cos, float(a @ b / denom) if denom > 0 else float(np.allclose(a, b)))
    return Equivalence(worst_diff, worst_cos, len(inputs))


@dataclass(frozen=True)
class PrepareResult:
    output: Path
    input_shape: tuple[int, ...]
    nodes_before: int
    nodes_after: int
    equivalence: Equivalence
    conversion: dict | None = None  # ConversionResult.to_dict() when the input was not ONNX

    def to_dict(self) -> dict:
        return {"output": str(self.output), "input_shape": list(self.input_shape), "nodes_before": self.nodes_before,
                "nodes_after": self.nodes_after, "equivalence": self.equivalence.to_dict(),
                "conversion": self.conversion}


def prepare(model_path: str | Path, output: str | Path, input_shape: tuple[int, ...] | None = None, *,
            do_simplify: bool = True, real_inputs: list[np.ndarray] | None = None) -> PrepareResult:
    """Make the model static at `input_shape` (default: its default shape), simplify, save atomically, verify.
    A .tflite/.pb model is converted to ONNX first (checked against OpenCV's run of it), then prepared."""
    refuse_overwrite_of_input(output, model_path)
    if Path(model_path).suffix.lower() != ".onnx":
        return _prepare_converted(model_path, output, input_shape, do_simplify=do_simplify, real_inputs=real_inputs)
    model = Model.load(model_path)
    shape = tuple(input_shape or model.default_input_shape())
    proto = make_static(load_onnx(model_path), shape)
    if do_simplify:
        proto = simplify(proto, shape)
    with atomic_path(output, size_hint=proto.ByteSize()) as tmp:  # -o appears only once verified
        onnx.save(proto, os.fsdecode(tmp))
        equivalence = compare_outputs(model_path, tmp, shape, real_inputs=real_inputs)
        if not equivalence.equivalent:
            raise ModelError(f"prepared model differs from the original (max abs diff "
                             f"{equivalence.max_abs_diff:.3g}, cosine {equivalence.cosine:.6f}); nothing written. "
                             f"try without simplification")
    return PrepareResult(Path(output), shape, len(model.proto.graph.node), len(proto.graph.node), equivalence)


def _prepare_converted(model_path: str | Path, output: str | Path, input_shape: tuple[int, ...] | None, *,
                       do_simplify: bool, real_inputs: list[np.ndarray] | None) -> PrepareResult:
    import tempfile

    from .convert import convert

    with tempfile.TemporaryDirectory(prefix="cvtune-convert-") as tmp:
        converted = Path(tmp) / (Path(model_path).stem + ".onnx")
        conversion = convert(model_path, converted, images=real_inputs)
        result = prepare(converted, output, input_shape, do_simplify=do_simplify, real_inputs=real_inputs)
    info = conversion.to_dict()
    info["output"] = str(result.output)
    return replace(result, conversion=info)
