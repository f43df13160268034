"""`cvtune inspect`: everything cvtune knows about a model, as one JSON-ready dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import CvtuneError
from .model import Model, check_model_file
from .runtimes.opencv import opencv_flops


def inspect_model(model_path: str | Path, *, input_shape: tuple[int, ...] | None = None, probe: bool = True,
                  layers: bool = False) -> dict[str, Any]:
    """Inputs/outputs, opset, params, size, FLOPs (total and per layer), sparsity, ops, preprocessing and,
    with `probe`, which runtimes load it (each tried in a child process)."""
    from .preprocess import model_preprocessing
    from .probe import probe_runtimes

    path = check_model_file(model_path)
    if path.suffix.lower() == ".tflite":
        return _inspect_tflite(path, input_shape=input_shape, probe=probe)
    if path.suffix.lower() != ".onnx":
        from .model import model_io

        info: dict[str, Any] = {"path": str(path), "format": path.suffix.lstrip("."), "file_size": path.stat().st_size,
                                "note": "a TensorFlow graph: cvtune runs it through OpenCV (and OpenVINO); converting "
                                        "it to ONNX needs tf2onnx (pip install 'cvtune[tensorflow]')",
                                **_preprocessing(model_preprocessing(path))}
        try:
            inputs, outputs = model_io(path)
            info["inputs"] = [t.to_dict() for t in inputs]
            info["outputs"] = [t.to_dict() for t in outputs]
        except CvtuneError as exc:
            info["note"] += f"; inputs unknown: {exc}"
        if probe and (input_shape or info.get("inputs")):
            try:
                info["runtimes"] = [r.to_dict() for r in probe_runtimes(path, input_shape=input_shape)]
            except CvtuneError as exc:
                info["note"] += f"; not probed: {exc}"
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


def _inspect_tflite(path: Path, *, input_shape: tuple[int, ...] | None, probe: bool) -> dict[str, Any]:
    """A .tflite file: its declared inputs/outputs (NHWC, dtypes, quantization) and ops, read from the flatbuffer;
    then its ONNX conversion (FLOPs, params, and which runtimes run the converted model), or why it failed."""
    from .convert import ensure_onnx
    from .model import read_tflite
    from .preprocess import model_preprocessing
    from .probe import probe_runtimes

    facts = read_tflite(path)
    fed = facts.inputs_fed[0]
    info: dict[str, Any] = {
        "path": str(path), "format": "tflite", "file_size": path.stat().st_size,
        "inputs": [t.to_dict() for t in facts.inputs], "outputs": [t.to_dict() for t in facts.outputs],
        "fed_as": {"name": fed.name, "shape": list(fed.shape), "layout": "NCHW"},
        **_preprocessing(model_preprocessing(path)),
        "tflite": {"schema_version": facts.version, "description": facts.description, "subgraphs": facts.subgraphs},
        "op_histogram": facts.ops, "nodes": sum(facts.ops.values()),
    }
    try:
        onnx_path = ensure_onnx(path)
        model = Model.load(onnx_path)
        shape = tuple(input_shape or model.default_input_shape())
        info.update(params=model.param_count, flops_input_shape=list(shape), flops=model.total_flops(shape))
        info["conversion"] = {"ok": True, "converter": "tflite (cvtune)", "onnx": str(onnx_path),
                              "nodes": len(model.proto.graph.node)}
    except CvtuneError as exc:
        onnx_path = None
        info["conversion"] = {"ok": False, "error": str(exc)}
    if probe:
        info["runtimes"] = [r.to_dict() for r in probe_runtimes(path, input_shape=input_shape)]
        if onnx_path is not None:
            info["conversion"]["runtimes"] = [r.to_dict() for r in probe_runtimes(onnx_path, input_shape=input_shape)]
    return info


def _preprocessing(spec) -> dict[str, Any]:
    """The preprocessing, where it came from (user, zoo, metadata:..., tflite, guessed) and a line for people."""
    return {"preprocessing": spec.to_dict(), "preprocessing_source": spec.source,
            "preprocessing_description": spec.describe()}
