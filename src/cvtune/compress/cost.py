"""What each channel group costs on the target runtime, measured, not counted in FLOPs.

Choice: one per-layer profile per runtime (ONNX Runtime's `SessionOptions.enable_profiling` on the graph ORT really
runs, after its fusions and layout changes; OpenCV's `Net.getPerfProfile`, whose layer names are the ONNX node
names), mapped back to the channel spaces each layer reads and writes. A layer's time scales with the fraction of
channels kept in the spaces its work depends on: a dense conv with (kept in) x (kept out), a depthwise conv or an
elementwise op with the kept fraction of its one space. One profile (a few seconds) then predicts the latency of
*any* allocation, which a greedy allocation needs thousands of times; timing the model once per group and ratio
would cost minutes per runtime and drown 1-3% savings in a shared machine's noise. Layers the profile cannot map
(OpenCV's layout transposes, ORT's reorders that feed no known tensor) are counted as fixed cost, so savings are
under- rather than over-predicted. How well the prediction tracks the measured saving is printed by
bench/bench_compress.py.

    profile = profile_layers(proto, make_runtime("ort"), (1, 3, 640, 640))
    costs = CostModel.build(proto, profile, input_shape=(1, 3, 640, 640))
    costs.ranking()[:3]                   # the groups whose cut saves the most time
    costs.saving({"p2o.Conv.37": 0.5})    # predicted fraction of latency saved
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import tempfile
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import ModelError, UsageError
from ..files import write_json
from ..isolate import run_isolated
from ..runtimes import Runtime, make_runtime, runtime_from_dict
from .graph import prepare
from .plan import GraphChannels, analyze_channels

__all__ = ["LayerTime", "LayerProfile", "PROFILERS", "profile_layers", "profile_cost", "CostModel", "cache_dir",
           "keep_fraction"]

CONV_OPS = ("Conv", "ConvTranspose", "FusedConv", "NhwcConv", "ConvInteger", "QLinearConv")
FORMAT = "cvtune-layer-profile/2"  # 2: NCHWc nodes mapped through their names


def cache_dir() -> Path:
    """Where measured profiles and sensitivity curves are kept between runs: $CVTUNE_CACHE_DIR, else
    $XDG_CACHE_HOME/cvtune, else ~/.cache/cvtune."""
    root = os.environ.get("CVTUNE_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cvtune"


@dataclass(frozen=True)
class LayerTime:
    """One layer as the runtime ran it: its name there, op type, median milliseconds per run, and the original
    tensors its work reads (`source`) and writes (`output`); '' where the profile cannot tell."""

    name: str
    op: str
    ms: float
    source: str
    output: str


@dataclass(frozen=True)
class LayerProfile:
    """Per-layer times of one model on one runtime at one input shape, with the measured end-to-end median."""

    runtime: dict[str, Any]
    input_shape: tuple[int, ...]
    total_ms: float
    layers: tuple[LayerTime, ...]
    host: str = ""

    @property
    def layer_ms(self) -> float:
        return float(sum(layer.ms for layer in self.layers))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "runtime": self.runtime, "input_shape": list(self.input_shape),
                "total_ms": self.total_ms, "host": self.host,
                "layers": [[t.name, t.op, t.ms, t.source, t.output] for t in self.layers]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerProfile:
        if data.get("format") != FORMAT:
            raise UsageError(f"not a cvtune layer profile (format {data.get('format')!r})")
        return cls(dict(data["runtime"]), tuple(data["input_shape"]), float(data["total_ms"]),
                   tuple(LayerTime(str(n), str(o), float(ms), str(s), str(out)) for n, o, ms, s, out in data["layers"]),
                   str(data.get("host", "")))


# ------------------------------------------------------------------------------------------------ profilers
# runtime name -> function(model path, runtime, input shape, runs, scratch folder) -> (layers, end-to-end ms).
Profiler = Callable[[Path, Runtime, tuple[int, ...], int, Path], tuple[list[LayerTime], float]]
PROFILERS: dict[str, Profiler] = {}


def profiler(name: str) -> Callable[[Profiler], Profiler]:
    def register(fn: Profiler) -> Profiler:
        PROFILERS[name] = fn
        return fn

    return register


def _tensor_ends(proto: onnx.ModelProto) -> dict[str, tuple[str, str, str]]:
    """node name -> (op type, first dynamic input, first output) in the prepared graph."""
    inits = {t.name for t in proto.graph.initializer}
    out = {}
    for node in proto.graph.node:
        src = next((i for i in node.input if i and i not in inits), "")
        out[node.name] = (node.op_type, src, node.output[0] if node.output else "")
    return out


@profiler("opencv")
def _opencv_layers(path: Path, runtime: Runtime, shape: tuple[int, ...], runs: int, workdir: Path
                   ) -> tuple[list[LayerTime], float]:
    """cv2.dnn.Net.getPerfProfile after each forward: per-layer ticks, layer names = ONNX node names (the classic
    engine prefixes 'onnx_node!'); layers fused into another report 0 and vanish."""
    import time

    import cv2

    from .. import model as model_mod

    ends = _tensor_ends(model_mod.load_onnx(path))
    session = runtime.open(path)
    net = session.net
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    names = None
    per_run: list[np.ndarray] = []
    totals = []
    for i in range(runs + 2):
        t0 = time.perf_counter()
        session.run(x)
        elapsed = (time.perf_counter() - t0) * 1000
        if i < 2:
            continue
        _, layer_ticks = net.getPerfProfile()
        names = names or list(net.getLayerNames())
        per_run.append(np.asarray(layer_ticks, dtype=np.float64).ravel())
        totals.append(elapsed)
    session.close()
    ms = np.median(np.stack(per_run), axis=0) * 1000.0 / cv2.getTickFrequency()
    layers = []
    for name, value in zip(names or [], ms, strict=False):
        if value <= 0:
            continue
        node = name.split("!", 1)[1] if name.startswith("onnx_node!") else name
        op, src, out = ends.get(node, (name.split(".")[0], "", ""))  # e.g. 'trlayout.3': a layout change
        layers.append(LayerTime(node, op, float(value), src, out))
    return layers, float(np.median(totals))


@profiler("ort")
def _ort_layers(path: Path, runtime: Runtime, shape: tuple[int, ...], runs: int, workdir: Path
                ) -> tuple[list[LayerTime], float]:
    """ORT's own profiler on the session the runtime settings make, plus the optimized graph it saves, so fused
    and re-laid-out nodes (named after the tensor they write, e.g. 'x_nchwc') map back to original tensors."""
    import time

    import onnxruntime as ort

    from ..runtimes.ort import EXECUTION_MODES, GRAPH_OPT, PROVIDER_ALIASES

    options = ort.SessionOptions()
    options.log_severity_level = 3
    threads = getattr(runtime, "threads", None)
    if threads:
        options.intra_op_num_threads = int(threads)
    inter = getattr(runtime, "inter_threads", None)
    if inter:
        options.inter_op_num_threads = int(inter)
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                               GRAPH_OPT[getattr(runtime, "graph_opt", "all")])
    options.execution_mode = getattr(ort.ExecutionMode,
                                     EXECUTION_MODES[getattr(runtime, "execution_mode", "sequential")])
    optimized = workdir / "optimized.onnx"
    options.optimized_model_filepath = str(optimized)
    options.enable_profiling = True
    options.profile_file_prefix = str(workdir / "ort-profile")
    provider = PROVIDER_ALIASES[getattr(runtime, "provider", "cpu")]
    session = ort.InferenceSession(str(path), sess_options=options, providers=[provider])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    totals = []
    for i in range(runs + 2):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        if i >= 2:
            totals.append((time.perf_counter() - t0) * 1000)
    trace = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = defaultdict(list)
    ops: dict[str, str] = {}
    for event in trace:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        node = event["name"][: -len("_kernel_time")]
        per_node[node].append(float(event["dur"]) / 1000.0)
        ops[node] = str(event.get("args", {}).get("op_name", ""))
    opt = onnx.load(str(optimized), load_external_data=False) if optimized.is_file() else None
    original = {o for n in onnx.load(str(path), load_external_data=False).graph.node for o in n.output}
    ends = _ort_tensor_ends(opt, original) if opt is not None else {}
    layers = []
    for node, values in per_node.items():
        # the first 2 runs were warm-up: keep the last `runs` occurrences (a node runs once per run)
        ms = float(np.median(values[-runs:])) if values else 0.0
        src, out = ends.get(node, ("", ""))
        layers.append(LayerTime(node, ops.get(node, ""), ms, src, out))
    return layers, float(np.median(totals))


def _ort_tensor_ends(opt: onnx.ModelProto, original: set[str]) -> dict[str, tuple[str, str]]:
    """Optimized node -> (original tensor its work reads, original tensor it writes). ORT names a fused NCHWc node
    after the original tensor it computes ('r0_nchwc' writes r0, in blocked layout, as 'reorder_token_N'); tensors
    ORT made up are followed back through reorders to the original tensor they carry."""
    producer = {o: n for n in opt.graph.node for o in n.output if o}
    inits = {t.name for t in opt.graph.initializer}

    def writes(node: onnx.NodeProto) -> str:
        stripped = node.name[: -len("_nchwc")] if node.name.endswith("_nchwc") else ""
        if stripped in original:
            return stripped
        out = node.output[0] if node.output else ""
        if out in original:
            return out
        if node.op_type.startswith("Reorder"):
            return carried(next((i for i in node.input if i and i not in inits), ""))
        return ""

    def carried(name: str, depth: int = 0) -> str:
        if not name or name in original:
            return name
        node = producer.get(name)
        return writes(node) if node is not None and depth < 16 else ""

    out = {}
    for node in opt.graph.node:
        src = next((i for i in node.input if i and i not in inits), "")
        out[node.name] = (carried(src), writes(node))
    return out


def _host() -> str:
    """What the timing depends on besides the model: CPU model and core count."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} x{os.cpu_count()}"


