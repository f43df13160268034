"""What this machine can run on: CPU model and SIMD features, core counts, OpenCL and CUDA devices as OpenCV sees
them, ONNX Runtime providers, OpenVINO devices, and OpenCV build facts. Everything is probed, never assumed.

`resolve_target(runtime, fallback=...)` is the one place that turns "the user asked for CUDA" into either that
target, a clear error naming what is missing, or (only with --fallback) the CPU with a note saying so.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RuntimeUnavailable
from .base import Runtime

# /proc/cpuinfo flag -> feature name users know (x86); aarch64 names are reported as they are.
CPU_FEATURES = {
    "sse4_2": "SSE4.2", "avx": "AVX", "avx2": "AVX2", "fma": "FMA", "f16c": "F16C",
    "avx512f": "AVX-512F", "avx512bw": "AVX-512BW", "avx512vl": "AVX-512VL",
    "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX-512 BF16",
    "amx_tile": "AMX", "amx_int8": "AMX-INT8", "amx_bf16": "AMX-BF16",
    "asimd": "NEON", "asimddp": "NEON dot-product", "sve": "SVE", "i8mm": "I8MM", "bf16": "BF16",
}


@dataclass(frozen=True)
class CpuInfo:
    """The CPU: model name, SIMD features that matter for int8/fp16 kernels, and core counts."""

    model: str
    features: tuple[str, ...]
    physical_cores: int
    logical_cores: int
    usable_cores: int  # cores this process may run on (affinity / container limits)

    @property
    def has_vnni(self) -> bool:
        return _has_vnni(self.features)


def _has_vnni(features: tuple[str, ...]) -> bool:
    """int8 dot-product instructions (AVX-VNNI, AVX-512 VNNI, AMX-INT8): u8 x s8 products cannot saturate."""
    return any("VNNI" in f or f == "AMX-INT8" for f in features)


@dataclass(frozen=True)
class DeviceReport:
    """Everything `cvtune devices` prints, JSON-ready via to_dict()."""

    cpu: CpuInfo
    opencv: dict[str, Any]
    opencl_devices: list[dict[str, Any]] = field(default_factory=list)
    cuda_devices: list[dict[str, Any]] = field(default_factory=list)
    ort: dict[str, Any] = field(default_factory=dict)
    openvino: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        cpu = dataclasses.asdict(self.cpu)
        cpu["features"] = list(self.cpu.features)
        return {"cpu": cpu, "opencv": self.opencv, "opencl_devices": self.opencl_devices,
                "cuda_devices": self.cuda_devices, "ort": self.ort, "openvino": self.openvino}


def _cpuinfo_text() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def usable_cores() -> int:
    """Cores this process may use: the affinity mask where the OS has one, else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, flags) from /proc/cpuinfo text: the first processor's `flags` (x86) or `Features` (aarch64)
    line, and its `model name` (x86), `Hardware` or `cpu model` line; "" and an empty set for what is absent."""
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip() and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def cpu_features(flags: frozenset[str] | set[str]) -> tuple[str, ...]:
    """The features in CPU_FEATURES that `flags` (/proc/cpuinfo names) has, by the names users know."""
    return tuple(name for flag, name in CPU_FEATURES.items() if flag in flags)


def cpu_has_vnni(text: str | None = None, *, machine: str | None = None) -> bool | None:
    """Whether this x86 CPU has int8 dot-product instructions (see CpuInfo.has_vnni); None on other CPUs or where
    /proc/cpuinfo cannot be read. `text` and `machine` default to this machine's /proc/cpuinfo and architecture."""
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64", "i686", "i386", "x86"):
        return None
    _, flags = parse_cpuinfo(_cpuinfo_text() if text is None else text)
    return _has_vnni(cpu_features(flags)) if flags else None


def cpu_info() -> CpuInfo:
    import psutil

    model, flags = parse_cpuinfo(_cpuinfo_text())
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    return CpuInfo(model=model or platform.processor() or platform.machine() or "unknown",
                   features=cpu_features(flags), physical_cores=physical, logical_cores=logical,
                   usable_cores=usable_cores())


def opencv_facts() -> dict[str, Any]:
    """OpenCV version, engines, parallel framework, SIMD dispatch and which DNN targets work here (and why not)."""
    import cv2

    from .opencv import TARGETS, available_engines, target_status

    build = cv2.getBuildInformation()

    def build_line(key: str) -> str:
        line = next((ln for ln in build.splitlines() if ln.strip().startswith(key)), "")
        return line.split(":", 1)[1].strip() if ":" in line else ""

    targets = {}
    for name in TARGETS:
        ok, reason = target_status(name)
        targets[name] = {"available": ok, **({"reason": reason} if reason else {})}
    return {"version": cv2.__version__, "engines": available_engines(), "threads": cv2.getNumThreads(),
            "parallel_framework": build_line("Parallel framework"), "simd_dispatch": build_line("Dispatched code"),
            "targets": targets}


