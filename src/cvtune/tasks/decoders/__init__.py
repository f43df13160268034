"""Detection decoders registered by name: raw model outputs -> Detections (boxes xyxy in model-input pixels,
scores, class ids), then score threshold and class-aware NMS (base.select).

    decoder = make_decoder("yolov8")                      # or choose_decoder(facts) from the outputs' shapes
    found = decoder.decode(outputs, (640, 640), conf_thresh=0.25, iou_thresh=0.45)

`choose_decoder` picks the one decoder whose layout the output shapes (and the model's Ultralytics metadata) fit;
when none or several fit it raises an error listing the choices (--task-option decoder=NAME).
"""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path
from typing import Any

from ...errors import ModelError, UsageError
from .base import Decoder, Detections, OutputFacts, empty, select
from .boxes_scores import BoxesScoresDecoder
from .ssd import BlazefaceDecoder, SsdAnchorOptions, SsdDecoder, ssd_anchors
from .yolov5 import Yolov5Decoder
from .yolov8 import Yolov8Decoder
from .yolox import YoloxDecoder

__all__ = ["DECODERS", "ALIASES", "Decoder", "Detections", "OutputFacts", "SsdAnchorOptions", "choose_decoder",
           "decoder_option_names", "empty", "make_decoder", "model_facts", "select", "ssd_anchors"]

DECODERS: dict[str, type[Decoder]] = {cls.name: cls for cls in (
    Yolov8Decoder, Yolov5Decoder, YoloxDecoder, SsdDecoder, BlazefaceDecoder, BoxesScoresDecoder)}
ALIASES = {"yolo": "yolov8", "boxes": "boxes_scores"}  # the names cvtune used before the registry


def _choices() -> str:
    return "; ".join(f"{name}: {cls.summary}" for name, cls in DECODERS.items())


def make_decoder(name: str, **options: Any) -> Decoder:
    """The decoder registered as `name` (or an old alias) with its layout options; unknown names or options raise
    UsageError listing the valid ones."""
    name = ALIASES.get(name, name)
    if name not in DECODERS:
        raise UsageError(f"unknown detection decoder '{name}'; choose one of: {', '.join(DECODERS)}")
    return DECODERS[name].from_options(**options)


def decoder_option_names() -> set[str]:
    """Every option some decoder takes (tasks route these task options to the decoder)."""
    return {opt for cls in DECODERS.values() for opt in cls.option_names()}


def choose_decoder(facts: OutputFacts, *, where: str = "the model") -> str:
    """The name of the one decoder whose layout fits `facts`; else a ModelError listing every choice."""
    fitting = [name for name, cls in DECODERS.items() if cls.fits(facts)]
    if len(fitting) == 1:
        return fitting[0]
    shapes = ", ".join(str(s) for s in facts.shapes) or "none"
    why = f"several layouts fit ({', '.join(fitting)})" if fitting else "no known layout fits"
    raise ModelError(f"cannot tell how to decode the detections of {where} (output shapes {shapes}, input "
                     f"{facts.input_size[0]}x{facts.input_size[1]}): {why}; say which with the task option "
                     f"decoder=NAME, one of: {_choices()}")


def model_facts(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """What a model file says about its detections: Ultralytics metadata `task` and the class count from `names`
    (ONNX metadata_props; other formats and unreadable files say nothing). Cached per file version."""
    if path is None:
        return {}
    path = Path(path)
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return {}
    stat = path.stat()
    return dict(_read_facts(str(path.resolve()), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=32)
def _read_facts(path: str, mtime: int, size: int) -> tuple[tuple[str, Any], ...]:
    import onnx

    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - a file onnx cannot parse
        raise ModelError(f"cannot read {path} as ONNX: {str(exc).splitlines()[0][:200]}") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    facts: dict[str, Any] = {}
    if meta.get("task"):
        facts["ultralytics_task"] = meta["task"].strip()
    if meta.get("names"):
        try:
            names = ast.literal_eval(meta["names"])
        except (ValueError, SyntaxError):
            names = None
        if isinstance(names, dict | list):
            facts["num_classes"] = len(names)
            facts["class_names"] = tuple(names.values()) if isinstance(names, dict) else tuple(names)
    return tuple(facts.items())
