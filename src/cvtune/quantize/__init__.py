"""Quantization that keeps its promise: int8 (static with calibration on the user's images, or dynamic) and fp16,
an accuracy-aware fallback that keeps the most harmful layers in float, and a probe of which runtimes/engines load
each produced model. Every model is written atomically with a `<name>.quant.json` sidecar.

    from cvtune.data.calibration import CalibrationNeed, calibration_set
    from cvtune.quantize import StaticConfig, quantize
    calib = calibration_set(model, "images/", CalibrationNeed(count=64))
    result = quantize(model, "model_int8.onnx", StaticConfig(format="qdq", per_channel=True), calibration=calib)

Better post-training int8, each a StaticConfig setting: `cle=True` (cle.py, cross-layer equalization),
`bias_correction=True` (bias_correction.py), `calibrate="auto"` (ranges.py: per-tensor range choice, streamed);
`quantize_with_accuracy_control(..., weighting="latency")` keeps in float the layers with the most accuracy per
millisecond of int8 saving (latency.py measures it). `NncfConfig` runs NNCF on the OpenVINO model (nncf_ov.py) and
writes an OpenVINO IR. check.py is the per-runtime output check every produced model gets.

Calibration data (sampling, preprocessing, streaming) lives in cvtune.data.calibration, shared with pruning.
"""

from __future__ import annotations

from ..data.calibration import CalibrationSet
from ..runtimes.devices import cpu_has_vnni  # the one VNNI check; importable here for quantize's callers
from .accuracy import (
    WEIGHTINGS,
    AccuracyReport,
    AccuracyStep,
    HarmfulLayer,
    LayerRank,
    locate_harmful,
    nncf_with_accuracy_control,
    quantize_with_accuracy_control,
    rank_layers,
)
from .api import quantize
from .config import (
    CALIBRATIONS,
    FORMATS,
    QTYPES,
    DynamicConfig,
    Fp16Config,
    NncfConfig,
    QuantConfig,
    StaticConfig,
)
from .fp16 import fp32_kernel_ops
from .graph import QUANTIZED_OPS
from .result import QuantResult, sidecar_path

__all__ = [
    "CALIBRATIONS", "FORMATS", "QTYPES", "QUANTIZED_OPS", "WEIGHTINGS", "AccuracyReport", "AccuracyStep",
    "CalibrationSet", "DynamicConfig", "Fp16Config", "HarmfulLayer", "LayerRank", "NncfConfig", "QuantConfig",
    "QuantResult", "StaticConfig", "cpu_has_vnni", "fp32_kernel_ops", "locate_harmful", "nncf_with_accuracy_control",
    "quantize", "quantize_with_accuracy_control", "rank_layers", "sidecar_path",
]
