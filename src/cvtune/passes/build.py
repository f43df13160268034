"""Apply a sequence of passes to a model, in build order, recording what each one did. The built model keeps what
its source's file said (metadata such as Ultralytics' imgsz/names a pass may have dropped) and carries the
preprocessing it was built with (`stamp_preprocessing`), so a copy of it reads back as recognised, not guessed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import onnx

from .base import BuildContext, Pass

if TYPE_CHECKING:
    from ..preprocess import Preprocessing


def apply_passes(model: onnx.ModelProto, passes: Sequence[Pass], ctx: BuildContext, *,
                 preprocessing: Preprocessing | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Plan then apply each pass (sorted by its `order`); returns the model and {pass name: its facts}. The source's
    metadata entries come back where a pass dropped them; `preprocessing` (the spec the calibration used) is
    stamped into the result (a fixed-size build gets the size it was built for)."""
    from ..model import constants_to_initializers

    source_metadata = [(p.key, p.value) for p in model.metadata_props]
    info: dict[str, Any] = {}
    for p in sorted(passes, key=lambda p: p.order):
        started = time.perf_counter()
        if p.edits_weights:
            model = constants_to_initializers(model)
        plan = p.plan(model, ctx)
        out = p.apply(model, ctx, plan)
        model = out.model
        info[p.name] = {**out.info, "seconds": round(time.perf_counter() - started, 3)}
    keep_metadata(model, source_metadata)
    if preprocessing is not None:
        from ..preprocess import stamp_preprocessing

        stamp_preprocessing(model, built_preprocessing(preprocessing, ctx.static_size))
    return model, info


def keep_metadata(model: onnx.ModelProto, entries: Sequence[tuple[str, str]]) -> onnx.ModelProto:
    """Add back the (key, value) metadata entries `model` lost (the ones it still has are left as they are)."""
    present = {p.key for p in model.metadata_props}
    for key, value in entries:
        if key not in present:
            model.metadata_props.add(key=key, value=value)
    return model


def built_preprocessing(spec: Preprocessing, static_size: tuple[int, int] | None) -> Preprocessing:
    """The spec a built model carries: the source's, with the fixed size the build made static (a resized
    candidate of a fixed-size spec takes that size; keep_ratio specs keep each image's own size and stay)."""
    if static_size and spec.input_size and tuple(spec.input_size) != tuple(static_size):
        return replace(spec, input_size=(int(static_size[0]), int(static_size[1])))
    return spec
