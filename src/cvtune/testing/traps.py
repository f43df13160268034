"""Deliberate mistakes for end-to-end tests of the search's guards: techniques that build a plausible but wrong model,
registered like any user's pass (importing this module registers them; a build child imports it by name).

`MiscalibratedInt8` is static int8 whose activation ranges come from the calibration images preprocessed with
another spec than the task's (issue 11's trap: ImageNet-normalized tensors for a model that takes 0-1 pixels). Its
output cosine against the original looks fine on its own wrong inputs; only the task's metric under the real
preprocessing shows the damage, and the search must never export it as within budget. It differs from
`Int8KeepTail` (the same int8, calibrated right) in its calibration alone, so a test can tell the two verdicts apart.

`Int8KeepTail` keeps a detector's decoding tail (every node after the last Conv) in float: YOLOv8 concatenates boxes
in pixels (0-320) with class scores (0-1) before its output, and one int8 scale for both rounds every score to 0 or
1.25 (nudenet 320n: det_f1 0.57 with Int8Static as it is, measured here).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import onnx

from ..data.calibration import CalibrationNeed, CalibrationSet, ImageTensors
from ..passes import BuildContext, Int8Static, PassOutput
from ..preprocess import parse_preprocess

__all__ = ["Int8KeepTail", "MiscalibratedInt8", "float_tail"]

IMAGENET_GUESS = "stretch,scale=1/255,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,rgb"


def float_tail(model: str | Path | onnx.ModelProto) -> tuple[str, ...]:
    """Names of the nodes between the last Conv and the outputs (walking back from every output to a Conv)."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    producer = {out: node for node in proto.graph.node for out in node.output}
    tail: set[str] = set()
    todo = [o.name for o in proto.graph.output]
    while todo:
        node = producer.get(todo.pop())
        if node is not None and node.op_type != "Conv" and node.name not in tail:
            tail.add(node.name)
            todo.extend(node.input)
    return tuple(sorted(tail))


@dataclass(frozen=True)
class Int8KeepTail(Int8Static):
    """Int8Static with `float_tail` kept in float (names taken from the graph the quantizer prepares)."""

    name: ClassVar[str] = "int8_keep_tail"
    aliases: ClassVar[dict[str, dict[str, Any]]] = {}

    def apply(self, model: onnx.ModelProto, ctx: BuildContext, plan: Any = None) -> PassOutput:
        from ..model import load_onnx, save_onnx
        from ..quantize import quantize
        from ..quantize.static import prepare_float

        source, output = ctx.workdir / "pre_quant.onnx", ctx.workdir / "quant.onnx"
        save_onnx(model, source)
        config = self.config()
        tail = float_tail(prepare_float(source, config, ctx.workdir).path)
        result = quantize(source, output, replace(config, exclude=tail), calibration=ctx.calibrate(self.calibration()),
                          probe=False)
        return PassOutput(load_onnx(output), {"quantized_nodes": result.quantized_nodes, "float_tail": len(tail)})

    def label(self) -> str:
        return f"{super().label()} float tail"


@dataclass(frozen=True)
class MiscalibratedInt8(Int8KeepTail):
    """Int8Static calibrated on the same images made into tensors by `preprocess` (a --preprocess spec) instead of
    the task's own preprocessing, at the same tensor size and layout."""

    name: ClassVar[str] = "int8_miscalibrated"
    aliases: ClassVar[dict[str, dict[str, Any]]] = {}
    preprocess: str = IMAGENET_GUESS

    def apply(self, model: onnx.ModelProto, ctx: BuildContext, plan: Any = None) -> PassOutput:
        return super().apply(model, replace(ctx, calibration=lambda need: self.wrong(ctx.calibrate(need))), plan)

    def wrong(self, right: CalibrationSet) -> CalibrationSet:
        """`right`'s images through `preprocess`, each at the size (and in the layout) the task made its tensor."""
        spec = parse_preprocess(self.preprocess)
        stream = right.stream
        if not isinstance(stream, ImageTensors):
            raise TypeError("MiscalibratedInt8 needs image calibration (an ImageTensors stream)")
        layout = right.preprocessing.layout if right.preprocessing is not None else spec.layout
        spec = replace(spec, layout=layout)

        def preprocess(image):
            tensor = stream.preprocess(image)
            size = tuple(tensor.shape[1:3] if layout == "NHWC" else tensor.shape[2:4])
            return spec.to_tensor(image, input_size=size)[0]

        need = right.need or CalibrationNeed(len(right))
        return replace(right, stream=ImageTensors(stream.paths, preprocess), need=need, preprocessing=spec)

    def label(self) -> str:
        return f"{super().label()} miscalibrated"
