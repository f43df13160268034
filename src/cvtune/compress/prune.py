"""One entry point for every pruning method: `prune_file(model, output, config)` with a SparsifyConfig
(unstructured: magnitude/random/threshold) or a ChannelConfig (structured: plan, cut, reconstruct)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..data.calibration import CalibrationNeed, CalibrationSet
from ..errors import ModelError, UsageError
from ..files import refuse_overwrite_of_input
from ..model import load_onnx, save_onnx_with_report
from .channels import IMPORTANCE, cut_channels, plan_channels, probe_shape
from .plan import PruningPlan
from .reconstruct import ReconstructionReport, reconstruct
from .sparsify import SparsifyConfig, SparsityReport, deflate_size, report_path, sparsify_file

__all__ = ["ChannelConfig", "ChannelReport", "prune_channels", "prune_file", "PRUNE_METHODS"]

PRUNE_METHODS = ("magnitude", "random", "threshold", "channel")


@dataclass(frozen=True)
class ChannelConfig:
    """Structured pruning settings: remove `ratio` of every prunable group's channels (or per-group `ratios`),
    ranked by `importance`, then refit the consumers by least squares unless `reconstruct` is False."""

    ratio: float | None = None
    ratios: tuple[tuple[str, float], ...] = ()
    importance: str = "l1"
    reconstruct: bool = True
    skip: tuple[str, ...] = ()
    # Leave the last N weighted layers before the outputs dense: the layers nearest the output are the most
    # sensitive (PP-OCRv4 det: halving either DB-head group cost 5-6% hmean even after reconstruction).
    protect_tail: int = 0
    round_to: int = 1
    ridge: float = 1e-2
    max_rows: int = 8192
    seed: int = 0

    # What reconstruction and activation importance need by default (--calib-size overrides the count): the
    # least-squares fits are small, so a few images at the model's own resolution are plenty.
    calibration_need = CalibrationNeed(count=16)

    def __post_init__(self) -> None:
        if self.importance not in IMPORTANCE:
            raise UsageError(f"unknown importance '{self.importance}'; choose one of: {', '.join(IMPORTANCE)}")
        if self.ratio is None and not self.ratios:
            raise UsageError("channel pruning needs a ratio in (0, 1), e.g. 0.3")
        for value in [self.ratio, *(r for _, r in self.ratios)]:
            if value is not None and not 0 < value < 1:
                raise UsageError(f"the pruning ratio must be in (0, 1): the fraction of each group's channels to cut "
                                 f"(got {value})")
        if self.ridge < 0 or self.max_rows < 1:
            raise UsageError("ridge must be >= 0 and max_rows >= 1")
        if self.protect_tail < 0:
            raise UsageError(f"protect_tail must be >= 0 (got {self.protect_tail})")

    @property
    def needs_calibration(self) -> bool:
        return self.reconstruct or self.importance == "activation"


@dataclass(frozen=True)
class ChannelReport:
    plan: PruningPlan
    reconstruction: ReconstructionReport | None
    file_bytes: int
    original_file_bytes: int
    calibration_images: int = 0
    calibration: dict[str, Any] | None = None  # CalibrationSet.to_dict(): where the images came from

    def to_dict(self) -> dict[str, Any]:
        return {"method": "channel", "plan": self.plan.to_dict(), "summary": self.plan.summary(),
                "reconstruction": self.reconstruction.to_dict() if self.reconstruction else None,
                "file_bytes": self.file_bytes, "original_file_bytes": self.original_file_bytes,
                "compressed_bytes": None, "calibration_images": self.calibration_images,
                "calibration": self.calibration}


def prune_channels(model: onnx.ModelProto | str | os.PathLike[str], config: ChannelConfig, *,
                   calib: Sequence[np.ndarray] | None = None, input_shape: tuple[int, ...] | None = None,
                   on_wave: Callable[[int, int], None] | None = None) -> tuple[onnx.ModelProto, ChannelReport]:
    """Plan, cut and (with calibration tensors) reconstruct. Returns the pruned model and its report."""
    if config.needs_calibration and not calib:
        what = "reconstruction" if config.reconstruct else "activation importance"
        raise UsageError(f"{what} needs calibration images: give calibration images"
                         + (" (or turn reconstruction off for a plain cut)" if config.reconstruct else ""))
    original = model if isinstance(model, onnx.ModelProto) else load_onnx(model)
    shape = input_shape or (tuple(calib[0].shape) if calib else probe_shape(model))
    plan = plan_channels(original, ratio=config.ratio,
                         ratios=dict(config.ratios), importance=config.importance, calib=calib,
                         input_shape=shape, skip=config.skip, protect_tail=config.protect_tail,
                         round_to=config.round_to)
    if plan.channels_pruned == 0:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in plan.skipped[:3]) or "no Conv layer opens a group"
        raise ModelError(f"no channel group can be pruned safely ({reasons}); print the plan to see every group")
    pruned = cut_channels(original, plan)
    rec = None
    if config.reconstruct:
        pruned, rec = reconstruct(original, pruned, plan, calib, ridge=config.ridge, max_rows=config.max_rows,
                                  seed=config.seed, on_wave=on_wave)
    data = pruned.SerializeToString()
    original_size = Path(model).stat().st_size if not isinstance(model, onnx.ModelProto) else original.ByteSize()
    return pruned, ChannelReport(plan, rec, len(data), original_size, len(calib) if calib else 0)


def prune_file(model_path: str | os.PathLike[str], output: str | os.PathLike[str] | None,
               config: SparsifyConfig | ChannelConfig, *, calibration: CalibrationSet | None = None,
               input_shape: tuple[int, ...] | None = None,
               on_wave: Callable[[int, int], None] | None = None) -> SparsityReport | ChannelReport:
    """Prune a model file. With `output`, write the model and OUT.prune.json atomically; None is a dry run
    (channel: plan only, nothing cut or written). Channel pruning reads `calibration` (see
    cvtune.data.calibration.calibration_set) for reconstruction and activation importance."""
    if output is not None:
        refuse_overwrite_of_input(output, model_path)
        refuse_overwrite_of_input(report_path(output), model_path)
    if isinstance(config, SparsifyConfig):
        return sparsify_file(model_path, output, config)
    if not isinstance(config, ChannelConfig):
        raise UsageError(f"unknown pruning config {type(config).__name__}; use SparsifyConfig or ChannelConfig")
    calib = calibration.tensors() if calibration is not None else None  # least squares revisits every tensor
    provenance = calibration.to_dict() if calibration is not None else None
    if output is None:  # --plan: score and show, cut nothing
        if config.importance == "activation" and not calib:
            raise UsageError("activation importance needs calibration images: give calibration images")
        plan = plan_channels(model_path, ratio=config.ratio, ratios=dict(config.ratios),
                             importance=config.importance, calib=calib,
                             input_shape=input_shape or (tuple(calib[0].shape) if calib else None),
                             skip=config.skip, protect_tail=config.protect_tail, round_to=config.round_to)
        size = Path(model_path).stat().st_size
        return ChannelReport(plan, None, size, size, len(calib) if calib else 0, provenance)
    proto, report = prune_channels(model_path, config, calib=calib, input_shape=input_shape, on_wave=on_wave)
    written: list[ChannelReport] = []

    def sidecar(data: bytes) -> dict[str, Any]:
        written.append(ChannelReport(report.plan, report.reconstruction, len(data), report.original_file_bytes,
                                     report.calibration_images, provenance))
        return {"input": str(model_path), "output": str(output), **written[0].to_dict(),
                "compressed_bytes": deflate_size(data)}

    save_onnx_with_report(proto, output, report_path(output), sidecar, schema="prune")  # one commit
    return written[0]
