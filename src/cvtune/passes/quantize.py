"""Precision passes: static int8 (QDQ or QOperator, calibrated on the user's images), dynamic int8 and fp16, all
through cvtune.quantize. They share the 'precision' slot: a model has one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import onnx

from ..data.calibration import CalibrationNeed
from .base import BuildContext, Pass, PassOutput

# int8 ranges want a few more images than a least-squares fit, at the task's own resolution.
CALIB_IMAGES = 16


def _run_quantize(model: onnx.ModelProto, ctx: BuildContext, config: Any, calibration: Any = None) -> PassOutput:
    """Write the model, quantize file to file (ORT's quantizer works on files), read the result back."""
    from ..model import load_onnx, save_onnx
    from ..quantize import quantize

    src, dst = ctx.workdir / "pre_quant.onnx", ctx.workdir / "quant.onnx"
    save_onnx(model, src)
    result = quantize(src, dst, config, calibration=calibration, probe=False)
    return PassOutput(load_onnx(dst), {"quantized_nodes": result.quantized_nodes, "quant_notes": list(result.notes)})


@dataclass(frozen=True)
class Int8Static(Pass):
    """Static int8: weights and activations, activation ranges from the calibration split."""

    name: ClassVar[str] = "int8_static"
    slot: ClassVar[str] = "precision"
    order: ClassVar[int] = 40
    off_label: ClassVar[str] = "fp32"
    requires: ClassVar[tuple[str, ...]] = ("onnxruntime.quantization",)
    aliases: ClassVar[dict] = {"int8-qdq": {"format": "qdq"}, "int8-qoperator": {"format": "qoperator"}}

    format: str = "qoperator"
    per_channel: bool = False
    calibrate: str = "minmax"

    def __post_init__(self) -> None:
        self.config()  # validates format and calibration method

    def config(self):
        from ..quantize import StaticConfig

        return StaticConfig(format=self.format, per_channel=self.per_channel, calibrate=self.calibrate)

    def calibration(self) -> CalibrationNeed:
        return CalibrationNeed(CALIB_IMAGES)

    def apply(self, model: onnx.ModelProto, ctx: BuildContext, plan: Any = None) -> PassOutput:
        # the calibration images go through the model as it is now (pruned, when pruning ran first)
        return _run_quantize(model, ctx, self.config(), ctx.calibrate(self.calibration()))

    def label(self) -> str:
        extra = [x for x in ("per-channel" if self.per_channel else "",
                             self.calibrate if self.calibrate != "minmax" else "") if x]
        return " ".join([f"int8-{self.format}", *extra])

    def describe(self) -> str:
        return self.label()


@dataclass(frozen=True)
class Int8Dynamic(Pass):
    """Dynamic int8: int8 weights, activations quantized at run time (MatMul/Gemm-heavy models); no calibration."""

    name: ClassVar[str] = "int8_dynamic"
    slot: ClassVar[str] = "precision"
    order: ClassVar[int] = 40
    off_label: ClassVar[str] = "fp32"
    requires: ClassVar[tuple[str, ...]] = ("onnxruntime.quantization",)
    aliases: ClassVar[dict] = {"int8-dynamic": {}}

    per_channel: bool = False

    def apply(self, model: onnx.ModelProto, ctx: BuildContext, plan: Any = None) -> PassOutput:
        from ..quantize import DynamicConfig

        return _run_quantize(model, ctx, DynamicConfig(per_channel=self.per_channel))

    def label(self) -> str:
        return "int8-dynamic" + (" per-channel" if self.per_channel else "")

    def describe(self) -> str:
        return self.label()


@dataclass(frozen=True)
class Fp16(Pass):
    """fp16 weights and compute, float32 inputs/outputs kept (onnxconverter_common)."""

    name: ClassVar[str] = "fp16"
    slot: ClassVar[str] = "precision"
    order: ClassVar[int] = 40
    off_label: ClassVar[str] = "fp32"
    requires: ClassVar[tuple[str, ...]] = ("onnxconverter_common",)
    aliases: ClassVar[dict] = {"fp16": {}}

    keep_fp32_kernels: bool = True

    def apply(self, model: onnx.ModelProto, ctx: BuildContext, plan: Any = None) -> PassOutput:
        from ..quantize import Fp16Config

        return _run_quantize(model, ctx, Fp16Config(allow_fp32_kernels=self.keep_fp32_kernels))

    def label(self) -> str:
        return "fp16"

    def describe(self) -> str:
        return "fp16"


