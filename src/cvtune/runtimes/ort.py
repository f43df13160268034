"""ONNX Runtime: intra/inter-op threads, graph optimization level, execution mode, providers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import ModelError, RuntimeUnavailable, UsageError
from .base import Runtime

GRAPH_OPT = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
             "all": "ORT_ENABLE_ALL"}
EXECUTION_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


@dataclass(frozen=True)
class OrtRuntime(Runtime):
    """Settings for an onnxruntime.InferenceSession."""

    name: ClassVar[str] = "ort"
    threads: int | None = None  # intra-op threads; None = ORT default (all physical cores)
    inter_threads: int | None = None
    graph_opt: str = "all"
    execution_mode: str = "sequential"
    provider: str = "cpu"
    # ORT graph optimizers to switch off by name, e.g. ("WeightBiasQuantization",) keeps float-kept layers float
    disabled_optimizers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = self.disabled_optimizers
        if isinstance(names, str | list):  # from JSON or a --compare spec
            object.__setattr__(self, "disabled_optimizers", (names,) if isinstance(names, str) else tuple(names))
        if self.graph_opt not in GRAPH_OPT:
            raise UsageError(f"unknown graph optimization '{self.graph_opt}'; choose one of: {', '.join(GRAPH_OPT)}")
        if self.execution_mode not in EXECUTION_MODES:
            raise UsageError(
                f"unknown execution mode '{self.execution_mode}'; choose one of: {', '.join(EXECUTION_MODES)}"
            )
        if self.provider not in PROVIDER_ALIASES:
            raise UsageError(f"unknown ORT provider '{self.provider}'; choose one of: {', '.join(PROVIDER_ALIASES)}")
        for value in (self.threads, self.inter_threads):
            if value is not None and value < 1:
                raise UsageError(f"threads must be >= 1 (got {value})")

    def label(self) -> str:
        threads = f" t{self.threads}" if self.threads else ""
        return f"ort:{self.provider}{threads}"

    def check(self) -> None:
        wanted = PROVIDER_ALIASES[self.provider]
        have = available_providers()
        if wanted not in have:
            raise RuntimeUnavailable(
                f"ONNX Runtime provider {wanted} is not installed here (available: {', '.join(have)}); "
                f"install the onnxruntime build that has it (e.g. onnxruntime-gpu for CUDA)"
            )

    def open(self, model_path: str | Path) -> OrtSession:
        self.check()
        return OrtSession(Path(model_path), self)


class OrtSession:
    def __init__(self, model_path: Path, runtime: OrtRuntime) -> None:
        import onnxruntime as ort

        if not model_path.is_file():
            raise ModelError(f"model file not found: {model_path}")
        ort.set_default_logger_severity(3)  # failures are reported as one ModelError line, not ORT's log
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if runtime.threads:
            options.intra_op_num_threads = int(runtime.threads)
        if runtime.inter_threads:
            options.inter_op_num_threads = int(runtime.inter_threads)
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPT[runtime.graph_opt])
        options.execution_mode = getattr(ort.ExecutionMode, EXECUTION_MODES[runtime.execution_mode])
        providers = [PROVIDER_ALIASES[runtime.provider]]
        if providers[0] != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")
        try:
            extra = {"disabled_optimizers": list(runtime.disabled_optimizers)} if runtime.disabled_optimizers else {}
            from ..files import path_or_bytes  # a path ORT cannot take as text: hand it the bytes

            self.session = ort.InferenceSession(path_or_bytes(model_path), sess_options=options, providers=providers,
                                                **extra)
        except Exception as exc:  # noqa: BLE001 - ORT raises several exception types for bad models
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"ONNX Runtime cannot load {model_path}: {first[:300]}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._input_type = self.session.get_inputs()[0].type

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        dtype = np.float16 if self._input_type == "tensor(float16)" else np.float32
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=dtype)})

    def close(self) -> None:
        self.session = None
