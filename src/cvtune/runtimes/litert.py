"""LiteRT (TensorFlow Lite's own interpreter, the `ai-edge-litert` package, XNNPACK on the CPU): runs a .tflite file
the way its authors ship it. It is the honest baseline for a TFLite model: measured here, it ran MediaPipe's palm
detector 5.8x faster than OpenCV's defaults (and, on a loaded machine, the face, selfie and palm models 1.2-3.7x
faster than OpenCV or ONNX Runtime), so a speed-up counted from OpenCV would flatter any answer. Reads .tflite
files only (passes write ONNX, which it cannot run).

Registered only where the package is installed (runtimes/__init__.py); imported when a session opens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import ModelError, RuntimeUnavailable, UsageError
from .base import Runtime


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # found by the registry but broken
        raise RuntimeUnavailable(f"LiteRT (ai-edge-litert) is installed but does not import: {exc}") from None
    return Interpreter


@dataclass(frozen=True)
class LiteRTRuntime(Runtime):
    """Settings for ai_edge_litert.interpreter.Interpreter: the number of threads (None = LiteRT's default)."""

    name: ClassVar[str] = "litert"
    formats: ClassVar[tuple[str, ...]] = (".tflite",)
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads < 1):
            raise UsageError(f"LiteRT threads must be a whole number >= 1 (got {self.threads!r})")

    def label(self) -> str:
        return f"litert:cpu{f' t{self.threads}' if self.threads else ''}"

    def check(self) -> None:
        _interpreter_class()

    def open(self, model_path: str | Path) -> LiteRTSession:
        return LiteRTSession(Path(model_path), self)


class LiteRTSession:
    """One interpreter. Takes the file's own layout (NHWC for TFLite vision models; an NCHW batch of the same image
    is transposed), returns 4-D outputs NCHW like cvtune's other runtimes, quantizes float input for an int8/uint8
    input tensor and dequantizes outputs, so callers always see float32. Not thread-safe: one session per worker."""

    def __init__(self, model_path: Path, runtime: LiteRTRuntime) -> None:
        if not model_path.is_file():
            raise ModelError(f"model file not found: {model_path}")
        if model_path.suffix.lower() not in LiteRTRuntime.formats:
            raise ModelError(f"LiteRT runs .tflite files only, not {model_path.name}; use ort, opencv or openvino")
        interpreter_class = _interpreter_class()
        try:
            self.interpreter = interpreter_class(model_path=str(model_path), num_threads=runtime.threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise ModelError(f"LiteRT cannot load {model_path}: {first[:300]}") from None
        self.input = self.interpreter.get_input_details()[0]
        self.input_name = str(self.input["name"])
        self.outputs = self.interpreter.get_output_details()
        self.output_names = [str(o["name"]) for o in self.outputs]
        self.shape = tuple(int(d) for d in self.input["shape"])
        # -1 where the file lets a dimension vary (a TFLite converted with a dynamic batch); fixed elsewhere
        self.signature = tuple(int(d) for d in self.input.get("shape_signature", self.input["shape"]))

    def _fit(self, batch: np.ndarray) -> np.ndarray:
        """The batch in the file's layout and dtype, the input tensor resized when its shape differs."""
        declared = self.shape
        if batch.ndim == 4 and len(declared) == 4 and batch.shape[1:] != declared[1:] \
                and batch.transpose(0, 2, 3, 1).shape[1:] == declared[1:]:
            batch = batch.transpose(0, 2, 3, 1)  # NCHW in, NHWC file
        if tuple(batch.shape) != self.shape:
            fixed = [i for i, d in enumerate(self.signature) if d != -1 and i < batch.ndim and batch.shape[i] != d]
            if fixed or batch.ndim != len(self.signature):
                raise ModelError(f"LiteRT: this .tflite fixes its input shape at {declared}; it cannot take "
                                 f"{tuple(batch.shape)}")
            try:
                self.interpreter.resize_tensor_input(self.input["index"], list(batch.shape))
                self.interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"LiteRT cannot take an input of shape {tuple(batch.shape)} "
                                 f"(the file declares {declared}): {str(exc).splitlines()[0][:200]}") from None
            self.shape = tuple(batch.shape)
            self.outputs = self.interpreter.get_output_details()
        dtype = np.dtype(self.input["dtype"])
        if dtype.kind in "iu":  # a quantized input: float -> the tensor's integer grid
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            batch = np.clip(np.round(batch / (scale or 1.0) + zero), info.min, info.max)
        return np.ascontiguousarray(batch, dtype=dtype)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self.input["index"], self._fit(np.asarray(batch)))
        self.interpreter.invoke()
        outs = []
        for detail in self.outputs:
            value = self.interpreter.get_tensor(detail["index"])
            if np.dtype(detail["dtype"]).kind in "iu" and detail["quantization"][0]:
                scale, zero = detail["quantization"]
                value = (value.astype(np.float32) - zero) * scale
            value = np.asarray(value, np.float32)
            # 4-D outputs NCHW, as every cvtune runtime returns a TFLite's (model.TensorInfo.as_fed): OpenCV's
            # importer and cvtune's ONNX conversion both run the graph NCHW
            outs.append(np.ascontiguousarray(value.transpose(0, 3, 1, 2)) if value.ndim == 4 else value)
        return outs

    def close(self) -> None:
        self.interpreter = None
