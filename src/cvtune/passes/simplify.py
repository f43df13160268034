"""Simplification with onnxslim; with a fixed input size, dynamic dims are made static first (OpenCV's classic
engine needs that for models with Shape ops, and static shapes let runtimes fold more)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import onnx

from .base import BuildContext, Pass, PassOutput


@dataclass(frozen=True)
class Simplify(Pass):
    name: ClassVar[str] = "simplify"
    slot: ClassVar[str] = "simplify"
    order: ClassVar[int] = 30
    off_label: ClassVar[str] = "not simplified"
    fixes_shape: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ("onnxslim",)
    aliases: ClassVar[dict] = {"slim": {}}

    def apply(self, model: onnx.ModelProto, ctx: BuildContext, plan: object = None) -> PassOutput:
        from ..prepare import make_static, simplify

        if ctx.static_size is not None:
            model = make_static(model, ctx.input_shape)
            return PassOutput(simplify(model, ctx.input_shape), {"static_shape": list(ctx.input_shape)})
        return PassOutput(simplify(model, None))

    def label(self) -> str:
        return "slim"

    def describe(self) -> str:
        return "simplified (onnxslim)"
