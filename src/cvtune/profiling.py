"""Where the time goes: per-op-type latency of one model, from the runtime's own profiler (ONNX Runtime's
`enable_profiling` trace, OpenCV's `Net.getPerfProfile`, OpenVINO's `get_profiling_info`), measured in a child
process so a crashing runtime cannot take cvtune down.

    ms = profile_model("model.onnx", make_runtime("ort", threads=2), (1, 3, 640, 640))
    # {"Conv": 41.2, "ConvTranspose": 12.0, "Add": 3.1, ...}: mean ms per inference, slowest first

Op types are the runtime's own names (ONNX op types in ORT, OpenCV layer types, OpenVINO node types), so the
numbers say what that runtime spent its time on; they sum to about one inference (profiling adds a little).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .runtimes import Runtime, runtime_from_dict

__all__ = ["PROFILERS", "profile_model", "profile_here"]


def profile_model(model_path: str | Path, runtime: Runtime | dict[str, Any], input_shape: Sequence[int], *,
                  runs: int = 5, warmup: int = 2, timeout: float = 300.0) -> dict[str, float]:
    """Mean milliseconds per inference spent in each op type of `model_path` run by `runtime` on a random input
    of `input_shape`, slowest first; profiled in a child (cvtune.isolate), after `warmup` unprofiled runs."""
    from .isolate import run_isolated

    rt = runtime_from_dict(runtime) if isinstance(runtime, dict) else runtime
    if rt.name not in PROFILERS:
        raise UsageError(f"no profiler for runtime '{rt.name}'; cvtune profiles: {', '.join(PROFILERS)}")
    if runs < 1 or warmup < 0:
        raise UsageError(f"profiling needs runs >= 1 and warmup >= 0 (got {runs}, {warmup})")
    return run_isolated("cvtune.profiling:profile_here",
                        {"model_path": str(model_path), "runtime": rt.to_dict(),
                         "input_shape": [int(d) for d in input_shape], "runs": runs, "warmup": warmup},
                        timeout=timeout)


def profile_here(model_path: str, runtime: dict[str, Any], input_shape: list[int], runs: int = 5,
                 warmup: int = 2) -> dict[str, float]:
    """The child side of profile_model (runs in this process)."""
    rt = runtime_from_dict(runtime)
    x = np.random.default_rng(0).random(tuple(input_shape), dtype=np.float32)
    totals = PROFILERS[rt.name](Path(model_path), rt, x, runs, warmup)
    return {op: ms / runs for op, ms in sorted(totals.items(), key=lambda kv: -kv[1]) if ms > 0}


def _profile_opencv(model_path: Path, rt: Runtime, x: np.ndarray, runs: int, warmup: int) -> dict[str, float]:
    """Net.getPerfProfile after each forward: per-layer ticks of that run, summed by OpenCV layer type."""
    import cv2

    session = rt.open(model_path)
    net = session.net  # type: ignore[attr-defined]
    for _ in range(warmup):
        session.run(x)
    names = list(net.getLayerNames())
    types = [net.getLayer(net.getLayerId(name)).type for name in names]
    totals: dict[str, float] = defaultdict(float)
    ms_per_tick = 1000.0 / cv2.getTickFrequency()
    for _ in range(runs):
        session.run(x)
        _, per_layer = net.getPerfProfile()
        for kind, ticks in zip(types, np.asarray(per_layer, dtype=np.float64).ravel(), strict=False):
            totals[kind] += float(ticks) * ms_per_tick
    session.close()
    return totals


def _profile_ort(model_path: Path, rt: Runtime, x: np.ndarray, runs: int, warmup: int) -> dict[str, float]:
    """An InferenceSession with the runtime's settings and enable_profiling; the trace's kernel events after the
    warm-up, summed by ONNX op type."""
    import onnxruntime as ort

    from .runtimes.ort import EXECUTION_MODES, GRAPH_OPT, PROVIDER_ALIASES

    rt.check()
    settings = rt.to_dict()
    with tempfile.TemporaryDirectory(prefix="cvtune-profile-") as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        if settings.get("threads"):
            options.intra_op_num_threads = int(settings["threads"])
        if settings.get("inter_threads"):
            options.inter_op_num_threads = int(settings["inter_threads"])
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPT[settings["graph_opt"]])
        options.execution_mode = getattr(ort.ExecutionMode, EXECUTION_MODES[settings["execution_mode"]])
        providers = list(dict.fromkeys([PROVIDER_ALIASES[settings["provider"]], "CPUExecutionProvider"]))
        extra = {"disabled_optimizers": list(settings["disabled_optimizers"])} \
            if settings.get("disabled_optimizers") else {}
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers, **extra)
        feed = {session.get_inputs()[0].name:
                x.astype(np.float16) if session.get_inputs()[0].type == "tensor(float16)" else x}
        for _ in range(warmup):
            session.run(None, feed)
        mark_us = (time.time_ns() - session.get_profiling_start_time_ns()) / 1000
        for _ in range(runs):
            session.run(None, feed)
        trace = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    for event in trace:
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time") \
                and event.get("ts", 0) >= mark_us:
            totals[event.get("args", {}).get("op_name", "?")] += event.get("dur", 0) / 1000.0
    return totals


def _profile_openvino(model_path: Path, rt: Runtime, x: np.ndarray, runs: int, warmup: int) -> dict[str, float]:
    """A compiled model with PERF_COUNT on; each infer request's profiling info (executed nodes only), summed by
    OpenVINO node type."""
    from .runtimes.openvino import _core

    rt.check()
    compiled = _core().compile_model(str(model_path), rt.device, {**rt.config(), "PERF_COUNT": "YES"})  # type: ignore[attr-defined]
    request = compiled.create_infer_request()
    for _ in range(warmup):
        request.infer({0: x})
    totals: dict[str, float] = defaultdict(float)
    for _ in range(runs):
        request.infer({0: x})
        for info in request.get_profiling_info():
            if "EXECUTED" in str(info.status):
                totals[info.node_type] += info.real_time.total_seconds() * 1000.0
    return totals


Profiler = Callable[[Path, Runtime, np.ndarray, int, int], dict[str, float]]
# runtime name -> profiler; a runtime without an entry is refused by name
PROFILERS: dict[str, Profiler] = {"opencv": _profile_opencv, "ort": _profile_ort, "openvino": _profile_openvino}
