"""Apply a sequence of passes to a model, in build order, recording what each one did; write the result. The built
model keeps what its source's file said (metadata such as Ultralytics' imgsz/names a pass may have dropped) and
carries the preprocessing it was built with (`stamp_preprocessing`), so a copy of it reads back as recognised."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from ..errors import UsageError
from .base import BuildContext, Pass

if TYPE_CHECKING:
    from ..preprocess import Preprocessing

ARTIFACT = "artifact"  # key in a pass's facts: the non-ONNX file it wrote (see Pass.output_suffix)


def output_suffix(passes: Sequence[Pass]) -> str:
    """The suffix of the file these passes build: the last pass's output_suffix (".onnx" without passes)."""
    ordered = sorted(passes, key=lambda p: p.order)
    return ordered[-1].output_suffix if ordered else ".onnx"


def check_order(passes: Sequence[Pass]) -> list[Pass]:
    """The passes in build order; UsageError when any pass would run after one whose output is not ONNX."""
    ordered = sorted(passes, key=lambda p: p.order)
    for i, p in enumerate(ordered[:-1]):
        if p.output_suffix != ".onnx":
            later = ", ".join(q.label() for q in ordered[i + 1:])
            raise UsageError(f"{p.label()} writes a {p.output_suffix} file that no other technique can read, so it "
                             f"must come last; drop {later} or {p.label()}")
    return ordered


def apply_passes(model: onnx.ModelProto, passes: Sequence[Pass], ctx: BuildContext, *,
                 preprocessing: Preprocessing | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Plan then apply each pass (sorted by its `order`); returns the model and {pass name: its facts}. The source's
    metadata entries come back where a pass dropped them; `preprocessing` (the spec the calibration used) is
    stamped into the result (a fixed-size build gets the size it was built for). A pass that writes a non-ONNX
    file (Pass.output_suffix) must be last; its facts hold the file under "artifact"."""
    from ..model import constants_to_initializers

    source_metadata = [(p.key, p.value) for p in model.metadata_props]
    info: dict[str, Any] = {}
    for p in check_order(passes):
        started = time.perf_counter()
        if p.edits_weights:
            model = constants_to_initializers(model)
        plan = p.plan(model, ctx)
        out = p.apply(model, ctx, plan)
        model = out.model
        info[p.name] = {**out.info, "seconds": round(time.perf_counter() - started, 3)}
        if p.output_suffix != ".onnx":
            if out.artifact is None or not Path(out.artifact).is_file():
                raise UsageError(f"technique {p.name} declares {p.output_suffix} output but wrote no file")
            info[p.name][ARTIFACT] = str(out.artifact)
    keep_metadata(model, source_metadata)
    if preprocessing is not None:
        from ..preprocess import stamp_preprocessing

        stamp_preprocessing(model, built_preprocessing(preprocessing, ctx.static_size))
    return model, info


def save_built(model: onnx.ModelProto, info: dict[str, Any], output: str | Path) -> Path:
    """Write what apply_passes built to `output`, atomically: the ONNX model, or the non-ONNX file the last pass
    wrote (an OpenVINO IR's .xml and .bin together: files.copy_model). `output`'s suffix must match."""
    from ..files import copy_model
    from ..model import save_onnx

    output = Path(output)
    artifact = next((Path(v[ARTIFACT]) for v in info.values() if isinstance(v, dict) and ARTIFACT in v), None)
    if artifact is None:
        if output.suffix.lower() != ".onnx":
            raise UsageError(f"the built model is ONNX; give an output ending in .onnx (got {output.name})")
        save_onnx(model, output)
        return output
    if output.suffix.lower() != artifact.suffix.lower():
        raise UsageError(f"the built model is a {artifact.suffix} file; give an output ending in {artifact.suffix} "
                         f"(got {output.name})")
    return copy_model(artifact, output)


def build_file(model: onnx.ModelProto, passes: Sequence[Pass], ctx: BuildContext, output: str | Path, *,
               preprocessing: Preprocessing | None = None) -> dict[str, Any]:
    """apply_passes, then save_built to `output` (whose suffix is output_suffix(passes)). Returns the facts."""
    model, info = apply_passes(model, passes, ctx, preprocessing=preprocessing)
    save_built(model, info, output)
    return info


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
