"""Preprocessing with a provenance: how an image becomes a model's input tensor, and who said so.

- One spec, `Preprocessing`: size (HxW, or any size rounded to a multiple), resize mode (stretch, letterbox with a
  pad value, keep_ratio with a longest-side limit, center_crop after resizing the short side), scale, mean, std,
  channel order (rgb/bgr/gray), layout (NCHW/NHWC), dtype (float32, uint8 raw pixels, int8 with the input's
  quantization) and `source`: who said so (user, zoo, metadata:ultralytics, metadata:cvtune, tflite, guessed).
- One method, `Preprocessing.to_tensor(image)`: a BGR uint8 image -> (the input tensor, the `Geometry` that maps
  boxes and masks back to the image).
- One grammar: `parse_preprocess("letterbox=640x640,pad=114,scale=1/255,rgb")`, and `spec.to_string()` back.
- Recognizers (`RECOGNIZERS`) read what a model file says, never its name; when none does, `guess_preprocessing`
  guesses and says so (source "guessed"). `resolve_preprocessing` applies the order: user, recognized, guess.

    spec = resolve_preprocessing("320n.onnx")          # letterbox 320x320, pad 114, x/255, RGB: Ultralytics metadata
    tensor, geometry = spec.to_tensor(cv2.imread("street.jpg"))
    boxes = geometry.boxes_to_image(boxes_in_input_pixels)
"""

from __future__ import annotations

import ast
import functools
import json
import math
import os
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, UsageError

__all__ = ["ACCEPT_GUESS", "CHANNEL_ORDERS", "DTYPES", "GUESSED", "LAYOUTS", "METADATA_KEY", "RECOGNIZERS",
           "RESIZE_MODES", "SOURCES", "Geometry", "GuessedPreprocessing", "Preprocessing", "guess_preprocessing",
           "guess_refusal", "guess_warning", "load_preprocess", "model_preprocessing", "parse_preprocess",
           "recognize_preprocessing", "resolve_preprocessing", "stamp_preprocessing"]

RESIZE_MODES = ("stretch", "letterbox", "keep_ratio", "center_crop")
CHANNEL_ORDERS = ("rgb", "bgr", "gray")
LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "uint8", "int8")
GUESSED = "guessed"
SOURCES = ("user", "zoo", "metadata:ultralytics", "metadata:cvtune", "tflite", GUESSED)
SOURCE_TEXT = {
    "user": "given by the user",
    "zoo": "the cvtune zoo's entry for this model",
    "metadata:ultralytics": "the model's Ultralytics metadata",
    "metadata:cvtune": "the preprocessing cvtune stamped into the model",
    "tflite": "the TFLite file's input tensor (type, quantization, metadata)",
    GUESSED: "GUESSED: nothing in the model file says",
    "": "unknown",
}
ACCEPT_GUESS = "guess"  # `--preprocess guess`: take cvtune's guess knowingly
METADATA_KEY = "cvtune.preprocess"  # ONNX metadata_props entry cvtune writes (stamp_preprocessing)
CENTER_CROP_FRACTION = 0.875  # center_crop without resize=: the short side goes to crop / 0.875 (ImageNet style)
EXAMPLE = "letterbox=640x640,pad=114,scale=1/255,rgb"
IMAGENET = {"scale": 1 / 255, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


# ---------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """Where an image landed in the input tensor: input = image * scale + offset, per axis. Maps boxes, points
    and masks from input pixels back to the original image (and forward, for labels)."""

    image_size: tuple[int, int]  # (h, w) of the original image
    input_size: tuple[int, int]  # (H, W) of the tensor
    scale: tuple[float, float]  # (sx, sy): input pixels per image pixel
    offset: tuple[float, float] = (0.0, 0.0)  # (ox, oy): letterbox padding (+) or center-crop margin (-)

    def points_to_image(self, points: np.ndarray) -> np.ndarray:
        """(n, 2) x, y in input pixels -> image pixels (not clipped)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return (pts - np.asarray(self.offset)) / np.asarray(self.scale)

    def points_to_input(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return pts * np.asarray(self.scale) + np.asarray(self.offset)

    def boxes_to_image(self, boxes: np.ndarray, *, clip: bool = True) -> np.ndarray:
        """(n, 4) x1, y1, x2, y2 in input pixels -> image pixels, clipped to the image unless clip=False."""
        out = self.points_to_image(np.asarray(boxes, dtype=np.float64).reshape(-1, 2)).reshape(-1, 4)
        if clip:
            h, w = self.image_size
            out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w)
            out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h)
        return out

    def boxes_to_input(self, boxes: np.ndarray) -> np.ndarray:
        return self.points_to_input(np.asarray(boxes, dtype=np.float64).reshape(-1, 2)).reshape(-1, 4)

    def mask_to_image(self, mask: np.ndarray, *, nearest: bool = False) -> np.ndarray:
        """An (H, W[, C]) map over the input -> (h, w[, C]) over the image (letterbox padding dropped, a center
        crop's lost margin filled with 0). `nearest` for label maps, linear for probabilities."""
        import cv2

        (sx, sy), (ox, oy) = self.scale, self.offset
        # pixel centres, as cv2.resize maps them: u + 0.5 = (x + 0.5) * s + o
        cx, cy = ox + 0.5 * sx - 0.5, oy + 0.5 * sy - 0.5
        matrix = np.float64([[1 / sx, 0, -cx / sx], [0, 1 / sy, -cy / sy]])  # input -> image
        h, w = self.image_size
        flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)
        mask = np.ascontiguousarray(mask)
        # Edges replicate, as cv2.resize does (an image pixel whose centre lies in the input's border half-pixel must
        # not be blended with 0); only image pixels whose centre falls outside the input (a center crop's lost
        # margin) get 0.
        out = cv2.warpAffine(mask, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        out = out.reshape(h, w, *mask.shape[2:])
        in_h, in_w = mask.shape[:2]
        inside_x = (0 <= (np.arange(w) + 0.5) * sx + ox) & ((np.arange(w) + 0.5) * sx + ox < in_w)
        inside_y = (0 <= (np.arange(h) + 0.5) * sy + oy) & ((np.arange(h) + 0.5) * sy + oy < in_h)
        if not (inside_x.all() and inside_y.all()):
            out[~inside_y] = 0
            out[:, ~inside_x] = 0
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"image_size": list(self.image_size), "input_size": list(self.input_size), "scale": list(self.scale),
                "offset": list(self.offset)}