def _profile_child(model: str, runtime: dict[str, Any], shape: list[int], runs: int) -> dict[str, Any]:
    """Runs in a child process (cvtune.isolate): profile the prepared model file, return a LayerProfile dict."""
    rt = runtime_from_dict(runtime)
    family = runtime["runtime"]
    with tempfile.TemporaryDirectory(prefix="cvtune-profile-") as tmp:
        layers, total = PROFILERS[family](Path(model), rt, tuple(shape), runs, Path(tmp))
    return LayerProfile(runtime, tuple(shape), total, tuple(layers), _host()).to_dict()


def profile_layers(model: onnx.ModelProto, runtime: Runtime | str, input_shape: tuple[int, ...], *, runs: int = 5,
                   cache: bool = True, timeout: float = 600.0) -> LayerProfile:
    """Per-layer times of `model` (prepared for pruning: the profile's node names are the planner's) on
    `runtime`, in a child process (a crashing runtime fails this call, not the caller). Cached on disk by model
    content, runtime settings, input shape and host: the same question is measured once."""
    rt = make_runtime(runtime) if isinstance(runtime, str) else runtime
    if rt.name not in PROFILERS:
        raise UsageError(f"no per-layer profiler for runtime '{rt.name}'; measured costs exist for: "
                         f"{', '.join(PROFILERS)}")
    work = prepare(model)
    data = work.SerializeToString()
    key_src = json.dumps({"model": hashlib.sha256(data).hexdigest(), "runtime": rt.to_dict(),
                          "shape": list(input_shape), "runs": runs, "host": _host()}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    path = cache_dir() / "prune" / f"profile-{key}.json"
    if cache and path.is_file():
        try:
            return LayerProfile.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, UsageError):
            pass  # a damaged cache entry is measured again
    with tempfile.TemporaryDirectory(prefix="cvtune-cost-") as tmp:
        model_path = Path(tmp) / "prepared.onnx"
        model_path.write_bytes(data)
        result = run_isolated("cvtune.compress.cost:_profile_child",
                              {"model": str(model_path), "runtime": rt.to_dict(), "shape": list(input_shape),
                               "runs": runs}, timeout=timeout)
    profile = LayerProfile.from_dict(result)
    if not profile.layers:
        raise ModelError(f"{rt.label()} reported no per-layer times for this model")
    if cache:
        write_json(path, profile.to_dict())
    return profile


