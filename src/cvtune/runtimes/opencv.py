"""OpenCV DNN runtime: engine (new/classic/auto), backend+target, threads, Winograd and fusion switches.

Capabilities are probed from the installed cv2, never inferred from version strings: OpenCV 4.x has no engines
(the classic one is all there is); 5.0 has ENGINE_NEW / ENGINE_CLASSIC / ENGINE_AUTO; 5.1 dropped the classic
engine (ENGINE_OPENCV is the new engine, ENGINE_AUTO resolves to it, ENGINE_ORT wraps ONNX Runtime in builds
WITH_ONNXRUNTIME only). The new engine runs only on the CPU backend; other targets use classic where it exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import ModelError, RuntimeUnavailable, UsageError
from ..files import display_path, is_utf8_path, read_bytes
from .base import Runtime

ENGINES = ("auto", "new", "classic")
# target name -> (backend constant, target constant)
TARGETS = {
    "cpu": ("DNN_BACKEND_OPENCV", "DNN_TARGET_CPU"),
    "cpu_fp16": ("DNN_BACKEND_OPENCV", "DNN_TARGET_CPU_FP16"),
    "opencl": ("DNN_BACKEND_OPENCV", "DNN_TARGET_OPENCL"),
    "opencl_fp16": ("DNN_BACKEND_OPENCV", "DNN_TARGET_OPENCL_FP16"),
    "cuda": ("DNN_BACKEND_CUDA", "DNN_TARGET_CUDA"),
    "cuda_fp16": ("DNN_BACKEND_CUDA", "DNN_TARGET_CUDA_FP16"),
}


def _cv2():
    import cv2

    return cv2


def engine_constants(dnn=None) -> dict[str, int]:
    """cvtune's engine names -> the installed OpenCV's constants ({} on 4.x, which has no engine argument):
    5.0 {'auto', 'new', 'classic'}, 5.1 {'auto', 'new'} (ENGINE_OPENCV is the new engine)."""
    dnn = dnn if dnn is not None else _cv2().dnn
    found = {"auto": getattr(dnn, "ENGINE_AUTO", None),
             "new": getattr(dnn, "ENGINE_NEW", getattr(dnn, "ENGINE_OPENCV", None)),
             "classic": getattr(dnn, "ENGINE_CLASSIC", None)}
    return {name: value for name, value in found.items() if value is not None} if found["auto"] is not None else {}


def available_engines() -> list[str]:
    """Engines the installed OpenCV offers: ['auto', 'new', 'classic'] on 5.0, ['auto', 'new'] on 5.1 (no classic
    engine), ['auto', 'classic'] on 4.x ('auto' is always the build's default engine)."""
    constants = engine_constants()
    return [e for e in ENGINES if e in constants] if constants else ["auto", "classic"]


def reference_engine() -> str:
    """The engine to trust for a reference run: the classic one where it exists (it keeps every output of
    MediaPipe's TFLite detectors, which OpenCV 5.0's new engine dropped), else the build's default."""
    return "classic" if "classic" in available_engines() else "auto"


def target_status(target: str) -> tuple[bool, str]:
    """(available, reason) for a target name, probing the build (constants, OpenCL/CUDA devices)."""
    cv2 = _cv2()
    if target not in TARGETS:
        raise UsageError(f"unknown OpenCV target '{target}'; choose one of: {', '.join(TARGETS)}")
    backend_name, target_name = TARGETS[target]
    backend = getattr(cv2.dnn, backend_name, None)
    target_const = getattr(cv2.dnn, target_name, None)
    if backend is None or target_const is None:
        return False, f"this OpenCV build has no {backend_name}/{target_name}"
    if target.startswith("opencl") and not cv2.ocl.haveOpenCL():
        return False, "OpenCL target needs an OpenCL device, and cv2.ocl.haveOpenCL() is False on this machine"
    if target.startswith("cuda"):
        try:
            count = cv2.cuda.getCudaEnabledDeviceCount()
        except Exception:  # noqa: BLE001 - builds without CUDA raise here
            count = 0
        if count == 0:
            return False, (
                "CUDA target needs an OpenCV built WITH_CUDA and a CUDA device; this opencv-python-headless "
                "wheel has no CUDA (cv2.cuda.getCudaEnabledDeviceCount() == 0)"
            )
    try:
        offered = list(cv2.dnn.getAvailableTargets(backend))
    except Exception:  # noqa: BLE001
        offered = []
    if target_const not in offered:
        return False, f"OpenCV reports no {target_name} for {backend_name} here (getAvailableTargets)"
    return True, ""


@dataclass(frozen=True)
class OpenCVRuntime(Runtime):
    """Settings for cv2.dnn: which engine, which target, how many threads, which graph switches."""

    name: ClassVar[str] = "opencv"
    formats: ClassVar[tuple[str, ...]] = (".onnx", ".tflite", ".pb")
    engine: str = "auto"
    target: str = "cpu"
    threads: int | None = None  # None = OpenCV's default (all cores)
    winograd: bool = True
    fusion: bool = True

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise UsageError(f"unknown OpenCV engine '{self.engine}'; choose one of: {', '.join(ENGINES)}")
        if self.target not in TARGETS:
            raise UsageError(f"unknown OpenCV target '{self.target}'; choose one of: {', '.join(TARGETS)}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1 (got {self.threads})")

    def label(self) -> str:
        threads = f" t{self.threads}" if self.threads else ""
        return f"opencv:{self.engine}/{self.target}{threads}"

    def check(self) -> None:
        """Raise RuntimeUnavailable naming what is missing for this engine/target combination."""
        engines = available_engines()
        if self.engine not in engines:
            raise RuntimeUnavailable(
                f"OpenCV engine '{self.engine}' is not in this OpenCV ({_cv2().__version__}); it offers: "
                f"{', '.join(engines)}"
            )
        ok, reason = target_status(self.target)
        if not ok:
            raise RuntimeUnavailable(f"OpenCV target '{self.target}' is not available: {reason}")
        if (not self.fusion or not self.winograd) and self.engine != "classic" and "new" in engines:
            raise RuntimeUnavailable(
                "the fusion and Winograd switches apply to OpenCV's classic engine only (turning them off on a "
                "new-engine net leaves it empty in OpenCV 5.x)" + ("; use engine=classic" if "classic" in engines
                                                                  else f"; OpenCV {_cv2().__version__} has no "
                                                                       f"classic engine")
            )
        if self.target != "cpu" and self.engine == "new":
            raise RuntimeUnavailable(
                f"the new OpenCV engine runs on the CPU backend only; use engine classic for {self.target}"
            )

    def open(self, model_path: str | Path) -> OpenCVSession:
        self.check()
        return OpenCVSession(Path(model_path), self)


class OpenCVSession:
    """One cv2.dnn.Net. Not safe for concurrent forward(): open one session per worker."""

    def __init__(self, model_path: Path, runtime: OpenCVRuntime) -> None:
        cv2 = _cv2()
        if runtime.threads:
            cv2.setNumThreads(int(runtime.threads))
        if not model_path.is_file():
            raise ModelError(f"model file not found: {display_path(model_path)}")
        self.net = _read_net(cv2, model_path, runtime)
        # The classic engine rejects a disabled fusion / Winograd switch on new-engine nets; set where offered.
        if runtime.engine == "classic" or not engine_constants(cv2.dnn):
            self.net.enableFusion(bool(runtime.fusion))
            if hasattr(self.net, "enableWinograd"):
                self.net.enableWinograd(bool(runtime.winograd))
        backend_name, target_name = TARGETS[runtime.target]
        if runtime.target != "cpu":
            self.net.setPreferableBackend(getattr(cv2.dnn, backend_name))
            self.net.setPreferableTarget(getattr(cv2.dnn, target_name))
        self.output_names = _declared_order(model_path, list(self.net.getUnconnectedOutLayersNames()))
        self.input_name = ""
        # OpenCV's TFLite importer turns the graph NCHW: it takes NCHW blobs although the file declares NHWC
        # (measured on OpenCV 5.0 with MediaPipe models), so NHWC image tensors are transposed here.
        self.nchw_only = model_path.suffix.lower() == ".tflite"

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self.nchw_only and batch.ndim == 4 and batch.shape[3] in (1, 3) and batch.shape[1] not in (1, 3):
            batch = batch.transpose(0, 3, 1, 2)
        self.net.setInput(np.ascontiguousarray(batch, dtype=np.float32))
        outs = self.net.forward(self.output_names)
        return [np.asarray(o) for o in outs]

    def close(self) -> None:
        self.net = None


def _read_net(cv2, model_path: Path, runtime: OpenCVRuntime):
    suffix = model_path.suffix.lower()
    engine = {}
    names = engine_constants(cv2.dnn)
    if runtime.engine in names:
        engine = {"engine": names[runtime.engine]}
    try:
        if not is_utf8_path(model_path):
            return _read_net_from_buffer(cv2, model_path, suffix, engine)
        if suffix == ".tflite" and hasattr(cv2.dnn, "readNetFromTFLite"):
            return cv2.dnn.readNetFromTFLite(str(model_path), **engine)
        return cv2.dnn.readNet(str(model_path), **engine)
    except cv2.error as exc:
        raise ModelError(f"OpenCV ({runtime.engine} engine) cannot load {display_path(model_path)}: "
                         f"{_cv_error_line(exc)}") from None


def _read_net_from_buffer(cv2, model_path: Path, suffix: str, engine: dict):
    """A model whose path holds bytes that are not UTF-8: OpenCV's C++ API takes paths as text (and its Python
    binding crashes on such a str), so Python reads the file and OpenCV parses the buffer."""
    data = np.frombuffer(read_bytes(model_path, what="model"), np.uint8)
    readers = {".onnx": "readNetFromONNX", ".tflite": "readNetFromTFLite", ".pb": "readNetFromTensorflow"}
    reader = getattr(cv2.dnn, readers.get(suffix, ""), None)
    if reader is None:
        raise ModelError(f"OpenCV cannot read a {suffix or 'suffix-less'} model from memory; move "
                         f"{display_path(model_path)} to a path of UTF-8 characters")
    if suffix == ".onnx":
        import onnx

        proto = onnx.load_model_from_string(data.tobytes())
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
            raise ModelError(f"{display_path(model_path)} keeps its weights in external data, which OpenCV reads "
                             f"by path only; move it to a path of UTF-8 characters")
    return reader(data, **engine)


def _declared_order(model_path: Path, names: list[str]) -> list[str]:
    """OpenCV's output names in the order the model file declares its outputs (the classic engine lists TFLite and
    some ONNX outputs in another order); names the file does not declare keep OpenCV's order, at the end."""
    from ..errors import CvtuneError
    from ..model import model_io

    try:
        declared = [t.name for t in model_io(model_path)[1]]
    except CvtuneError:
        return names
    rank = {name: i for i, name in enumerate(declared)}
    return sorted(names, key=lambda n: rank.get(n, len(rank)))


def _cv_error_line(exc: Exception) -> str:
    """The informative part of a cv2.error on one line, e.g. "Node [Shape@ai.onnx] parse error: ... !isDynamicShape"."""
    import re

    lines = [ln.strip().lstrip("> ").strip() for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln]
    node = next((ln.split(" parse error")[0] for ln in lines if "parse error" in ln), "")
    reasons = re.findall(r"error: \(-?\d+:[^)]*\) (.*?)(?: in function '[^']*')?$", "\n".join(lines), re.M)
    reason = reasons[-1] if reasons else (lines[-1] if lines else "unknown OpenCV error")
    text = f"{node}: {reason}" if node else reason
    if "isDynamicShape" in text or "dynamic" in text.lower():
        text += " (the model has dynamic shapes: run `cvtune prepare` to make them static and simplify)"
    elif "Assertion failed" in text or "assert" in text.lower():
        text = text[:300] + (" (an internal check of OpenCV's importer failed on this model: try the other engine "
                             "(--engine classic or new), `cvtune prepare` to simplify it, or --runtime ort)")
    return text[:500]


def opencv_flops(model_path: str | Path, shape: tuple[int, ...]) -> int | None:
    """FLOPs as OpenCV counts them for one input shape, or None when this OpenCV's binding cannot tell."""
    cv2 = _cv2()
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    try:
        engine = {"engine": cv2.dnn.ENGINE_CLASSIC} if "classic" in engine_constants(cv2.dnn) else {}
        model_path = Path(model_path)
        if is_utf8_path(model_path):
            net = cv2.dnn.readNet(str(model_path), **engine)
        else:
            net = _read_net_from_buffer(cv2, model_path, model_path.suffix.lower(), engine)
    except (cv2.error, ModelError):
        return None
    attempts = [lambda: net.getFLOPS(list(shape)), lambda: net.getFLOPS([list(shape)], [cv2.CV_32F])]
    for attempt in attempts:
        try:
            return int(attempt())
        except Exception:  # noqa: BLE001 - OpenCV 5.0's binding rejects python shapes for getFLOPS
            continue
    return None
