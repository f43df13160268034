"""What to quantize and how: one small frozen dataclass per method, validated on construction.

Choices are plain registries (name -> ORT enum member name) so the CLI takes its choices from them and an unknown
name is an error that lists the valid ones. ORT enums are resolved lazily: importing cvtune stays fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..data.calibration import CalibrationNeed
from ..errors import UsageError
from ..runtimes.devices import cpu_has_vnni

FORMATS = {"qdq": "QDQ", "qoperator": "QOperator"}
# How activation ranges are found. "auto" picks MinMax, Entropy or Percentile per tensor, whichever quantizes that
# tensor's calibration values with the lowest error (quantize.ranges); all but minmax stream one image at a time.
CALIBRATIONS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile", "auto": "auto"}
QTYPES = {"s8": "QInt8", "u8": "QUInt8"}
# Weighted ops whose weights int8 quantization actually shrinks; a model without any has nothing to quantize.
STATIC_WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
DYNAMIC_OPS = ("MatMul", "Gemm")


def _choose(value: str, registry: dict[str, str], what: str) -> str:
    if value not in registry:
        raise UsageError(f"unknown {what} '{value}'; choose one of: {', '.join(registry)}")
    return value


@dataclass(frozen=True)
class StaticConfig:
    """Static int8 (onnxruntime.quantization.quantize_static): weights and activations, ranges from calibration.

    activation_type None picks ORT's advice for the format (s8 for QDQ, u8 for QOperator on x86);
    reduce_range None means: 7-bit weights only for u8 activations on an x86 CPU without VNNI (where u8 x s8
    products can saturate). `input_shape` fixes dynamic dims and simplifies first, which OpenCV's classic engine
    needs for models with Shape ops. `exclude` names nodes that stay in float. `cle` equalizes consecutive conv
    channels first (quantize.cle), `bias_correction` corrects each layer's output mean shift on the calibration
    images (quantize.bias_correction)."""

    format: str = "qdq"
    per_channel: bool = False
    calibrate: str = "minmax"
    activation_type: str | None = None
    weight_type: str = "s8"
    reduce_range: bool | None = None
    percentile: float = 99.999
    input_shape: tuple[int, ...] | None = None
    exclude: tuple[str, ...] = ()
    cle: bool = False
    bias_correction: bool = False

    method = "static"
    # What static int8 calibration needs by default (--calib-size overrides the count): ranges want a few dozen
    # images like the deployed ones.
    calibration_need = CalibrationNeed(count=64)

    def __post_init__(self) -> None:
        _choose(self.format, FORMATS, "quantization format")
        _choose(self.calibrate, CALIBRATIONS, "calibration method")
        _choose(self.weight_type, QTYPES, "weight type")
        if self.activation_type is not None:
            _choose(self.activation_type, QTYPES, "activation type")
        if not 90.0 <= self.percentile < 100.0:
            raise UsageError(f"percentile must be in [90, 100) (got {self.percentile}); 99.999 is the usual choice")
        if self.input_shape is not None and (len(self.input_shape) < 2 or min(self.input_shape) < 1):
            raise UsageError(f"bad input shape {self.input_shape}: give positive dims, e.g. 1x3x640x640")
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def resolved(self) -> StaticConfig:
        """The same config with activation_type and reduce_range decided for this machine."""
        activation = self.activation_type or ("s8" if self.format == "qdq" else "u8")
        reduce = self.reduce_range
        if reduce is None:
            reduce = activation == "u8" and self.weight_type == "s8" and cpu_has_vnni() is False
        return dataclasses.replace(self, activation_type=activation, reduce_range=reduce)

    def with_exclude(self, nodes: list[str] | tuple[str, ...]) -> StaticConfig:
        return dataclasses.replace(self, exclude=tuple(nodes))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_shape"] = list(self.input_shape) if self.input_shape else None
        data["exclude"] = list(self.exclude)
        return {"method": self.method, **data}


@dataclass(frozen=True)
class DynamicConfig:
    """Dynamic int8 (quantize_dynamic): int8 weights, activations quantized at run time; for MatMul/Gemm-heavy
    models (transformers, the recognizer's SVTR neck). No calibration needed."""

    weight_type: str = "s8"
    per_channel: bool = False
    reduce_range: bool = False
    op_types: tuple[str, ...] = DYNAMIC_OPS
    exclude: tuple[str, ...] = ()

    method = "dynamic"

    def __post_init__(self) -> None:
        _choose(self.weight_type, QTYPES, "weight type")
        if not self.op_types:
            raise UsageError("dynamic quantization needs at least one op type, e.g. MatMul")
        object.__setattr__(self, "op_types", tuple(self.op_types))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "weight_type": self.weight_type, "per_channel": self.per_channel,
                "reduce_range": self.reduce_range, "op_types": list(self.op_types), "exclude": list(self.exclude)}


@dataclass(frozen=True)
class Fp16Config:
    """fp16 weights and compute (onnxconverter_common.float16) with float32 inputs/outputs kept.

    `block_ops` stay in float32 on top of the converter's defaults and BatchNormalization (its variance underflows
    in fp16: measured on PP-OCRv4 det, the output map went from 0 to 1). `allow_fp32_kernels` writes the model even
    when ONNX Runtime here has no fp16 kernel for some ops (they then run in fp32 behind Cast nodes)."""

    block_ops: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    allow_fp32_kernels: bool = False

    method = "fp16"

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_ops", tuple(self.block_ops))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "block_ops": list(self.block_ops), "exclude": list(self.exclude),
                "allow_fp32_kernels": self.allow_fp32_kernels}


@dataclass(frozen=True)
class NncfConfig:
    """NNCF post-training int8 of the OpenVINO model (quantize.nncf_ov): writes an OpenVINO IR (.xml + .bin) that the
    openvino runtime runs. `preset` "performance" (symmetric activations) or "mixed" (asymmetric); `ignored` names
    OpenVINO ops that stay in float."""

    preset: str = "performance"
    fast_bias_correction: bool = True
    ignored: tuple[str, ...] = ()

    method = "nncf"
    calibration_need = CalibrationNeed(count=64)

    def __post_init__(self) -> None:
        from .nncf_ov import NNCF_PRESETS

        _choose(self.preset, dict.fromkeys(NNCF_PRESETS, ""), "NNCF preset")
        object.__setattr__(self, "ignored", tuple(self.ignored))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "preset": self.preset, "fast_bias_correction": self.fast_bias_correction,
                "ignored": list(self.ignored)}


QuantConfig = StaticConfig | DynamicConfig | Fp16Config | NncfConfig

