"""`cvtune inspect`: everything cvtune knows about a model, as one JSON-ready dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .model import Model, check_model_file
from .runtimes.opencv import opencv_flops


def inspect_model(model_path: str | Path, *, input_shape: tuple[int, ...] | None = None, probe: bool = True,
                  layers: bool = False) -> dict[str, Any]:
    """Inputs/outputs, opset, params, size, FLOPs (total and per layer), sparsity, ops, preprocessing and,
    with `probe`, which runtimes load it (each tried in a child process)."""
    from .preprocess import model_preprocessing
    from .probe import probe_runtimes

    path = check_model_file(model_path)
    if path.suffix.lower() != ".onnx":
        info: dict[str, Any] = {"path": str(path), "format": path.suffix.lstrip("."), "file_size": path.stat().st_size,
                                "note": "not ONNX: cvtune can run and benchmark it through OpenCV only",
                                **_preprocessing(model_preprocessing(path))}
        if probe and input_shape:
            info["runtimes"] = [r.to_dict() for r in probe_runtimes(path, input_shape=input_shape)]
        return info
    model = Model.load(path)
    shape = tuple(input_shape or model.default_input_shape())
    per_layer = model.flops(shape)
    total = sum(layer.flops for layer in per_layer)
    sparsity = model.weight_sparsity()
    info = {
        "path": str(path),
        "format": "onnx",
        "file_size": model.file_size,
        "opset": model.opset,
        "ir_version": model.proto.ir_version,
        "producer": f"{model.proto.producer_name} {model.proto.producer_version}".strip(),
        "inputs": [t.to_dict() for t in model.inputs],
        "outputs": [t.to_dict() for t in model.outputs],
        "params": model.param_count,
        "flops_input_shape": list(shape),
        "flops": total,
        "opencv_flops": opencv_flops(path, shape),
        "weight_sparsity": sparsity.get("total", 0.0),
        "nodes": len(model.proto.graph.node),
        "op_histogram": model.op_histogram(),
        **_preprocessing(model.preprocessing),
    }
    if layers:
        info["layers"] = [{"name": lf.name, "op": lf.op_type, "flops": lf.flops, "params": lf.params,
                           "sparsity": sparsity.get(lf.name, 0.0)} for lf in per_layer]
    else:
        top = sorted(per_layer, key=lambda lf: lf.flops, reverse=True)[:5]
        info["top_layers"] = [{"name": lf.name, "op": lf.op_type, "flops": lf.flops,
                                "share": lf.flops / total if total else 0}
                              for lf in top]
    if probe:
        info["runtimes"] = [r.to_dict() for r in probe_runtimes(path, input_shape=shape)]
    return info


def _preprocessing(spec) -> dict[str, Any]:
    """The preprocessing, where it came from (user, zoo, metadata:..., tflite, guessed) and a line for people."""
    return {"preprocessing": spec.to_dict(), "preprocessing_source": spec.source,
            "preprocessing_description": spec.describe()}