# ---------------------------------------------------------------------------------------------- the spec


def _bad(what: str) -> UsageError:
    return UsageError(f"{what}; e.g. --preprocess \"{EXAMPLE}\"")


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """How images become the model's input tensor, and who said so (`source`, not part of equality). Build from the
    grammar with `parse_preprocess`, from a model with `resolve_preprocessing`; `to_tensor` applies it."""

    input_size: tuple[int, int] | None = None  # (height, width); None = any (the image's, see resize)
    size_multiple: int = 1  # sizes that are not fixed are rounded to multiples of this
    resize: str = "stretch"  # stretch | letterbox | keep_ratio | center_crop
    pad: float = 114.0  # letterbox: the border's gray value (pixels, before normalization)
    limit_side: int | None = None  # keep_ratio: longest side at most this (downscale only); None = as is
    resize_short: int | None = None  # center_crop: short side resized to this first; None = crop / 0.875
    scale: float = 1 / 255  # x = pixel * scale, then (x - mean) / std
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    channels: str = "bgr"  # rgb | bgr (OpenCV's order) | gray
    layout: str = "NCHW"  # NCHW | NHWC
    dtype: str = "float32"  # float32 | uint8 (raw 0-255 pixels) | int8 (quantized: round(x / quant_scale + zp))
    quant_scale: float | None = None  # int8 inputs only
    zero_point: int = 0  # int8 inputs only
    source: str = field(default="", compare=False)
    rgb: InitVar[bool | None] = None  # older spelling of channels="rgb"/"bgr", still accepted

    def __post_init__(self, rgb: bool | None) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if rgb is not None:
            put("channels", "rgb" if rgb else "bgr")
        put("resize", str(self.resize).lower())
        put("channels", str(self.channels).lower())
        put("layout", str(self.layout).upper())
        put("dtype", str(self.dtype).lower())
        for name, value, valid in (("resize", self.resize, RESIZE_MODES), ("channels", self.channels, CHANNEL_ORDERS),
                                   ("layout", self.layout, LAYOUTS), ("dtype", self.dtype, DTYPES)):
            if value not in valid:
                raise _bad(f"unknown preprocessing {name} '{value}': choose one of {', '.join(valid)}")
        if self.input_size is not None:
            size = tuple(self.input_size)
            if len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
                raise _bad(f"preprocessing size must be HEIGHTxWIDTH in positive pixels (got {self.input_size!r})")
            put("input_size", (int(size[0]), int(size[1])))
        for name in ("size_multiple", "limit_side", "resize_short"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise _bad(f"preprocessing {name} must be a whole number >= 1 (got {value!r})")
            put(name, None if value is None else int(value))
        if self.limit_side is not None and self.resize != "keep_ratio":
            raise _bad(f"a longest-side limit is for keep_ratio=N, not {self.resize}")
        if self.resize_short is not None and self.resize != "center_crop":
            raise _bad(f"resize=N (the short side before the crop) is for center_crop, not {self.resize}")
        if self.resize == "center_crop" and self.input_size is None:
            raise _bad("center_crop needs the crop size, e.g. center_crop=224,resize=256")
        if self.resize == "keep_ratio" and self.input_size is not None:
            raise _bad("keep_ratio keeps the image's aspect with no fixed size: give keep_ratio=N (longest side), "
                       "or letterbox=HxW for a fixed size")
        put("pad", _finite(self.pad, "pad"))
        if not 0 <= self.pad <= 255:
            raise _bad(f"letterbox pad must be a pixel value in [0, 255] (got {self.pad:g})")
        if self.pad != 114 and self.resize != "letterbox":
            raise _bad("pad=V is the letterbox border value: add letterbox=HxW, or drop pad")
        n = 1 if self.channels == "gray" else 3
        put("scale", _finite(self.scale, "scale"))
        put("mean", _per_channel(self.mean, n, "mean"))
        put("std", _per_channel(self.std, n, "std"))
        if self.scale <= 0 or any(s == 0 for s in self.std):
            raise _bad(f"scale and std must be non-zero and scale positive (got scale={self.scale:g}, "
                       f"std={list(self.std)})")
        if self.dtype == "uint8":
            if (self.scale, set(self.mean), set(self.std)) == (1 / 255, {0.0}, {1.0}):
                put("scale", 1.0)  # the default scale: a uint8 input takes the pixels as they are
            if (self.scale, set(self.mean), set(self.std)) != (1.0, {0.0}, {1.0}):
                raise _bad("a uint8 input takes raw 0-255 pixels (the model normalizes inside): drop "
                           "scale/mean/std")
        if self.dtype == "int8":
            if self.quant_scale is None:
                raise _bad("an int8 input needs its quantization: quant_scale=S,zero_point=Z (tensor = round(x / S "
                           "+ Z), with x the normalized value)")
            put("quant_scale", _finite(self.quant_scale, "quant_scale"))
            if self.quant_scale <= 0 or not _is_int(self.zero_point) or not -128 <= self.zero_point <= 127:
                raise _bad(f"int8 quantization needs quant_scale > 0 and an integer zero_point in [-128, 127] "
                           f"(got {self.quant_scale:g}, {self.zero_point!r})")
            put("zero_point", int(self.zero_point))
        elif self.quant_scale is not None or self.zero_point != 0:
            raise _bad("quant_scale/zero_point describe int8 inputs: add int8, or drop them")
        if self.source not in SOURCES and self.source != "":
            raise UsageError(f"unknown preprocessing source '{self.source}'; one of: {', '.join(SOURCES)}")

    # ---- facts ------------------------------------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        return 1 if self.channels == "gray" else 3

    @property
    def guessed(self) -> bool:
        return self.source == GUESSED

    def with_source(self, source: str) -> Preprocessing:
        return replace(self, source=source)

    def for_task(self, resize: str | None = None, input_size: tuple[int, int] | None = None, *,
                 default_size: tuple[int, int] | None = None) -> Preprocessing:
        """This spec as a task feeds it, with the task's options translated into it (detect's letterbox=False ->
        resize="stretch", a task's or the search's input_size), so every task, calibration and fidelity comparer
        makes its tensors with `to_tensor` alone. `resize` None keeps the spec's mode; the size is `input_size`,
        else the spec's, else `default_size`, except for keep_ratio, which keeps each image's own size (asked for
        a fixed size, it letterboxes into it). A letterbox keeps this spec's pad (114 coming from another mode);
        a mode changed by an option counts as the user's."""
        mode = resize or self.resize
        if mode not in RESIZE_MODES:
            raise UsageError(f"unknown resize mode '{mode}'; choose one of: {', '.join(RESIZE_MODES)}")
        if mode == "keep_ratio" and input_size:
            mode = "letterbox"
        size = None if mode == "keep_ratio" else tuple(input_size or self.input_size or default_size or ()) or None
        if mode == self.resize and size == self.input_size:
            return self
        changes: dict[str, Any] = {"resize": mode, "input_size": size}
        if mode != self.resize:
            changes.update(pad=self.pad if mode == "letterbox" else 114.0, limit_side=None, resize_short=None,
                           source="user")
        return replace(self, **changes)

    def target_size(self, height: int, width: int, input_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """The (H, W) the tensor gets for an image of height x width (`input_size` overrides a fixed size)."""
        size = tuple(input_size) if input_size else self.input_size
        if size:
            return int(size[0]), int(size[1])
        if self.resize == "letterbox":
            raise UsageError("letterbox needs a size (letterbox=640x640) and the model's input has none fixed")
        ratio = 1.0
        if self.limit_side and max(height, width) > self.limit_side:
            ratio = self.limit_side / max(height, width)
        m = self.size_multiple
        return (max(int(round(int(height * ratio) / m) * m), m), max(int(round(int(width * ratio) / m) * m), m))

    # ---- applying it ------------------------------------------------------------------------------------
    def resize_image(self, image: np.ndarray, *, input_size: tuple[int, int] | None = None
                     ) -> tuple[np.ndarray, Geometry]:
        """The image resized (and padded or cropped) the way the model expects: (H, W, C) uint8, and its Geometry."""
        import cv2

        h, w = image.shape[:2]
        height, width = self.target_size(h, w, input_size)
        mode = self.resize if (self.input_size or input_size) or self.resize == "keep_ratio" else "stretch"
        if mode == "letterbox":
            ratio = min(height / h, width / w)
            new_w, new_h = round(w * ratio), round(h * ratio)
            resized = cv2.resize(image, (new_w, new_h)) if (new_w, new_h) != (w, h) else image
            top, left = int(round((height - new_h) / 2 - 0.1)), int(round((width - new_w) / 2 - 0.1))
            value = (self.pad,) * (image.shape[2] if image.ndim == 3 else 1)
            out = cv2.copyMakeBorder(resized, top, height - new_h - top, left, width - new_w - left,
                                     cv2.BORDER_CONSTANT, value=value)
            return out, Geometry((h, w), (height, width), (ratio, ratio), (float(left), float(top)))
        if mode == "center_crop":
            short = self.resize_short or round(max(height, width) / CENTER_CROP_FRACTION)
            ratio = max(short / min(h, w), height / h, width / w)
            new_w, new_h = max(width, round(w * ratio)), max(height, round(h * ratio))
            resized = cv2.resize(image, (new_w, new_h))
            top, left = (new_h - height) // 2, (new_w - width) // 2
            out = resized[top:top + height, left:left + width]
            return out, Geometry((h, w), (height, width), (new_w / w, new_h / h), (-float(left), -float(top)))
        out = cv2.resize(image, (width, height)) if (height, width) != (h, w) else image
        return out, Geometry((h, w), (height, width), (width / w, height / h))

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """An already resized BGR uint8 (H, W, 3) image -> the (1, C, H, W) or (1, H, W, C) tensor: channel
        order, then x * scale, (x - mean) / std, then the dtype (float32, raw uint8, or quantized int8)."""
        import cv2

        if image.ndim == 2:
            image = image[..., None]
        if self.channels == "gray":
            pixels = image if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[..., None]
        else:
            pixels = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.shape[2] == 1 else image
            pixels = pixels[..., ::-1] if self.channels == "rgb" else pixels
        if self.dtype == "uint8":
            x = np.asarray(pixels, dtype=np.uint8)
        else:
            x = pixels.astype(np.float32) * np.float32(self.scale)
            x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
            if self.dtype == "int8":
                q = np.round(x / np.float32(self.quant_scale)) + self.zero_point
                x = np.clip(q, -128, 127).astype(np.int8)
        if self.layout == "NHWC":
            return np.ascontiguousarray(x[None])
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def to_tensor(self, image: np.ndarray, *, input_size: tuple[int, int] | None = None
                  ) -> tuple[np.ndarray, Geometry]:
        """A BGR uint8 image -> (the model's input tensor with a batch dim of 1, the Geometry to map results
        back). `input_size` (H, W) overrides the spec's size (the search's resolution scales)."""
        resized, geometry = self.resize_image(image, input_size=input_size)
        return self.normalize(resized), geometry

    # ---- text and JSON ----------------------------------------------------------------------------------
    def to_string(self) -> str:
        """The spec in the --preprocess grammar; parse_preprocess(spec.to_string()) == spec."""
        size = f"{self.input_size[0]}x{self.input_size[1]}" if self.input_size else ""
        if self.resize == "keep_ratio":
            parts = [f"keep_ratio={self.limit_side}" if self.limit_side else "keep_ratio"]
        else:
            parts = [f"{self.resize}={size}" if size else self.resize]
        if self.resize == "letterbox":
            parts.append(f"pad={_num(self.pad)}")
        if self.resize_short is not None:
            parts.append(f"resize={self.resize_short}")
        if self.size_multiple != 1:
            parts.append(f"multiple={self.size_multiple}")
        if self.dtype != "uint8":
            parts.append(f"scale={_num(self.scale, fraction=True)}")
            if any(self.mean):
                parts.append(f"mean={_nums(self.mean)}")
            if any(s != 1 for s in self.std):
                parts.append(f"std={_nums(self.std)}")
        parts.append(self.channels)
        if self.layout != "NCHW":
            parts.append(self.layout.lower())
        if self.dtype != "float32":
            parts.append(self.dtype)
        if self.dtype == "int8":
            parts += [f"quant_scale={_num(self.quant_scale, fraction=True)}", f"zero_point={self.zero_point}"]
        return ",".join(parts)

    def describe(self) -> str:
        """One line for people: what is done to an image, and where that came from."""
        size = f"{self.input_size[0]}x{self.input_size[1]}" if self.input_size else None
        if self.resize == "letterbox":
            what = f"letterbox to {size or 'the model size'} (pad {_num(self.pad)})"
        elif self.resize == "center_crop":
            what = f"short side to {self.resize_short or 'crop/0.875'}, center crop {size}"
        elif self.resize == "keep_ratio":
            what = f"keep aspect, longest side <= {self.limit_side}" if self.limit_side else "keep the image size"
        else:
            what = f"stretch to {size}" if size else "the image's own size"
        if self.size_multiple > 1 and not size:
            what += f" (multiple of {self.size_multiple})"
        if self.dtype == "uint8":
            values = "raw 0-255 pixels"
        else:
            values = "x" if self.scale == 1 else f"x*{_num(self.scale, fraction=True)}".replace("*1/", "/")
            if any(self.mean):
                values = f"({values} - {_nums(self.mean)})"
            if any(s != 1 for s in self.std):
                values = f"{values} / {_nums(self.std)}"
            if self.dtype == "int8":
                values += f", int8 (scale {_num(self.quant_scale, fraction=True)}, zero point {self.zero_point})"
        return (f"{what}, {values}, {self.channels.upper()}, {self.layout} "
                f"[{self.source or 'unknown'}: {SOURCE_TEXT.get(self.source, self.source)}]")

    def to_dict(self) -> dict[str, Any]:
        return {"input_size": list(self.input_size) if self.input_size else None,
                "size_multiple": self.size_multiple, "resize": self.resize, "pad": self.pad,
                "limit_side": self.limit_side, "resize_short": self.resize_short, "scale": self.scale,
                "mean": list(self.mean), "std": list(self.std), "channels": self.channels, "layout": self.layout,
                "dtype": self.dtype, "quant_scale": self.quant_scale, "zero_point": self.zero_point,
                "source": self.source, "spec": self.to_string()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """The inverse of to_dict; also reads the older form ({"rgb": true, ...}) and {"spec": "..."} alone."""
        if not isinstance(data, dict):
            raise UsageError(f"preprocessing must be a JSON object or a preprocessing spec string (got {data!r})")
        source = str(data.get("source") or "")
        keys = set(data) - {"source", "spec"}
        if not keys and data.get("spec"):
            return parse_preprocess(str(data["spec"]), source=source or "user")
        unknown = keys - {f for f in cls.__dataclass_fields__ if f != "source"} - {"rgb"}
        if unknown:
            raise UsageError(f"unknown preprocessing field(s) {sorted(unknown)}; valid: "
                             f"{', '.join(f for f in cls.__dataclass_fields__ if f != 'source')}")
        kwargs: dict[str, Any] = {k: data[k] for k in keys if data[k] is not None or k in ("input_size",)}
        if kwargs.get("input_size"):
            kwargs["input_size"] = tuple(kwargs["input_size"])
        for key in ("mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key]) if isinstance(kwargs[key], list | tuple) else (kwargs[key],)
        if "rgb" in kwargs:
            kwargs["rgb"] = bool(kwargs["rgb"])
        try:
            return cls(source=source, **kwargs)
        except TypeError as exc:
            raise UsageError(f"bad preprocessing object: {exc}") from None


# Preprocessing.rgb: True when channels are in RGB order (reads as before; `rgb=` is still accepted by __init__).
Preprocessing.rgb = property(lambda self: self.channels == "rgb")  # type: ignore[assignment,method-assign]


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) or (
        isinstance(value, float) and value.is_integer())


def _finite(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _bad(f"preprocessing {what} must be a number (got {value!r})") from None
    if not math.isfinite(number):
        raise _bad(f"preprocessing {what} must be a finite number (got {value!r})")
    return number


def _per_channel(values: Any, n: int, what: str) -> tuple[float, ...]:
    values = tuple(values) if isinstance(values, list | tuple | np.ndarray) else (values,)
    numbers = tuple(_finite(v, what) for v in values)
    if len(set(numbers)) == 1:  # one value for every channel (also the 3-value defaults on a gray input)
        return numbers[:1] * n
    if len(numbers) != n:
        raise _bad(f"preprocessing {what} needs 1 or {n} values for {n}-channel input (got {len(numbers)})")
    return numbers


def _num(value: float, *, fraction: bool = False) -> str:
    """Shortest text that reads back to exactly `value`; 1/n for exact reciprocals when `fraction`."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if fraction and 0 < value < 1:
        n = round(1 / value)
        if n >= 2 and 1 / n == value:
            return f"1/{n}"
    return repr(float(value))


def _nums(values: tuple[float, ...]) -> str:
    return _num(values[0]) if len(set(values)) == 1 else "/".join(_num(v) for v in values)


# ---------------------------------------------------------------------------------------------- the grammar

VALUE_KEYS = ("pad", "resize", "multiple", "scale", "mean", "std", "quant_scale", "zero_point")


def parse_preprocess(text: str, *, source: str = "user") -> Preprocessing:
    """'letterbox=640x640,pad=114,scale=1/255,rgb' -> Preprocessing. Items, comma-separated, any order:
    a size (stretch=HxW | letterbox=HxW | keep_ratio[=N] | center_crop=HxW, bare stretch/letterbox = the model's
    size), pad=V, resize=N (center_crop), multiple=N, scale=X or a/b, mean=a/b/c or a, std=..., rgb|bgr|gray,
    nchw|nhwc, float32|uint8|int8, quant_scale=S, zero_point=Z. Anything else is one UsageError naming the item."""
    if not isinstance(text, str) or not text.strip():
        raise _bad("empty preprocessing spec")
    kwargs: dict[str, Any] = {}
    seen: dict[str, str] = {}

    def once(group: str, item: str) -> None:
        if group in seen:
            raise _bad(f"bad preprocessing item '{item}': {group} already given by '{seen[group]}'")
        seen[group] = item

    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        key, sep, value = (p.strip() for p in item.partition("="))
        key = key.lower()
        try:
            if key in RESIZE_MODES:
                once("the resize mode", item)
                kwargs["resize"] = key
                if sep and key == "keep_ratio":
                    kwargs["limit_side"] = _int(value)
                elif sep:
                    kwargs["input_size"] = _size(value)
            elif key in CHANNEL_ORDERS and not sep:
                once("the channel order", item)
                kwargs["channels"] = key
            elif key.upper() in LAYOUTS and not sep:
                once("the layout", item)
                kwargs["layout"] = key.upper()
            elif key in DTYPES and not sep:
                once("the dtype", item)
                kwargs["dtype"] = key
            elif key in VALUE_KEYS and sep and value:
                once(key, item)
                if key in ("mean", "std"):
                    kwargs[key] = tuple(_number(v) for v in value.split("/"))
                elif key in ("scale", "quant_scale"):
                    kwargs[key] = _number(value, fraction=True)
                elif key == "pad":
                    kwargs["pad"] = _number(value)
                elif key == "zero_point":
                    kwargs["zero_point"] = _int(value, signed=True)
                else:
                    kwargs["resize_short" if key == "resize" else "size_multiple"] = _int(value)
            else:
                raise ValueError(_unknown_item(key, sep))
        except ValueError as exc:
            raise _bad(f"bad preprocessing item '{item}': {exc}") from None
    n = 1 if kwargs.get("channels") == "gray" else 3
    for key in ("mean", "std"):
        if key in kwargs and len(kwargs[key]) not in (1, n) and len(set(kwargs[key])) > 1:
            raise _bad(f"bad preprocessing item '{seen[key]}': give 1 or {n} values for {n}-channel input")
    if kwargs.get("dtype") == "uint8" and any(k in kwargs for k in ("scale", "mean", "std")):
        raise _bad("a uint8 input takes raw 0-255 pixels (the model normalizes inside): drop scale/mean/std")
    if "pad" in kwargs and kwargs.get("resize") != "letterbox":
        raise _bad(f"bad preprocessing item '{seen['pad']}': pad=V is the letterbox border value; add "
                   f"letterbox=HxW, or drop pad")
    return Preprocessing(source=source, **kwargs)


def _unknown_item(key: str, sep: str) -> str:
    if key in VALUE_KEYS:
        return f"{key} needs a value, e.g. {key}=" + {"mean": "0.485/0.456/0.406", "std": "0.229/0.224/0.225",
                                                      "scale": "1/255", "pad": "114"}.get(key, "32")
    if sep and (key in CHANNEL_ORDERS or key.upper() in LAYOUTS or key in DTYPES):
        return f"{key} takes no value"
    words = [*RESIZE_MODES, *VALUE_KEYS, *CHANNEL_ORDERS, "nchw", "nhwc", *DTYPES]
    return f"unknown item (valid: {', '.join(words)})"


def _number(text: str, *, fraction: bool = False) -> float:
    if fraction and "/" in text:
        top, _, bottom = text.partition("/")
        value = _number(top) / _number(bottom) if _number(bottom) != 0 else math.nan
    else:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"'{text}' is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"'{text}' is not a finite number")
    return value


def _int(text: str, *, signed: bool = False) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a whole number") from None
    if not signed and value < 1:
        raise ValueError(f"'{text}' must be >= 1")
    return value


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ValueError(f"'{text}' is not HEIGHTxWIDTH (e.g. 640x640) or one side (e.g. 224)")
    return _int(parts[0]), _int(parts[1])


def load_preprocess(value: str | os.PathLike[str] | Preprocessing, *, source: str = "user") -> Preprocessing:
    """A --preprocess value: a Preprocessing, a grammar string, or a JSON file holding either a grammar string,
    {"preprocess": "..."} or a to_dict() object. Errors name the file."""
    if isinstance(value, Preprocessing):
        return value if value.source else value.with_source(source)
    text = str(value).strip()
    path = Path(text)
    if text.lower().endswith(".json") or (path.suffix and path.is_file()):
        if not path.is_file():
            raise UsageError(f"preprocessing file {path} not found; give a JSON file or a spec such as "
                             f"\"{EXAMPLE}\"")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"{path}: not a readable JSON preprocessing file ({exc})") from None
        if isinstance(data, dict) and set(data) <= {"preprocess", "preprocessing"} and data:
            data = next(iter(data.values()))
        try:
            if isinstance(data, str):
                return parse_preprocess(data, source=source)
            return replace(Preprocessing.from_dict(data), source=source)
        except UsageError as exc:
            raise UsageError(f"{path}: {exc}") from None
    return parse_preprocess(text, source=source)


# ---------------------------------------------------------------------------------------------- model files


class _ModelFile:
    """What the recognizers look at: the file's first input (shape, element type) and metadata, read once."""

    def __init__(self, path: Path, proto=None) -> None:
        self.path = path
        self.suffix = path.suffix.lower()
        if proto is not None:
            self.__dict__["proto"] = proto  # already loaded by the caller (Model.load)

    @functools.cached_property
    def proto(self):
        if self.suffix != ".onnx":
            return None
        import onnx

        try:
            return onnx.load(str(self.path), load_external_data=False)
        except Exception:  # noqa: BLE001 - unreadable models are reported by Model.load, not here
            return None

    @functools.cached_property
    def metadata(self) -> dict[str, str]:
        return {p.key: p.value for p in self.proto.metadata_props} if self.proto is not None else {}

    @functools.cached_property
    def tflite(self) -> _TfliteInput | None:
        return _read_tflite_input(self.path) if self.suffix == ".tflite" else None

    @functools.cached_property
    def input(self) -> tuple[str, tuple[int | None, ...], str] | None:
        """(name, shape with None for dynamic dims, element type name) of the first image input."""
        if self.tflite is not None:
            return self.tflite.name, self.tflite.shape, self.tflite.dtype
        if self.proto is None:
            return None
        import onnx

        inits = {t.name for t in self.proto.graph.initializer}
        first = next((v for v in self.proto.graph.input if v.name not in inits), None)
        if first is None:
            return None
        ttype = first.type.tensor_type
        dims = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
                     for d in ttype.shape.dim)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type).name if ttype.elem_type else "float32"
        return first.name, dims, dtype


def _layout_of(shape: tuple[int | None, ...]) -> tuple[str, str, tuple[int, int] | None] | None:
    """(layout, channels, fixed (H, W) or None) of a 4-D image input shape, or None when it is not one."""
    if len(shape) != 4:
        return None
    c_first, c_last = shape[1], shape[3]
    if c_last in (1, 3) and c_first not in (1, 3):
        layout, c, hw = "NHWC", c_last, shape[1:3]
    else:
        layout, c, hw = "NCHW", c_first, shape[2:4]
    size = (int(hw[0]), int(hw[1])) if all(isinstance(d, int) and d > 0 for d in hw) else None
    return layout, "gray" if c == 1 else "rgb", size


# ---- recognizers: each reads one kind of evidence in the file, or returns None ---------------------------------


def _from_cvtune_metadata(model: _ModelFile) -> Preprocessing | None:
    """What cvtune stamped into a model it wrote (stamp_preprocessing). A stamped guess stays a guess."""
    raw = model.metadata.get(METADATA_KEY)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        original = str(data.get("source") or "user")
        spec = parse_preprocess(str(data["spec"]), source=GUESSED if original == GUESSED else "metadata:cvtune")
    except (ValueError, KeyError, TypeError, AttributeError, UsageError) as exc:
        raise ModelError(f"{model.path}: its '{METADATA_KEY}' metadata cannot be read ({exc}); give the real "
                         f"preprocessing spec to override it") from None
    return spec


def _from_zoo(model: _ModelFile) -> Preprocessing | None:
    from .zoo import find_by_path

    entry = find_by_path(model.path)
    return entry.preprocessing.with_source("zoo") if entry else None


def _from_ultralytics(model: _ModelFile) -> Preprocessing | None:
    """Ultralytics exports write imgsz, stride, task and names: letterbox at imgsz with gray 114, x/255, RGB, NCHW
    (classifiers: resize the short side to imgsz and center-crop, as its classify_transforms)."""
    meta = model.metadata
    if "imgsz" not in meta or not ({"stride", "names"} & set(meta)):
        return None
    try:
        size = ast.literal_eval(meta["imgsz"])
        size = (int(size), int(size)) if isinstance(size, int | float) else (int(size[0]), int(size[1]))
        stride = int(meta.get("stride", 32) or 32)
    except (ValueError, SyntaxError, TypeError, IndexError):
        raise ModelError(f"{model.path}: Ultralytics metadata imgsz={meta['imgsz']!r} is not a size; give a "
                         f"preprocessing spec such as \"{EXAMPLE}\" with the model's size") from None
    if meta.get("task") == "classify":
        return Preprocessing(input_size=size, resize="center_crop", resize_short=max(size), scale=1 / 255,
                             channels="rgb", source="metadata:ultralytics")
    return Preprocessing(input_size=size, resize="letterbox", pad=114, size_multiple=stride, scale=1 / 255,
                         channels="rgb", source="metadata:ultralytics")


def _from_tflite(model: _ModelFile) -> Preprocessing | None:
    """A TFLite input says its layout and size (shape), raw pixels (uint8), its quantization (int8) and, with
    TFLite metadata, its normalization (mean/std over 0-255 pixels). Float input without metadata: None."""
    info = model.tflite
    if info is None:
        return None
    geometry = _layout_of(info.shape)
    if geometry is None:
        return None
    layout, channels, size = geometry
    channels = "gray" if channels == "gray" or info.color_space == "gray" else "rgb"  # TFLite images are RGB
    base = {"input_size": size, "channels": channels, "layout": layout, "source": "tflite"}
    if info.dtype == "uint8":
        return Preprocessing(dtype="uint8", **base)
    values = _values_from_normalization(info.norm_mean, info.norm_std, channels)
    if info.dtype == "int8" and info.quant_scale:
        values = values or _values_from_range((-128 - info.zero_point) * info.quant_scale,
                                              (127 - info.zero_point) * info.quant_scale)
        if values is None:
            return None
        return Preprocessing(dtype="int8", quant_scale=info.quant_scale, zero_point=info.zero_point, **values, **base)
    if info.dtype == "float32" and values is not None:
        return Preprocessing(**values, **base)
    return None


def _values_from_normalization(mean: tuple[float, ...] | None, std: tuple[float, ...] | None, channels: str
                               ) -> dict[str, Any] | None:
    """TFLite metadata's NormalizationOptions act on 0-255 pixels: x = (p - mean) / std."""
    if not mean or not std:
        return None
    n = 1 if channels == "gray" else 3
    if len(mean) not in (1, n) or len(std) not in (1, n):
        return None
    return {"scale": 1.0, "mean": tuple(mean), "std": tuple(std)}


def _values_from_range(low: float, high: float) -> dict[str, Any] | None:
    """The float range an int8 input was calibrated on -> the usual normalization that gives it, or None."""
    for values, (lo, hi) in (({"scale": 1 / 255}, (0.0, 1.0)), ({"scale": 1 / 255, "mean": (0.5,), "std": (0.5,)},
                                                                 (-1.0, 1.0)), ({"scale": 1.0}, (0.0, 255.0))):
        span = hi - lo
        if abs(low - lo) <= 0.02 * span and abs(high - hi) <= 0.02 * span:
            return values
    return None


RECOGNIZERS: dict[str, Callable[[_ModelFile], Preprocessing | None]] = {
    "metadata:cvtune": _from_cvtune_metadata,
    "zoo": _from_zoo,
    "metadata:ultralytics": _from_ultralytics,
    "tflite": _from_tflite,
}


def recognize_preprocessing(model_path: str | os.PathLike[str], *, proto=None) -> Preprocessing | None:
    """What the model file says about its preprocessing (first recognizer that knows), or None. `proto`: the
    file's ONNX graph when the caller has it loaded already."""
    model = _ModelFile(Path(model_path), proto)
    for recognize in RECOGNIZERS.values():
        spec = recognize(model)
        if spec is not None:
            return spec
    return None


def guess_preprocessing(model_path: str | os.PathLike[str] | None = None, *, proto=None,
                        default: Preprocessing | None = None) -> Preprocessing:
    """cvtune's guess for a model nothing recognizes, marked source="guessed": layout, channels and a fixed size
    from the input shape; uint8 inputs take raw pixels; float inputs get `default`'s values (ImageNet: x/255,
    mean/std, RGB, unless a task family has its own default)."""
    values = {k: getattr(default, k) for k in ("scale", "mean", "std", "channels", "size_multiple")} \
        if default is not None else {**IMAGENET, "channels": "rgb"}
    base: dict[str, Any] = {"input_size": default.input_size if default else None}
    info = _ModelFile(Path(model_path), proto).input if model_path is not None else None
    geometry = _layout_of(info[1]) if info else None
    if geometry is not None:
        layout, channels, size = geometry
        base.update(layout=layout, input_size=size or base["input_size"])
        if channels == "gray":
            values.update(channels="gray", mean=values["mean"][:1], std=values["std"][:1])
    if info and info[2] == "uint8":
        values = {"channels": values["channels"], "dtype": "uint8"}
    return Preprocessing(**base, **values, source=GUESSED)


def model_preprocessing(model_path: str | os.PathLike[str], *, proto=None, default: Preprocessing | None = None
                        ) -> Preprocessing:
    """Recognized from the model file, else the guess (source "guessed")."""
    return (recognize_preprocessing(model_path, proto=proto)
            or guess_preprocessing(model_path, proto=proto, default=default))


def resolve_preprocessing(model_path: str | os.PathLike[str] | None, preprocess: Any = None, *,
                          reference: str | os.PathLike[str] | None = None,
                          default: Preprocessing | None = None) -> Preprocessing:
    """The one order: the user's spec (`preprocess`: a grammar string, a JSON file or a Preprocessing), else what
    the model file (or, for fidelity, its `reference`) says, else a guess; `preprocess="guess"` takes what cvtune
    would use. A user spec without a size gets the model's fixed input size and is checked against its layout."""
    if preprocess is not None and preprocess != ACCEPT_GUESS:
        spec = load_preprocess(preprocess)
        return _fit_to_model(spec, model_path) if model_path is not None else spec
    if model_path is None:
        return default.with_source(GUESSED) if default else guess_preprocessing(None)
    found = recognize_preprocessing(model_path)
    if found is None and reference is not None:
        found = recognize_preprocessing(reference)
    return found or guess_preprocessing(model_path, default=default)


def _fit_to_model(spec: Preprocessing, model_path: str | os.PathLike[str]) -> Preprocessing:
    info = _ModelFile(Path(model_path)).input
    geometry = _layout_of(info[1]) if info else None
    if geometry is None:
        return spec
    layout, _, size = geometry
    shape = "x".join("?" if d is None else str(d) for d in info[1])
    if info[1][1 if layout == "NCHW" else 3] is not None and layout != spec.layout:
        raise UsageError(f"{model_path}: its input '{info[0]}' is {shape} ({layout}) but the preprocessing says "
                         f"{spec.layout}; add {layout.lower()} to the preprocessing spec")
    if size and spec.input_size and spec.input_size != size:
        raise UsageError(f"{model_path}: its input '{info[0]}' is {shape}, fixed at {size[0]}x{size[1]}, but the "
                         f"preprocessing makes {spec.input_size[0]}x{spec.input_size[1]}; give that size")
    if size and spec.resize == "keep_ratio":
        raise UsageError(f"{model_path}: its input '{info[0]}' is fixed at {size[0]}x{size[1]}, but keep_ratio makes "
                         f"inputs of any size; use stretch={size[0]}x{size[1]} or letterbox={size[0]}x{size[1]}")
    if size and spec.input_size is None and spec.resize in ("stretch", "letterbox"):
        return replace(spec, input_size=size)
    return spec


# ---------------------------------------------------------------------------------------------- saying so


class GuessedPreprocessing(UsageError):
    """Raised where a guess must not pass silently (optimize claims an accuracy budget)."""


def _quoted(spec: Preprocessing) -> str:
    return f"--preprocess \"{spec.to_string()}\""


def guess_warning(spec: Preprocessing, model: str | os.PathLike[str]) -> str:
    """The one warning line every command prints when it runs on a guess, with the spec to copy."""
    return (f"preprocessing of {Path(model).name} is GUESSED (nothing in the file says how its pixels are "
            f"normalized: no zoo entry, Ultralytics/cvtune metadata or TFLite input quantization/normalization): "
            f"{spec.describe().split(' [')[0]}. Every metric and calibration uses it: if "
            f"the model was trained otherwise, pass the right spec, starting from {_quoted(spec)}; --preprocess "
            f"guess accepts it")


def guess_refusal(spec: Preprocessing, model: str | os.PathLike[str]) -> GuessedPreprocessing:
    """optimize's refusal: the guess, and how to confirm or correct it."""
    return GuessedPreprocessing(
        f"{Path(model).name} does not say how its images are preprocessed, and optimize will not claim an accuracy "
        f"budget on a guess. cvtune would use: {_quoted(spec)}. Confirm it with --preprocess guess, or give the "
        f"real one, e.g. --preprocess \"{EXAMPLE}\" for a YOLO model (README: 'Your own model: preprocessing')")


def stamp_preprocessing(proto, spec: Preprocessing):
    """Write `spec` (and where it came from) into an ONNX ModelProto's metadata_props under 'cvtune.preprocess',
    replacing an earlier stamp, so the models cvtune writes carry their preprocessing. Edits and returns `proto`.
    A guessed spec is stamped as a guess and read back as one."""
    entry = json.dumps({"spec": spec.to_string(), "source": spec.source or "user", "format": 1})
    kept = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    for prop in kept:
        proto.metadata_props.add(key=prop.key, value=prop.value)
    proto.metadata_props.add(key=METADATA_KEY, value=entry)
    return proto


# ---------------------------------------------------------------------------------------------- TFLite input


@dataclass(frozen=True)
class _TfliteInput:
    name: str
    shape: tuple[int | None, ...]
    dtype: str  # float32 | uint8 | int8 | other type names
    quant_scale: float | None
    zero_point: int
    norm_mean: tuple[float, ...] | None  # TFLite metadata NormalizationOptions of the input, if any
    norm_std: tuple[float, ...] | None
    color_space: str | None  # "rgb" | "gray" from the metadata's ImageProperties, if any


_TFLITE_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8"}


def _read_tflite_input(path: Path) -> _TfliteInput | None:
    """The first input tensor of a .tflite file, read with the `tflite` flatbuffer package (no TensorFlow)."""
    try:
        import tflite
    except ImportError:  # pragma: no cover - a dependency; without it TFLite files are not recognized
        return None
    try:
        buf = path.read_bytes()
        model = tflite.Model.GetRootAsModel(buf, 0)
        graph = model.Subgraphs(0)
        tensor = graph.Tensors(graph.Inputs(0))
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy())
        signature = tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else shape
        shape = tuple(None if int(s) < 0 else d for d, s in zip(shape, signature, strict=False))
        quant = tensor.Quantization()
        scale = zero = None
        if quant is not None and quant.ScaleLength():
            scale, zero = float(quant.ScaleAsNumpy()[0]), int(quant.ZeroPointAsNumpy()[0])
        mean, std, color = _tflite_metadata(model)
    except Exception:  # noqa: BLE001 - not a TFLite flatbuffer we can read: nothing recognized
        return None
    return _TfliteInput((tensor.Name() or b"").decode(errors="replace"), shape,
                        _TFLITE_TYPES.get(tensor.Type(), f"type{tensor.Type()}"), scale or None, zero or 0, mean,
                        std, color)


def _tflite_metadata(model) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None, str | None]:
    """(mean, std, color space) of the first input from the TFLITE_METADATA buffer (tflite-support's
    metadata_schema.fbs: ModelMetadata.subgraph_metadata[0].input_tensor_metadata[0] -> process_units'
    NormalizationOptions, content.content_properties ImageProperties.color_space)."""
    from flatbuffers import number_types
    from flatbuffers.table import Table

    buffer = None
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == b"TFLITE_METADATA":
            buffer = bytes(model.Buffers(entry.Buffer()).DataAsNumpy())
    if not buffer:
        return None, None, None
    data = bytearray(buffer)

    def slot(table: Table, index: int) -> int:
        return table.Offset(4 + 2 * index)

    def child(table: Table, index: int) -> Table | None:
        offset = slot(table, index)
        return Table(table.Bytes, table.Indirect(offset + table.Pos)) if offset else None

    def children(table: Table | None, index: int) -> list[Table]:
        offset = slot(table, index) if table is not None else 0
        if not offset:
            return []
        start = table.Vector(offset)
        return [Table(table.Bytes, table.Indirect(start + 4 * k)) for k in range(table.VectorLen(offset))]

    def floats(table: Table, index: int) -> tuple[float, ...]:
        offset = slot(table, index)
        return tuple(float(v) for v in table.GetVectorAsNumpy(number_types.Float32Flags, offset)) if offset else ()

    root = Table(data, int.from_bytes(data[:4], "little"))
    inputs = next(iter(children(next(iter(children(root, 3)), None), 2)), None)  # subgraph 0, input 0
    if inputs is None:
        return None, None, None
    mean = std = color = None
    for unit in children(inputs, 4):  # ProcessUnit { options_type: ubyte, options: union }
        if unit.GetSlot(4, 0, number_types.Uint8Flags) == 1:  # NormalizationOptions { mean: [float], std: [float] }
            options = Table(data, 0)
            unit.Union(options, slot(unit, 1))
            mean, std = floats(options, 0) or None, floats(options, 1) or None
    content = child(inputs, 3)  # Content { content_properties_type, content_properties, range }
    if content is not None and content.GetSlot(4, 0, number_types.Uint8Flags) == 2:  # ImageProperties
        props = Table(data, 0)
        content.Union(props, slot(content, 1))
        color = {1: "rgb", 2: "gray"}.get(props.GetSlot(4, 0, number_types.Int8Flags))
    return mean, std, color
