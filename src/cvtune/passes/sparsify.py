"""Unstructured magnitude sparsity: zeros shrink the compressed file, not the latency of dense kernels, so the
search tries it only when the objective is size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import onnx

from ..errors import UsageError
from .base import BuildContext, Pass, PassOutput


@dataclass(frozen=True)
class Sparsify(Pass):
    name: ClassVar[str] = "sparsify"
    slot: ClassVar[str] = "sparsify"
    order: ClassVar[int] = 20
    off_label: ClassVar[str] = "dense weights"
    edits_weights: ClassVar[bool] = True
    objectives: ClassVar[tuple[str, ...]] = ("size",)
    aliases: ClassVar[dict] = {"sparse": {}}

    sparsity: float = 0.5
    scope: str = "layer"

    def __post_init__(self) -> None:
        if not 0 < self.sparsity < 1:
            raise UsageError(f"sparsity must be in (0, 1) (got {self.sparsity})")

    def apply(self, model: onnx.ModelProto, ctx: BuildContext, plan: Any = None) -> PassOutput:
        from ..compress.sparsify import SparsifyConfig, sparsify

        out, report = sparsify(model, SparsifyConfig(method="magnitude", sparsity=self.sparsity, scope=self.scope))
        return PassOutput(out, {"sparsity_achieved": report.zeros / max(report.weight_params, 1)})

    def label(self) -> str:
        return f"sparse {self.sparsity:g}" + ("" if self.scope == "layer" else f" {self.scope}")

    def describe(self) -> str:
        return f"{self.sparsity:.0%} sparsity"
