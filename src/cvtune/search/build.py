"""Build the model file a Transforms asks for (pruning, sparsity, simplification, quantization, in that order),
once per transform tuple, in a child process (a transform that crashes fails its candidates, not the search).

Each technique is a step function in STEPS, importing its module lazily: a technique whose module is not
installed is left out of the space by `space.available_techniques()`.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import CvtuneError, ModelError
from ..isolate import run_isolated

Step = Callable[[onnx.ModelProto, dict[str, Any], "BuildContext"], tuple[onnx.ModelProto, dict[str, Any]]]


class BuildContext:
    """Calibration inputs (preprocessed by the task at the candidate's input size) and shapes for the steps."""

    def __init__(self, calib: list[np.ndarray], input_shape: tuple[int, ...], workdir: Path) -> None:
        self.calib = calib
        self.input_shape = input_shape
        self.workdir = workdir


def _prune(proto: onnx.ModelProto, t: dict[str, Any], ctx: BuildContext) -> tuple[onnx.ModelProto, dict]:
    """Structured channel pruning with least-squares reconstruction on the calibration images."""
    from ..compress import ChannelConfig, prune_channels

    # protect_tail=3: the search leaves the last weighted layers dense (on PP-OCRv4 det, ratio 0.3 with the head
    # dense lost 0.2% hmean for 1.26x ORT speed; uniform 0.25 lost 3.7%)
    config = ChannelConfig(ratio=t["prune_ratio"], importance=t["prune_importance"], reconstruct=bool(ctx.calib),
                           protect_tail=3)
    pruned, report = prune_channels(proto, config, calib=ctx.calib or None, input_shape=ctx.input_shape)
    return pruned, {"prune_summary": report.plan.summary(), "channels_pruned": report.plan.channels_pruned,
                    "reconstructed": report.reconstruction is not None}


def _sparsify(proto: onnx.ModelProto, t: dict[str, Any], ctx: BuildContext) -> tuple[onnx.ModelProto, dict]:
    from ..compress.sparsify import SparsifyConfig, sparsify

    out, report = sparsify(proto, SparsifyConfig(method="magnitude", sparsity=t["sparsity"]))
    return out, {"sparsity_achieved": report.zeros / max(report.weight_params, 1)}


def _simplify(proto: onnx.ModelProto, t: dict[str, Any], ctx: BuildContext) -> tuple[onnx.ModelProto, dict]:
    from ..prepare import make_static, simplify

    if t.get("static_size"):
        proto = make_static(proto, ctx.input_shape)
        return simplify(proto, ctx.input_shape), {"static_shape": list(ctx.input_shape)}
    return simplify(proto, None), {}


def quant_config(variant: str) -> Any:
    """The cvtune.quantize config for a Transforms.quant variant."""
    from ..quantize import DynamicConfig, Fp16Config, StaticConfig

    configs = {"fp16": lambda: Fp16Config(allow_fp32_kernels=True), "int8-dynamic": DynamicConfig,
               "int8-qdq": lambda: StaticConfig(format="qdq"),
               "int8-qoperator": lambda: StaticConfig(format="qoperator")}
    return configs[variant]()


def _quantize(proto: onnx.ModelProto, t: dict[str, Any], ctx: BuildContext) -> tuple[onnx.ModelProto, dict]:
    """int8 (static, calibrated on the calibration split; or dynamic) or fp16, via cvtune.quantize."""
    from ..model import load_onnx, save_onnx
    from ..quantize import CalibrationSet, quantize

    src, dst = ctx.workdir / "pre_quant.onnx", ctx.workdir / "quant.onnx"
    save_onnx(proto, src)
    calibration = None
    if t["quant"] in ("int8-qdq", "int8-qoperator"):
        if not ctx.calib:
            raise ModelError("static int8 needs calibration images, and none could be read from the calibration split")
        inits = {i.name for i in proto.graph.initializer}
        name = next(v.name for v in proto.graph.input if v.name not in inits)
        calibration = CalibrationSet(name, tuple(ctx.calib), "the search's calibration split")
    result = quantize(src, dst, quant_config(t["quant"]), calibration=calibration, probe=False)
    return load_onnx(dst), {"quant": t["quant"], "quantized_nodes": result.quantized_nodes,
                            "quant_notes": list(result.notes)}


# Applied in this order; each entry: (transform field that turns it on, step).
STEPS: list[tuple[str, Step]] = [
    ("prune_ratio", _prune),
    ("sparsity", _sparsify),
    ("simplify", _simplify),
    ("quant", _quantize),
]


# Calibration images per technique: reconstruction solves a least-squares problem per layer (a few images are
# plenty and keep the build short); int8 ranges want a few more.
CALIB_LIMITS = {"prune": 8, "quant": 16}
# Reconstruction runs the model over the calibration tensors once per wave of layers: for fully convolutional
# models the tensors are downscaled to this longest side. Measured on the demo (PP-OCRv4 det, ORT, 40 images):
# 6 images at 480 px lost 4% hmean at 30% pruning in screening; 8 at 736 px kept it (0.973 vs 0.956 unpruned).
PRUNE_CALIB_MAX_SIDE = 736


def downscale(tensor: np.ndarray, max_side: int, multiple: int) -> np.ndarray:
    """A (1, C, H, W) tensor resized (area interpolation) so its longest side is at most `max_side`."""
    import cv2

    h, w = tensor.shape[2:4]
    ratio = max_side / max(h, w)
    if ratio >= 1:
        return tensor
    nh = max(multiple, int(round(h * ratio / multiple)) * multiple)
    nw = max(multiple, int(round(w * ratio / multiple)) * multiple)
    hwc = np.ascontiguousarray(tensor[0].transpose(1, 2, 0))
    out = cv2.resize(hwc, (nw, nh), interpolation=cv2.INTER_AREA)
    out = out[..., None] if out.ndim == 2 else out
    return np.ascontiguousarray(out.transpose(2, 0, 1)[None], dtype=np.float32)


def _enabled(field: str, value: Any) -> bool:
    return value not in (None, False, 0, 0.0, "", "none")


def _build_child(source: str, output: str, model_fields: dict[str, Any], calib_images: list[str], task: str,
                 task_options: dict, input_size: list[int] | None, input_shape: list[int],
                 workdir: str, size_multiple: int | None) -> dict[str, Any]:
    """Runs in a child: apply every enabled step, save atomically, return facts about the result."""
    from ..data.base import read_image
    from ..model import constants_to_initializers, load_onnx, save_onnx
    from .runner import make_task

    started = time.perf_counter()
    proto = load_onnx(source)
    calib: list[np.ndarray] = []
    needs_calib = _enabled("prune_ratio", model_fields["prune_ratio"]) or \
        model_fields["quant"] in ("int8-qdq", "int8-qoperator")
    calib_images = calib_images[:CALIB_LIMITS.get("prune" if model_fields["prune_ratio"] else "quant", 16)]
    if needs_calib and calib_images:
        task_obj = make_task(task, source, input_size, task_options)
        for path in calib_images:
            image = read_image(path)
            if image is not None:
                calib.append(task_obj.preprocess(image)[0])
        if model_fields["prune_ratio"] and size_multiple and not input_size:
            calib = [downscale(t, PRUNE_CALIB_MAX_SIDE, size_multiple) for t in calib]
            input_shape = list(calib[0].shape) if calib else input_shape
    ctx = BuildContext(calib, tuple(input_shape), Path(workdir))
    info: dict[str, Any] = {"steps": []}
    for field, step in STEPS:
        if _enabled(field, model_fields.get(field)):
            if field in ("prune_ratio", "sparsity"):
                proto = constants_to_initializers(proto)
            proto, step_info = step(proto, model_fields, ctx)
            info["steps"].append(field)
            info.update(step_info)
    save_onnx(proto, output)
    info["seconds"] = time.perf_counter() - started
    return info


def model_facts(path: str | Path) -> dict[str, int]:
    """File size and deflate-compressed size (what the size objective minimizes: what you would ship)."""
    data = Path(path).read_bytes()
    return {"file_bytes": len(data), "compressed_bytes": len(zlib.compress(data, 6))}


def build_model(source: str | Path, output: str | Path, model_fields: dict[str, Any], *, calib_images: list[str],
                task: str, task_options: dict, input_size: list[int] | None,
                input_shape: list[int], timeout: float, memory_limit_mb: int | None,
                size_multiple: int | None = None) -> dict[str, Any]:
    """Build one transformed model into `output` in a child process. Raises TrialFailed/CvtuneError on failure.
    `size_multiple` (fully convolutional models only) lets pruning calibrate on downscaled tensors."""
    output = Path(output)
    workdir = output.parent / f".work-{output.stem}"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        info = run_isolated("cvtune.search.build:_build_child",
                            {"source": str(source), "output": str(output), "model_fields": model_fields,
                             "calib_images": calib_images, "task": task, "task_options": task_options,
                             "input_size": input_size, "input_shape": input_shape,
                             "workdir": str(workdir), "size_multiple": size_multiple},
                            timeout=timeout, memory_limit_mb=memory_limit_mb)
    finally:
        for leftover in workdir.glob("*"):
            leftover.unlink(missing_ok=True)
        workdir.rmdir() if workdir.exists() and not any(workdir.iterdir()) else None
    if not output.is_file():
        raise ModelError(f"building {output.name} produced no file")
    return {**info, **model_facts(output)}


__all__ = ["STEPS", "build_model", "model_facts", "CvtuneError"]
