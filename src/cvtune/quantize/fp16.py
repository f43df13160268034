"""fp16 weights and compute with onnxconverter_common.float16 (float32 inputs/outputs kept), and the check that
matters on a CPU: which ops this ONNX Runtime actually has fp16 kernels for.

ORT does not refuse an fp16 node it has no kernel for: at session start it quietly inserts Cast nodes and runs the
op in float32 (InsertCastTransformer). We read those inserted Casts back from the optimized graph, so "fp16" is
never claimed for a model that computes in fp32. The runtime-side alternative needs no conversion at all: OpenCV's
DNN_TARGET_CPU_FP16 (runtime setting `target=cpu_fp16`), where the build and CPU offer it.
"""

from __future__ import annotations

import tempfile
import warnings
from collections import Counter
from pathlib import Path

import onnx

from ..errors import ModelError
from ..model import constants_to_initializers, load_onnx
from .config import Fp16Config
from .graph import check_not_quantized, name_nodes
from .ortutil import first_line, require_loads

# Numerically fragile in fp16: BatchNormalization's running variance underflows (PP-OCRv4 det output broke).
FRAGILE_OPS = ("BatchNormalization",)
COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def fp32_kernel_ops(model_path: str | Path) -> dict[str, int]:
    """Op types (with node counts) that ONNX Runtime's CPU provider runs in float32 although the model stores them
    in fp16: the consumers of the Cast-to-float nodes ORT inserts when it has no fp16 kernel."""
    import onnxruntime as ort

    original = {n.name for n in onnx.load(str(model_path), load_external_data=False).graph.node}
    with tempfile.TemporaryDirectory(prefix="cvtune-fp16-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.optimized_model_filepath = str(optimized)
        ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(optimized), load_external_data=False).graph
    to_float = {n.output[0] for n in graph.node if n.op_type == "Cast" and n.name not in original
                and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)}
    counts = Counter(n.op_type for n in graph.node
                     if n.op_type != "Cast" and any(i in to_float for i in n.input))
    return dict(counts.most_common())


def convert_fp16_model(model_path: str | Path, output: Path, config: Fp16Config) -> tuple[list[str], dict]:
    """Convert into `output`; returns (notes, details with the block list and fp32-kernel ops). ModelError when ORT
    here has no fp16 kernel for some converted op, unless config.allow_fp32_kernels."""
    from onnxconverter_common import float16

    proto = load_onnx(model_path)
    check_not_quantized(proto, model_path)
    proto = name_nodes(constants_to_initializers(proto))
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FRAGILE_OPS) | set(config.block_ops))
    unknown = sorted(set(config.exclude) - {n.name for n in proto.graph.node})
    if unknown:
        raise ModelError(f"the excluded node(s) are not in {model_path}: {', '.join(unknown[:5])}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            half = float16.convert_float_to_float16(proto, keep_io_types=True, op_block_list=block,
                                                    node_block_list=list(config.exclude) or None)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"fp16 conversion of {model_path} failed: {first_line(exc)}") from None
    clamped = sum("truncated" in str(w.message) for w in caught)
    converted = [n for n in half.graph.node if n.op_type in COMPUTE_OPS and n.op_type not in block
                 and n.name not in set(config.exclude)]
    if not converted:
        raise ModelError(f"{model_path} has no Conv/Gemm/MatMul node left to run in fp16 (all blocked or excluded); "
                         f"nothing to gain from fp16")
    onnx.save(half, str(output))
    require_loads(output, "fp16")
    fallback = fp32_kernel_ops(output)
    import onnxruntime as ort

    if fallback and not config.allow_fp32_kernels:
        listed = ", ".join(f"{op} ({n})" for op, n in list(fallback.items())[:6])
        raise ModelError(f"fp16: ONNX Runtime {ort.__version__} on this CPU has no fp16 kernel for {listed}; they "
                         f"would run in float32 behind Cast nodes, so the fp16 file is smaller but not faster. "
                         f"Allow fp32 kernels to write it anyway, or keep the float model and try OpenCV's "
                         f"fp16 target (cpu_fp16) where the CPU has it")
    present = sorted({n.op_type for n in proto.graph.node} & set(block))
    notes = [f"fp16 with float32 inputs/outputs; kept in float32: {', '.join(present) or 'nothing'}"]
    if clamped:
        notes.append(f"{clamped} weight values outside fp16's range were clamped by the converter")
    if fallback:
        notes.append("ORT here runs these ops in float32 behind inserted Casts (no fp16 kernel): "
                     + ", ".join(f"{op} ({n})" for op, n in fallback.items()))
    details = {"block_ops": block, "fp32_kernel_ops": fallback, "clamped_values": clamped}
    return notes, details
