"""What a quantization produced, saved next to the model as `<name>.quant.json`: method and settings, calibration
set, excluded layers, sizes, output fidelity, and which runtimes/engines load and run the file (the probe), so the
search never proposes a combination that cannot run."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..probe import ProbeResult

QUANT_OP_PREFIXES = ("Quantize", "Dequantize", "QLinear", "DynamicQuantize", "QGemm", "QAttention")
QUANT_OPS_EXACT = ("ConvInteger", "MatMulInteger", "MatMulIntegerToFloat", "Cast")


def sidecar_path(output: str | os.PathLike[str]) -> Path:
    """det_int8.onnx -> det_int8.quant.json (next to the model)."""
    output = Path(output)
    return output.with_name(output.stem + ".quant.json")


def quant_op_counts(path: Path) -> dict[str, int]:
    """Counts of the quantization-related ops in a model (QuantizeLinear, QLinearConv, ConvInteger, Cast, ...)."""
    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type.startswith(QUANT_OP_PREFIXES) or node.op_type in QUANT_OPS_EXACT:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def output_fidelity(reference: Path, candidate: Path, tensors: tuple[np.ndarray, ...] | list[np.ndarray]) -> dict:
    """Cosine similarity of all outputs (candidate vs reference, both in ONNX Runtime) on the given inputs."""
    import onnxruntime as ort

    from ..tasks.fidelity import cosine

    options = ort.SessionOptions()
    options.log_severity_level = 3
    from ..files import path_or_bytes

    ref = ort.InferenceSession(path_or_bytes(reference), sess_options=options, providers=["CPUExecutionProvider"])
    cand = ort.InferenceSession(path_or_bytes(candidate), sess_options=options, providers=["CPUExecutionProvider"])
    cosines, max_abs = [], 0.0
    for tensor in tensors:
        a = ref.run(None, {ref.get_inputs()[0].name: tensor})
        b = cand.run(None, {cand.get_inputs()[0].name: tensor})
        flat_a = np.concatenate([np.asarray(x, np.float64).ravel() for x in a])
        flat_b = np.concatenate([np.asarray(x, np.float64).ravel() for x in b])
        cosines.append(cosine(flat_a, flat_b))
        max_abs = max(max_abs, float(np.abs(flat_a - flat_b).max()) if flat_a.size else 0.0)
    return {"inputs": len(cosines), "cosine_mean": float(np.mean(cosines)) if cosines else None,
            "cosine_min": float(np.min(cosines)) if cosines else None, "max_abs_error": max_abs}


@dataclass(frozen=True)
class QuantResult:
    """One produced model and everything known about it. `to_dict()` is what the sidecar JSON holds."""

    output: Path
    sidecar: Path
    source: Path
    method: str
    settings: dict[str, Any]
    source_bytes: int
    output_bytes: int
    quantized_nodes: int
    op_counts: dict[str, int]
    excluded: tuple[str, ...]
    notes: tuple[str, ...]
    calibration: dict[str, Any] | None
    fidelity: dict[str, Any] | None
    probe: tuple[ProbeResult, ...]
    accuracy: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def size_ratio(self) -> float:
        return self.output_bytes / self.source_bytes if self.source_bytes else 0.0

    def runs_on(self) -> list[str]:
        """Labels of the probed runtimes that loaded and ran the model."""
        return [p.label for p in self.probe if p.ok]

    def to_dict(self) -> dict[str, Any]:
        from .. import __version__

        return {
            "cvtune": __version__, "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "source": str(self.source), "output": str(self.output), "method": self.method, "settings": self.settings,
            "sizes": {"source_bytes": self.source_bytes, "output_bytes": self.output_bytes,
                      "ratio": round(self.size_ratio, 4)},
            "quantized_nodes": self.quantized_nodes, "op_counts": self.op_counts, "excluded": list(self.excluded),
            "calibration": self.calibration, "fidelity": self.fidelity, "notes": list(self.notes),
            "probe": [p.to_dict() for p in self.probe], "runs_on": self.runs_on(), "accuracy": self.accuracy,
            **({"extra": self.extra} if self.extra else {}), "seconds": round(self.seconds, 2),
        }


def _agree_here(model: str, source: str, runtime: dict, sample: str) -> float:
    """Runs in a child: the cosine between `model` on `runtime` and the float `source` on ONNX Runtime."""
    from ..runtimes import make_runtime, runtime_from_dict
    from ..tasks.fidelity import cosine

    x = np.load(sample)
    got = runtime_from_dict(runtime).open(model).run(x)
    ref = make_runtime("ort").open(source).run(x)
    flat = [np.concatenate([np.asarray(o, np.float64).ravel() for o in outs]) for outs in (got, ref)]
    if flat[0].shape != flat[1].shape:
        return 0.0
    return cosine(flat[0], flat[1])


def runtime_agreement(model: Path, source: Path, probes: tuple[ProbeResult, ...] | list[ProbeResult],
                      sample: np.ndarray, workdir: Path, *, timeout: float = 120.0) -> dict[str, float | str]:
    """For every runtime the probe found working: cosine of its outputs against the float model's on one real
    input, each in a child process. Loading and running is not enough: a runtime may compute something else."""
    from ..errors import TrialFailed
    from ..isolate import run_isolated

    path = workdir / "agreement_sample.npy"
    np.save(path, np.ascontiguousarray(sample, np.float32))
    result: dict[str, float | str] = {}
    for probe in probes:
        if not probe.ok:
            continue
        try:
            result[probe.label] = round(float(run_isolated(
                "cvtune.quantize.result:_agree_here",
                {"model": str(model), "source": str(source), "runtime": probe.runtime, "sample": str(path)},
                timeout=timeout)), 6)
        except TrialFailed as exc:
            result[probe.label] = f"failed: {exc}"[:200]
    return result
