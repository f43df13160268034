"""Latency-driven structured pruning: per-group ratios chosen from the latency each group costs on the target
runtimes (measured per layer, compress.cost) and how much cutting it hurts (compress.curves, with
reconstruction), instead of one ratio for every group. Uniform ratios destroy compact models and waste cuts on
cheap layers; on PP-OCRv4 det the allocation cuts the expensive FPN neck and leaves the narrow DB head dense."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import onnx

from ..compress.channels import IMPORTANCE
from ..data.calibration import CalibrationNeed
from ..errors import UsageError
from .base import BuildContext, Pass, PassOutput
from .channel_prune import CALIB_IMAGES, CALIB_MAX_SIDE

COST_RUNTIMES = ("ort", "opencv")


@dataclass(frozen=True)
class ChannelAllocate(Pass):
    """Save `target` of the latency (mean predicted over `runtimes`) at the least predicted damage; or, with
    `max_drop`, the most latency whose predicted task-level agreement drop stays within it. Kept channel counts
    are multiples of `round_to` (ORT's NCHWc kernels work on blocks of 8 channels with AVX2: 24 -> 17 channels
    measured slower than 24)."""

    name: ClassVar[str] = "channel_allocate"
    slot: ClassVar[str] = "prune"
    order: ClassVar[int] = 10
    off_label: ClassVar[str] = "no pruning"
    edits_weights: ClassVar[bool] = True
    aliases: ClassVar[dict] = {"prune-15": {"target": 0.15}, "prune-30": {"target": 0.3},
                               "prune-45": {"target": 0.45}}

    target: float | None = 0.3
    max_drop: float | None = None
    runtimes: tuple[str, ...] = COST_RUNTIMES
    levels: tuple[float, ...] = (0.25, 0.5, 0.75)
    importance: str = "activation"
    round_to: int = 8
    sample: int = 4  # calibration images (of 480 x 480 pixels' worth; smaller inputs get more) for the curves
    sample_side: int = 480  # ... downscaled to this longest side (fully convolutional models): curves rank cuts,
    #                         they need not be measured at full resolution, and must fit in a trial's timeout

    def __post_init__(self) -> None:
        if self.max_drop is not None and self.target is not None:
            object.__setattr__(self, "target", None)  # a drop budget replaces the default latency target
        if self.target is None and self.max_drop is None:
            raise UsageError("channel_allocate needs target (fraction of latency to save, e.g. 0.3) or max_drop")
        if self.target is not None and not 0 < self.target < 1:
            raise UsageError(f"channel_allocate target is the fraction of latency to save, in (0, 1) "
                             f"(got {self.target})")
        if self.max_drop is not None and not 0 <= self.max_drop < 1:
            raise UsageError(f"channel_allocate max_drop must be in [0, 1) (got {self.max_drop})")
        if isinstance(self.runtimes, str):
            object.__setattr__(self, "runtimes", tuple(r for r in self.runtimes.split("+") if r))
        from ..compress.cost import PROFILERS

        unknown = [r for r in self.runtimes if r not in PROFILERS]
        if not self.runtimes or unknown:
            raise UsageError(f"channel_allocate measures cost on: {', '.join(PROFILERS)} (got "
                             f"{', '.join(self.runtimes) or 'none'})")
        if self.importance not in IMPORTANCE:
            raise UsageError(f"unknown pruning importance '{self.importance}'; choose one of: {', '.join(IMPORTANCE)}")
        if self.round_to < 1 or self.sample < 1 or self.sample_side < 32:
            raise UsageError("round_to and sample must be >= 1, sample_side >= 32")

    def calibration(self) -> CalibrationNeed:
        return CalibrationNeed(CALIB_IMAGES, max_side=CALIB_MAX_SIDE)

    def plan(self, model: onnx.ModelProto, ctx: BuildContext) -> Any:
        """The allocation (compress.allocate.Allocation): deterministic for the same model, calibration images and
        settings, because the measured profiles and curves it comes from are cached on disk."""
        return self._allocate(model, ctx, self.max_drop)

    def _sample_need(self, ctx: BuildContext) -> CalibrationNeed:
        from ..compress.curves import sample_count

        full = tuple(ctx.calibrate(self.calibration()).head(1)[0].shape)
        small = (*full[:2], *(min(d, self.sample_side) for d in full[2:]))
        return CalibrationNeed(sample_count(small, base=self.sample, side=self.sample_side), max_side=self.sample_side)

    def _allocate(self, model: onnx.ModelProto, ctx: BuildContext, max_drop: float | None) -> Any:
        from ..compress import latency_allocation

        calibration = ctx.calibrate(self._sample_need(ctx))
        calib = calibration.tensors()
        full = tuple(ctx.calibrate(self.calibration()).head(1)[0].shape)
        cost_shape = (1, full[1], *ctx.static_size) if ctx.static_size else (
            tuple(ctx.input_shape) if len(ctx.input_shape) == 4 and all(d > 0 for d in ctx.input_shape) else full)
        return latency_allocation(model, calib, target=self.target, max_drop=max_drop, runtimes=self.runtimes,
                                  cost_shape=cost_shape, task=calibration.task, levels=self.levels,
                                  importance=self.importance, round_to=self.round_to).allocation

    def apply(self, model: onnx.ModelProto, ctx: BuildContext, plan: Any = None) -> PassOutput:
        """Cut and refit what the plan allocated, then check the real agreement on the curves' sample; with
        `max_drop`, an allocation whose real drop exceeds it is redone at half the budget (at most twice)."""
        from ..compress import ChannelConfig, prune_channels, verify_allocation

        allocation = plan if plan is not None else self.plan(model, ctx)
        calib = ctx.calibrate(self.calibration()).tensors()
        sample = ctx.calibrate(self._sample_need(ctx))
        tries = []
        while True:
            if not allocation.ratios:
                return PassOutput(model, {"allocation": allocation.to_dict(), "channels_pruned": 0,
                                          "prune_summary": "no group worth cutting", "tries": tries})
            config = ChannelConfig(ratios=allocation.ratios, importance=self.importance, round_to=self.round_to)
            pruned, report = prune_channels(model, config, calib=calib, input_shape=tuple(calib[0].shape))
            checked = verify_allocation(model, pruned, sample.tensors(), task=sample.task)
            if self.max_drop is None or checked["drop"] <= self.max_drop or len(tries) == 2:
                break
            tries.append({"predicted_drop": allocation.drop, "verified": checked})
            allocation = self._allocate(model, ctx, (allocation.max_drop or self.max_drop) / 2)
        return PassOutput(pruned, {"prune_summary": report.plan.summary(),
                                   "channels_pruned": report.plan.channels_pruned, "reconstructed": True,
                                   "allocation": {**allocation.to_dict(), "verified": checked}, "tries": tries})

    def label(self) -> str:
        goal = f"-{self.target:.0%} latency" if self.target is not None else f"drop<={self.max_drop:.1%}"
        return f"prune {goal} ({'+'.join(self.runtimes)})"

    def describe(self) -> str:
        goal = f"{self.target:.0%} less latency" if self.target is not None else f"at most {self.max_drop:.1%} drop"
        return f"latency-driven channel pruning ({goal})"
