"""Quantization that keeps its promise: int8 (static with calibration on the user's images, or dynamic) and fp16,
an accuracy-aware fallback that keeps the most harmful layers in float, and a probe of which runtimes/engines load
each produced model. Every model is written atomically with a `<name>.quant.json` sidecar.

    from cvtune.data.calibration import CalibrationNeed, calibration_set
    from cvtune.quantize import StaticConfig, quantize
    calib = calibration_set(model, "images/", CalibrationNeed(count=64))
    result = quantize(model, "model_int8.onnx", StaticConfig(format="qdq", per_channel=True), calibration=calib)

Calibration data (sampling, preprocessing, streaming) lives in cvtune.data.calibration, shared with pruning.
"""

from __future__ import annotations

from ..data.calibration import CalibrationSet
from ..runtimes.devices import cpu_has_vnni  # the one VNNI check; importable here for quantize's callers
from .accuracy import AccuracyReport, AccuracyStep, HarmfulLayer, locate_harmful, quantize_with_accuracy_control
from .api import quantize
from .config import (
    CALIBRATIONS,
    FORMATS,
    QTYPES,
    DynamicConfig,
    Fp16Config,
    QuantConfig,
    StaticConfig,
)
from .fp16 import fp32_kernel_ops
from .graph import QUANTIZED_OPS
from .result import QuantResult, sidecar_path

__all__ = [
    "CALIBRATIONS", "FORMATS", "QTYPES", "QUANTIZED_OPS", "AccuracyReport", "AccuracyStep", "CalibrationSet",
    "DynamicConfig", "Fp16Config", "HarmfulLayer", "QuantConfig", "QuantResult", "StaticConfig",
    "cpu_has_vnni", "fp32_kernel_ops", "locate_harmful", "quantize", "quantize_with_accuracy_control",
    "sidecar_path",
]