# ------------------------------------------------------------------------------------------------ the model
def keep_fraction(channels: int, ratio: float, round_to: int = 1) -> float:
    """Kept fraction of a group of `channels` cut at `ratio` (the same rounding as plan_channels)."""
    if ratio <= 0:
        return 1.0
    keep = max(1, channels - int(round(ratio * channels)))
    if round_to > 1:
        keep = min(channels, int(math.ceil(keep / round_to) * round_to))
    return keep / channels


@dataclass(frozen=True)
class _Term:
    ms: float
    spaces: tuple[str, ...]  # group/composite names whose kept fraction scales this layer (product)


@dataclass
class CostModel:
    """Predicted latency of any per-group allocation on one runtime: sum over profiled layers of their time times
    the kept fractions of the channel spaces they scale with; unmapped layers are fixed cost."""

    runtime: str
    total_ms: float
    terms: list[_Term]
    fixed_ms: float
    channels: dict[str, int]  # group -> channel count
    composites: dict[str, tuple[tuple[str, str, int], ...]] = field(default_factory=dict)
    round_to: int = 1

    @classmethod
    def build(cls, model: onnx.ModelProto, profile: LayerProfile, *, input_shape: tuple[int, ...] | None = None,
              analysis: GraphChannels | None = None, round_to: int = 1) -> CostModel:
        work = prepare(model)
        analysis = analysis or analyze_channels(work, input_shape=input_shape or profile.input_shape)
        space: dict[str, str] = {}
        for g in analysis.groups:
            for t in g.tensors:
                space[t] = g.name
        for c in analysis.composites:
            for t in c.tensors:
                space[t] = c.name
        terms, fixed = [], 0.0
        for layer in profile.layers:
            out_space = space.get(layer.output, "")
            in_space = space.get(layer.source, "")
            if any(op in layer.op for op in CONV_OPS) or layer.op.startswith("Conv"):
                spaces = tuple(dict.fromkeys(s for s in (in_space, out_space) if s))
            else:
                spaces = (out_space,) if out_space else ()
            if spaces:
                terms.append(_Term(layer.ms, spaces))
            else:
                fixed += layer.ms
        return cls(str(profile.runtime.get("runtime", "")), profile.total_ms, terms, fixed,
                   {g.name: g.channels for g in analysis.groups},
                   {c.name: c.parts for c in analysis.composites}, round_to)

    @property
    def profiled_ms(self) -> float:
        return self.fixed_ms + sum(t.ms for t in self.terms)

    @property
    def mapped_share(self) -> float:
        """Share of the profiled time that scales with some channel group (the rest is fixed)."""
        total = self.profiled_ms
        return 1.0 - self.fixed_ms / total if total else 0.0

    def _fractions(self, ratios: Mapping[str, float]) -> dict[str, float]:
        frac = {g: keep_fraction(c, float(ratios.get(g, 0.0)), self.round_to) for g, c in self.channels.items()}
        resolved: dict[str, float] = {}

        def composite(name: str, depth: int = 0) -> float:
            if name in resolved:
                return resolved[name]
            kept = total = 0.0
            for kind, part, channels in self.composites[name]:
                if kind == "group":
                    f = frac.get(part, 1.0)
                elif kind == "composite" and part in self.composites and depth < len(self.composites):
                    f = composite(part, depth + 1)
                else:
                    f = 1.0
                kept += f * channels
                total += channels
            resolved[name] = kept / total if total else 1.0
            return resolved[name]

        for name in self.composites:
            frac[name] = composite(name)
        return frac

    def latency(self, ratios: Mapping[str, float] | None = None) -> float:
        """Predicted profiled milliseconds with `ratios` (group -> fraction of channels cut)."""
        frac = self._fractions(ratios or {})
        return self.fixed_ms + sum(t.ms * math.prod(frac.get(s, 1.0) for s in t.spaces) for t in self.terms)

    def saving(self, ratios: Mapping[str, float]) -> float:
        """Predicted fraction of the latency saved by `ratios` (0.3 = 30% faster in time, 1/(1-0.3) speed-up)."""
        base = self.latency({})
        return 1.0 - self.latency(ratios) / base if base else 0.0

    def group_cost(self, name: str) -> float:
        """Milliseconds that scale with group `name` (the whole group cut would save at most this)."""
        frac = self._fractions({name: 1.0 - 1e-9})
        return float(sum(t.ms for t in self.terms if any(frac.get(s, 1.0) < 1.0 for s in t.spaces)))

    def ranking(self) -> list[tuple[str, float]]:
        """(group, milliseconds that scale with it), most expensive first."""
        return sorted(((g, self.group_cost(g)) for g in self.channels), key=lambda kv: (-kv[1], kv[0]))


def profile_cost(model: onnx.ModelProto, runtime: Runtime | str, input_shape: tuple[int, ...], *, round_to: int = 1,
                 runs: int = 5) -> CostModel:
    """Measure (or read from the cache) the per-layer profile of `model` on `runtime` and build its CostModel."""
    profile = profile_layers(model, runtime, input_shape, runs=runs)
    return CostModel.build(model, profile, input_shape=tuple(input_shape), round_to=round_to)
