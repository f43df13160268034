"""NNCF int8 passes: post-training quantization of the OpenVINO model (`nncf.quantize`), and the same with NNCF's
accuracy control (`nncf.quantize_with_accuracy_control`). They write an OpenVINO IR (.xml + .bin) that only the
openvino runtime runs, so they come last in a build (Pass.output_suffix) and the search pairs them with that
runtime only (Pass.runtimes). Each checks its output against the float model before it is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import onnx

from ..data.calibration import CalibrationNeed
from ..errors import ModelError, UsageError
from .base import BuildContext, Pass, PassOutput

# NNCF's MinMax ranges and fast bias correction want a few dozen images; measured on PP-OCRv4 det: 30 images,
# 8-10 s, output cosine 0.979 against fp32 on unseen images.
CALIB_IMAGES = 16
HELD_OUT = 4  # calibration images held back to check (and, without labels, validate) the result


def _quantize(p: NncfInt8 | NncfInt8AccuracyControl, model: onnx.ModelProto, ctx: BuildContext, *,
              accuracy: bool) -> PassOutput:
    from ..budget import Budget
    from ..model import save_onnx
    from ..quantize.check import check_outputs
    from ..quantize.nncf_ov import quantize_openvino
    from ..quantize.validation import FidelityValidator, held_out
    from ..runtimes import make_runtime

    source = save_onnx(model, ctx.workdir / "pre_nncf.onnx")
    output = ctx.workdir / "nncf_int8.xml"
    calib, check = held_out(ctx.calibrate(p.calibration()), HELD_OUT)
    samples = check.tensors()
    validation = None
    if accuracy:
        validation = ctx.validation if ctx.validation is not None else FidelityValidator(source, samples)
    result = quantize_openvino(source, output, calib, preset=p.preset, fast_bias_correction=p.fast_bias_correction,
                               validation=validation, max_drop=Budget.parse(p.max_drop) if accuracy else None,
                               max_steps=p.max_steps if accuracy else None)
    verdict = check_outputs(output, source, [make_runtime("openvino")], samples)[0]
    if not verdict.ok:
        raise ModelError(f"NNCF int8: {verdict.describe()}")
    info: dict[str, Any] = {**result.to_dict(), "output_check": verdict.to_dict()}
    if accuracy:
        info["validated_by"] = getattr(validation, "metric", "")
    return PassOutput(model, info, artifact=output)


@dataclass(frozen=True)
class NncfInt8(Pass):
    """NNCF post-training int8 of the OpenVINO model (MinMax ranges, fast bias correction), run by OpenVINO."""

    name: ClassVar[str] = "nncf_int8"
    slot: ClassVar[str] = "precision"
    order: ClassVar[int] = 45  # after every ONNX pass: its output is an OpenVINO IR
    off_label: ClassVar[str] = "fp32"
    requires: ClassVar[tuple[str, ...]] = ("nncf", "openvino")
    aliases: ClassVar[dict] = {"nncf-int8": {}}
    output_suffix: ClassVar[str] = ".xml"
    runtimes: ClassVar[tuple[str, ...] | None] = ("openvino",)

    preset: str = "performance"
    fast_bias_correction: bool = True

    def __post_init__(self) -> None:
        from ..quantize.nncf_ov import NNCF_PRESETS

        if self.preset not in NNCF_PRESETS:
            raise UsageError(f"unknown NNCF preset '{self.preset}'; choose one of: {', '.join(NNCF_PRESETS)}")

    def calibration(self) -> CalibrationNeed:
        return CalibrationNeed(CALIB_IMAGES + HELD_OUT)

    def apply(self, model: onnx.ModelProto, ctx: BuildContext, plan: Any = None) -> PassOutput:
        return _quantize(self, model, ctx, accuracy=False)

    def label(self) -> str:
        return "nncf-int8" + ("" if self.preset == "performance" else f" {self.preset}")

    def describe(self) -> str:
        return "NNCF int8 (OpenVINO)"


@dataclass(frozen=True)
class NncfInt8AccuracyControl(Pass):
    """NNCF int8 with accuracy control: layers go back to float until the validation metric is within `max_drop`
    (the task metric when the build has labelled validation images, else output cosine vs float)."""

    name: ClassVar[str] = "nncf_int8_ac"
    slot: ClassVar[str] = "precision"
    order: ClassVar[int] = 45
    off_label: ClassVar[str] = "fp32"
    requires: ClassVar[tuple[str, ...]] = ("nncf", "openvino")
    aliases: ClassVar[dict] = {"nncf-int8-ac": {}}
    output_suffix: ClassVar[str] = ".xml"
    runtimes: ClassVar[tuple[str, ...] | None] = ("openvino",)

    max_drop: str = "1%"
    max_steps: int = 8
    preset: str = "performance"
    fast_bias_correction: bool = True

    def __post_init__(self) -> None:
        from ..budget import Budget
        from ..quantize.nncf_ov import NNCF_PRESETS

        Budget.parse(self.max_drop)
        if self.preset not in NNCF_PRESETS:
            raise UsageError(f"unknown NNCF preset '{self.preset}'; choose one of: {', '.join(NNCF_PRESETS)}")
        if self.max_steps < 0:
            raise UsageError(f"max_steps must be >= 0 (got {self.max_steps})")

    def calibration(self) -> CalibrationNeed:
        return CalibrationNeed(CALIB_IMAGES + HELD_OUT)

    def apply(self, model: onnx.ModelProto, ctx: BuildContext, plan: Any = None) -> PassOutput:
        return _quantize(self, model, ctx, accuracy=True)

    def label(self) -> str:
        return f"nncf-int8-ac {self.max_drop}"

    def describe(self) -> str:
        return f"NNCF int8 with accuracy control ({self.max_drop})"
