"""Precision passes: static int8 (QDQ or QOperator, calibrated on the user's images, optionally with cross-layer
equalization, bias correction, per-tensor calibration choice and an accuracy-aware fallback), dynamic int8 and
fp16, all through cvtune.quantize. They share the 'precision' slot: a model has one (NNCF's int8 is in nncf.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import onnx

from ..data.calibration import CalibrationNeed
from ..errors import UsageError
from .base import BuildContext, Pass, PassOutput

# int8 ranges want a few more images than a least-squares fit, at the task's own resolution.
CALIB_IMAGES = 16
HELD_OUT = 4  # with a fallback and no labelled validation: calibration images held back to judge fidelity on
FALLBACKS = ("none", "accuracy", "latency")


def _run_quantize(model: onnx.ModelProto, ctx: BuildContext, config: Any, calibration: Any = None) -> PassOutput:
    """Write the model, quantize file to file (ORT's quantizer works on files), read the result back."""
    from ..model import load_onnx, save_onnx
    from ..quantize import quantize

    src, dst = ctx.workdir / "pre_quant.onnx", ctx.workdir / "quant.onnx"
    save_onnx(model, src)
    result = quantize(src, dst, config, calibration=calibration, probe=False)
    return PassOutput(load_onnx(dst), {"quantized_nodes": result.quantized_nodes, "quant_notes": list(result.notes),
                                       "fidelity": result.fidelity})


@dataclass(frozen=True)
class Int8Static(Pass):
    """Static int8: weights and activations, activation ranges from the calibration split. `cle` equalizes conv
    channels first, `bias_correction` corrects each layer's output mean, `calibrate="auto"` picks the range method
    per tensor; `fallback` ("accuracy" or "latency"-weighted) keeps layers in float until `max_drop` holds on the
    build's validation (the task metric when it has one, else output cosine vs float on held-out images)."""

    name: ClassVar[str] = "int8_static"
    slot: ClassVar[str] = "precision"
    order: ClassVar[int] = 40
    off_label: ClassVar[str] = "fp32"
    requires: ClassVar[tuple[str, ...]] = ("onnxruntime.quantization",)
    aliases: ClassVar[dict] = {"int8-qdq": {"format": "qdq"}, "int8-qoperator": {"format": "qoperator"},
                               "int8-best": {"format": "qoperator", "per_channel": True, "calibrate": "auto",
                                             "cle": True, "bias_correction": True}}

    format: str = "qoperator"
    per_channel: bool = False
    calibrate: str = "minmax"
    cle: bool = False
    bias_correction: bool = False
    fallback: str = "none"
    max_drop: str = "1%"
    max_steps: int = 4

    def __post_init__(self) -> None:
        self.config()  # validates format and calibration method
        if self.fallback not in FALLBACKS:
            raise UsageError(f"unknown int8 fallback '{self.fallback}'; choose one of: {', '.join(FALLBACKS)}")
        from ..budget import Budget

        Budget.parse(self.max_drop)
        if self.max_steps < 0:
            raise UsageError(f"max_steps must be >= 0 (got {self.max_steps})")

    @property
    def runtimes(self) -> tuple[str, ...] | None:  # type: ignore[override]
        """QOperator files (QLinearConv, com.microsoft QLinearAdd, ...) run in ORT and OpenCV; OpenVINO's ONNX
        frontend cannot convert them (measured: 'Model wasn't fully converted'), so the search does not pair them
        with it. QDQ files run everywhere."""
        return ("ort", "opencv") if self.format == "qoperator" else None

    def config(self):
        from ..quantize import StaticConfig

        return StaticConfig(format=self.format, per_channel=self.per_channel, calibrate=self.calibrate,
                            cle=self.cle, bias_correction=self.bias_correction)

    def calibration(self) -> CalibrationNeed:
        return CalibrationNeed(CALIB_IMAGES + (HELD_OUT if self.fallback != "none" else 0))

    def apply(self, model: onnx.ModelProto, ctx: BuildContext, plan: Any = None) -> PassOutput:
        # the calibration images go through the model as it is now (pruned, when pruning ran first)
        calibration = ctx.calibrate(self.calibration())
        if self.fallback == "none":
            return _run_quantize(model, ctx, self.config(), calibration)
        return self._with_fallback(model, ctx, calibration)

    def _with_fallback(self, model: onnx.ModelProto, ctx: BuildContext, calibration: Any) -> PassOutput:
        from ..model import load_onnx, save_onnx
        from ..quantize import quantize_with_accuracy_control
        from ..quantize.validation import FidelityValidator, held_out, path_scorer

        src, dst = ctx.workdir / "pre_quant.onnx", ctx.workdir / "quant.onnx"
        save_onnx(model, src)
        calib, check = held_out(calibration, HELD_OUT)
        validation = ctx.validation if ctx.validation is not None else FidelityValidator(src, check.tensors())
        result, report = quantize_with_accuracy_control(
            src, dst, self.config(), calib, path_scorer(validation), max_drop=self.max_drop,
            max_steps=self.max_steps, metric=getattr(validation, "metric", "metric"), probe=False,
            weighting=self.fallback)
        return PassOutput(load_onnx(dst), {"quantized_nodes": result.quantized_nodes,
                                           "quant_notes": list(result.notes), "accuracy": report.to_dict()})

    def label(self) -> str:
        extra = [x for x in ("per-channel" if self.per_channel else "",
                             self.calibrate if self.calibrate != "minmax" else "", "cle" if self.cle else "",
                             "bias-corr" if self.bias_correction else "",
                             f"{self.fallback}-fallback {self.max_drop}" if self.fallback != "none" else "") if x]
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


