"""Apply a sequence of passes to a model, in build order, recording what each one did."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import onnx

from .base import BuildContext, Pass


def apply_passes(model: onnx.ModelProto, passes: Sequence[Pass], ctx: BuildContext
                 ) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Plan then apply each pass (sorted by its `order`); returns the model and {pass name: its facts}."""
    from ..model import constants_to_initializers

    info: dict[str, Any] = {}
    for p in sorted(passes, key=lambda p: p.order):
        started = time.perf_counter()
        if p.edits_weights:
            model = constants_to_initializers(model)
        plan = p.plan(model, ctx)
        out = p.apply(model, ctx, plan)
        model = out.model
        info[p.name] = {**out.info, "seconds": round(time.perf_counter() - started, 3)}
    return model, info
