"""Dynamic int8 with ONNX Runtime's quantize_dynamic: int8 weights, activations quantized per batch at run time.
Meant for MatMul/Gemm-heavy graphs (the recognizer's SVTR blocks); convolutional models want static int8."""

from __future__ import annotations

from pathlib import Path

import onnx

from ..errors import ModelError
from ..model import constants_to_initializers, load_onnx
from .config import QTYPES, DynamicConfig
from .graph import check_not_quantized, check_quantizable, name_nodes
from .ortutil import captured_logs, first_line, pre_process, require_loads


def quantize_dynamic_model(model_path: str | Path, output: Path, config: DynamicConfig, workdir: Path) -> list[str]:
    """Quantize `model_path` into `output`; returns notes. ModelError when the model has no MatMul/Gemm weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = load_onnx(model_path)
    check_not_quantized(proto, model_path)
    proto = name_nodes(constants_to_initializers(proto))
    hint = (" dynamically; for convolutional models use static int8 (--calib DIR)"
            if any(n.op_type == "Conv" for n in proto.graph.node) else "")
    check_quantizable(proto, model_path, config.op_types, (), hint=hint)
    raw = workdir / "float.onnx"
    onnx.save(proto, str(raw))
    prepared = workdir / "prepared.onnx"
    notes = pre_process(raw, prepared)
    check_quantizable(onnx.load(str(prepared)), model_path, config.op_types, config.exclude, hint=hint)
    try:
        with captured_logs():
            quantize_dynamic(str(prepared), str(output), op_types_to_quantize=list(config.op_types),
                             per_channel=config.per_channel, reduce_range=config.reduce_range,
                             weight_type=getattr(QuantType, QTYPES[config.weight_type]),
                             nodes_to_exclude=list(config.exclude))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"ONNX Runtime's quantize_dynamic failed on {Path(model_path).name}: "
                         f"{first_line(exc)}") from None
    require_loads(output, "dynamic int8")
    notes.append(f"dynamic int8 on {', '.join(config.op_types)}; weights {config.weight_type}")
    return notes