def opencl_devices() -> list[dict[str, Any]]:
    """OpenCL devices OpenCV can use (empty when OpenCL is missing or has no device)."""
    import cv2

    try:
        if not cv2.ocl.haveOpenCL():
            return []
        device = cv2.ocl.Device.getDefault()
        if not device.available():
            return []
        return [{"name": device.name(), "vendor": device.vendorName(), "version": device.version(),
                 "compute_units": device.maxComputeUnits(), "global_mem_mb": device.globalMemSize() // 2**20,
                 "fp16": bool(device.isExtensionSupported("cl_khr_fp16"))}]
    except Exception:  # noqa: BLE001 - broken ICDs raise from any of these calls
        return []


def cuda_devices() -> list[dict[str, Any]]:
    """CUDA devices OpenCV was built for and can see (the pip wheels have none)."""
    import cv2

    try:
        count = cv2.cuda.getCudaEnabledDeviceCount()
    except Exception:  # noqa: BLE001 - builds without CUDA
        return []
    devices = []
    for i in range(count):
        try:
            info = cv2.cuda.DeviceInfo(i)
            devices.append({"index": i, "name": info.name(), "compute": f"{info.majorVersion()}.{info.minorVersion()}",
                            "memory_mb": info.totalMemory() // 2**20})
        except Exception:  # noqa: BLE001
            devices.append({"index": i, "name": "unknown"})
    return devices


def ort_facts() -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"installed": False}
    return {"installed": True, "version": ort.__version__, "providers": list(ort.get_available_providers()),
            "device": ort.get_device()}


def openvino_facts() -> dict[str, Any]:
    try:
        import openvino as ov
    except ImportError:
        return {"installed": False, "hint": "pip install 'cvtune[openvino]'"}
    core = ov.Core()
    devices = {}
    for dev in core.available_devices:
        try:
            devices[dev] = str(core.get_property(dev, "FULL_DEVICE_NAME"))
        except Exception:  # noqa: BLE001
            devices[dev] = dev
    return {"installed": True, "version": ov.__version__.split("-")[0], "devices": devices}


def detect() -> DeviceReport:
    """Probe the machine (takes well under a second)."""
    return DeviceReport(cpu=cpu_info(), opencv=opencv_facts(), opencl_devices=opencl_devices(),
                        cuda_devices=cuda_devices(), ort=ort_facts(), openvino=openvino_facts())


# ---------------------------------------------------------------------------------------------- fallback

def cpu_equivalent(runtime: Runtime) -> Runtime:
    """The same runtime settings on the CPU (OpenCV target cpu, ORT provider cpu, OpenVINO device CPU)."""
    for attr, cpu in (("target", "cpu"), ("provider", "cpu"), ("device", "CPU")):
        if hasattr(runtime, attr) and getattr(runtime, attr) != cpu:
            return dataclasses.replace(runtime, **{attr: cpu})  # type: ignore[type-var]
    return runtime


def resolve_target(runtime: Runtime, *, fallback: bool = False) -> tuple[Runtime, str | None]:
    """(runtime to use, note). When the requested target/provider/device is missing: without `fallback`, raise
    RuntimeUnavailable naming what is missing; with it, return the CPU equivalent and a note that says so."""
    check = getattr(runtime, "check", None)
    if check is None:
        return runtime, None
    try:
        check()
        return runtime, None
    except RuntimeUnavailable as exc:
        cpu = cpu_equivalent(runtime)
        if cpu == runtime:
            raise
        if not fallback:
            raise RuntimeUnavailable(f"{exc}; allow the CPU fallback to run there instead") from None
        cpu.check()  # type: ignore[attr-defined]
        return cpu, f"{runtime.label()} is not available ({exc}); using {cpu.label()} instead (--fallback)"


def machine_info() -> dict[str, Any]:
    """What a measurement was taken on: CPU, cores, platform and library versions (stored with every search)."""
    import sys

    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    try:
        cpu = cpu_info()
        info.update(cpu=cpu.model, cpu_features=list(cpu.features), physical_cores=cpu.physical_cores,
                    logical_cores=cpu.logical_cores, usable_cores=cpu.usable_cores)
    except Exception:  # noqa: BLE001 - a report must not fail for want of device facts
        info.update(cpu=platform.processor() or platform.machine())
    versions = {}
    for module in ("cvtune", "cv2", "onnxruntime", "onnx", "numpy", "optuna", "openvino"):
        try:
            mod = __import__(module)
        except Exception:  # noqa: BLE001 - optional modules
            continue
        versions["opencv" if module == "cv2" else module] = getattr(mod, "__version__", "?")
    info["versions"] = versions
    return info
