"""OpenVINO runtime (a default dependency where wheels exist): device, threads, performance hint (latency,
throughput), streams, the number of requests the throughput hint sizes itself for, precision. Loads ONNX files and
OpenVINO IR (.xml + .bin, what NNCF's int8 writes).

Importing this module raises ImportError when the `openvino` package is absent, so the registry in
runtimes/__init__.py simply leaves it out. OpenVINO runs bf16 by default on CPUs with AVX-512 BF16 or AMX; cvtune
asks for f32 unless told otherwise, so accuracy is comparable across runtimes (precision="bf16" is a knob).

Measured here (PP-OCRv4 det, 640x640, 2 cores): OpenVINO fp32 with the latency hint ran at 0.92x of ONNX Runtime's
speed, so it is not a free win; its int8 (NNCF) is the point. The throughput hint splits the cores into streams
that only pay off with several requests in flight (cvtune's `instances`); one synchronous request gets one stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import ModelError, RuntimeUnavailable, UsageError
from .base import Runtime

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}
PRECISIONS = {"f32": "f32", "bf16": "bf16", "f16": "f16", "default": None}


def _core():
    try:
        import openvino as ov
    except ImportError as exc:  # found by the registry but broken
        raise RuntimeUnavailable(f"OpenVINO is installed but does not import: {exc}") from None
    return ov.Core()


def available_devices() -> list[str]:
    return list(_core().available_devices)


@dataclass(frozen=True)
class OpenVINORuntime(Runtime):
    """Settings for openvino.Core.compile_model: which device, how many threads, which hint and precision."""

    name: ClassVar[str] = "openvino"
    formats: ClassVar[tuple[str, ...]] = (".onnx", ".xml")  # it reads .tflite too; cvtune gives it its ONNX form
    device: str = "CPU"
    threads: int | None = None  # INFERENCE_NUM_THREADS; None = OpenVINO's default
    hint: str = "latency"
    precision: str = "f32"
    streams: int | None = None  # NUM_STREAMS; None = what the hint picks
    num_requests: int | None = None  # PERFORMANCE_HINT_NUM_REQUESTS: requests the throughput hint plans for

    def __post_init__(self) -> None:
        if self.hint not in HINTS:
            raise UsageError(f"unknown OpenVINO hint '{self.hint}'; choose one of: {', '.join(HINTS)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown OpenVINO precision '{self.precision}'; choose one of: {', '.join(PRECISIONS)}")
        for what, value in (("threads", self.threads), ("streams", self.streams),
                            ("num_requests", self.num_requests)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UsageError(f"OpenVINO {what} must be a whole number >= 1 (got {value!r})")

    def label(self) -> str:
        threads = f" t{self.threads}" if self.threads else ""
        streams = f" s{self.streams}" if self.streams else ""
        return f"openvino:{self.device}/{self.hint}{threads}{streams}"

    def check(self) -> None:
        have = available_devices()
        virtual = self.device.split(":")[0] in ("AUTO", "MULTI", "HETERO")
        if not virtual and self.device.split(".")[0] not in {d.split(".")[0] for d in have}:
            raise RuntimeUnavailable(f"OpenVINO device '{self.device}' is not on this machine (available: "
                                     f"{', '.join(have) or 'none'})")

    def config(self) -> dict[str, str]:
        config = {"PERFORMANCE_HINT": HINTS[self.hint]}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = str(self.threads)
        if PRECISIONS[self.precision]:
            config["INFERENCE_PRECISION_HINT"] = PRECISIONS[self.precision]
        if self.streams:
            config["NUM_STREAMS"] = str(self.streams)
        if self.num_requests:
            config["PERFORMANCE_HINT_NUM_REQUESTS"] = str(self.num_requests)
        return config

    def open(self, model_path: str | Path) -> OpenVINOSession:
        self.check()
        return OpenVINOSession(Path(model_path), self)


def search_variants(threads: tuple[int, ...]) -> list[OpenVINORuntime]:
    """The OpenVINO settings worth measuring: the latency hint at each thread count, and the throughput hint with
    two streams (it pays off only with several requests in flight: pair it with instances > 1)."""
    out = [OpenVINORuntime(threads=t, hint="latency") for t in threads]
    out.append(OpenVINORuntime(threads=max(threads) if threads else None, hint="throughput", streams=2))
    return out


def _reason(exc: Exception) -> str:
    """OpenVINO's multi-line error in one line: the first line that is not a source location ('Exception from
    ...', "Check '...' failed at ..."), plus the operations it failed to convert when it lists them."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    said = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    ops = [ln[3:].split(" with a message")[0] for ln in lines if ln.startswith("-- ") and " with a message" in ln]
    text = (said[0] if said else (lines[0] if lines else type(exc).__name__)).rstrip(":")
    if ops:
        text += f" (operations it could not convert: {', '.join(dict.fromkeys(ops))})"
    return text[:300]


class OpenVINOSession:
    """One compiled model and one infer request. Not thread-safe: one session per worker."""

    def __init__(self, model_path: Path, runtime: OpenVINORuntime) -> None:
        if not model_path.is_file():
            raise ModelError(f"model file not found: {model_path}")
        if model_path.suffix.lower() == ".xml" and not model_path.with_suffix(".bin").is_file():
            raise ModelError(f"OpenVINO IR {model_path} has no weights file {model_path.with_suffix('.bin').name} "
                             f"next to it; keep the .xml and .bin together")
        try:
            self.compiled = _core().compile_model(str(model_path), runtime.device, runtime.config())
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError with multi-line text
            raise ModelError(f"OpenVINO cannot load {model_path}: {_reason(exc)}") from None
        self.request = self.compiled.create_infer_request()
        self.input_name = self.compiled.inputs[0].get_any_name()
        self.output_names = [o.get_any_name() if o.get_names() else f"output{i}"
                             for i, o in enumerate(self.compiled.outputs)]

    def compiled_settings(self) -> dict[str, str]:
        """What OpenVINO actually chose for this model (streams, threads, precision), for reports."""
        out = {}
        for key in ("NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT",
                    "OPTIMAL_NUMBER_OF_INFER_REQUESTS"):
            try:
                out[key] = str(self.compiled.get_property(key))
            except Exception:  # noqa: BLE001 - a device may not report every property
                continue
        return out

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        # The arrays alias the request's output tensors, which the next infer() overwrites: copy them.
        return [np.array(result[port], copy=True) for port in self.compiled.outputs]

    def close(self) -> None:
        self.request = None
        self.compiled = None
