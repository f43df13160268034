"""The search space: a Candidate is which passes to apply to the model (cvtune.passes), how to feed it (input
size or a scale of the task's own resizing) and how to run it (runtime settings, batch, instances).

Candidates are frozen, hashable and JSON-serializable; `Candidate.key()` (sha256 of canonical JSON) is what the
trial store keys on, so a finished candidate is never measured twice. `Candidate.model_key()` names the model
file its passes produce, so candidates that differ only in runtime settings share one built model.
The techniques come from the pass registry: a registered pass enters the space through `SpaceConfig.transforms`
without any change here.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..passes import (
    PASSES,
    ChannelAllocate,
    ChannelPrune,
    Int8Static,
    NncfInt8,
    NncfInt8AccuracyControl,
    Pass,
    Simplify,
    pass_choice,
    pass_from_dict,
)
from ..runtimes import RUNTIMES, Runtime, make_runtime, runtime_from_dict

# Test-only failure injection. Honoured only when CVTUNE_TEST_HOOKS=1 is set, so users cannot hit it by accident.
DEBUG_HOOKS = ("", "abort", "hang")
TEST_HOOKS_ENV = "CVTUNE_TEST_HOOKS"


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def short_hash(data: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:length]


def test_hooks_enabled() -> bool:
    return os.environ.get(TEST_HOOKS_ENV) == "1"


Transforms = tuple[Pass, ...]  # the passes of a candidate, in build order


@dataclass(frozen=True)
class Candidate:
    """One configuration to measure: passes + input feeding + runtime settings (threads live in the runtime)."""

    passes: Transforms = ()
    runtime: Runtime = field(default_factory=lambda: make_runtime("opencv"))
    input_size: tuple[int, int] | None = None  # (H, W) fed to the model; None = the task's own resizing
    input_scale: float = 1.0  # scale of the task's own (aspect-preserving) resizing; see TASK_SCALE_OPTIONS
    batch: int = 1
    instances: int = 1
    debug: str = ""  # test-only failure injection (see DEBUG_HOOKS)

    def __post_init__(self) -> None:
        passes = tuple(sorted(self.passes, key=lambda p: (p.order, p.name)))
        object.__setattr__(self, "passes", passes)
        slots = [p.slot for p in passes]
        if len(set(slots)) != len(slots):
            raise UsageError(f"one technique per kind: {', '.join(p.label() for p in passes)} share a slot")
        if self.batch < 1 or self.instances < 1:
            raise UsageError(f"batch and instances must be >= 1 (got {self.batch}, {self.instances})")
        if self.debug not in DEBUG_HOOKS:
            raise UsageError(f"unknown debug hook '{self.debug}'")
        if self.input_size is not None:
            object.__setattr__(self, "input_size", (int(self.input_size[0]), int(self.input_size[1])))
        if not 0.1 <= self.input_scale <= 2:
            raise UsageError(f"input scale must be in [0.1, 2] (got {self.input_scale})")
        if self.input_size is not None and self.input_scale != 1.0:
            raise UsageError("give either a fixed input size or a scale of the task's resizing, not both")
        for p in passes:
            if not runs_on(p, self.runtime):
                raise UsageError(f"{p.label()} writes a model only {', '.join(p.runtimes or ())} can run; pair it "
                                 f"with that runtime, not {self.runtime.name}")

    @property
    def static(self) -> bool:
        """A pass that fixes shapes (simplification) with a fixed input size builds a model for that size."""
        return self.input_size is not None and any(p.fixes_shape for p in self.passes)

    def pass_in(self, slot: str) -> Pass | None:
        return next((p for p in self.passes if p.slot == slot), None)

    def model_fields(self) -> dict[str, Any]:
        """Only what changes the model file (the input size matters only for static shapes)."""
        return {"passes": [p.to_dict() for p in self.passes],
                "static_size": list(self.input_size) if self.static else None}

    def model_key(self, source_hash: str) -> str:
        return short_hash({"source": source_hash, **self.model_fields()})

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"passes": [p.to_dict() for p in self.passes], "runtime": self.runtime.to_dict(),
                                "input_size": list(self.input_size) if self.input_size else None,
                                "batch": self.batch, "instances": self.instances}
        if self.input_scale != 1.0:
            data["input_scale"] = self.input_scale
        if self.debug:
            data["debug"] = self.debug
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(passes=tuple(pass_from_dict(p) for p in data.get("passes", ())),
                   runtime=runtime_from_dict(data["runtime"]),
                   input_size=tuple(data["input_size"]) if data.get("input_size") else None,
                   input_scale=float(data.get("input_scale", 1.0)), batch=int(data.get("batch", 1)),
                   instances=int(data.get("instances", 1)), debug=data.get("debug", ""))

    def key(self) -> str:
        return short_hash(self.to_dict())

    def metric_key(self, source_hash: str) -> str:
        """Candidates with equal metric_key compute the same outputs: threads, batch and instances do not change
        what a model computes, so their accuracy is measured once and shared."""
        runtime = {k: v for k, v in self.runtime.to_dict().items() if k not in ("threads", "inter_threads")}
        return short_hash({"model": self.model_key(source_hash), "runtime": runtime,
                           "input_size": list(self.input_size or ()) or None, "input_scale": self.input_scale,
                           "debug": self.debug})

    def transforms_label(self) -> str:
        parts = []
        if self.input_size:
            parts.append(f"{self.input_size[0]}x{self.input_size[1]}")
        if self.input_scale != 1.0:
            parts.append(f"scale {self.input_scale:g}")
        for p in self.passes:
            parts.append("static+slim" if p.fixes_shape and self.static else p.label())
        if self.debug:
            parts.append(f"debug:{self.debug}")
        return ", ".join(parts) or "as given"

    def label(self) -> str:
        extra = [f"b{self.batch}"] * (self.batch > 1) + [f"x{self.instances}"] * (self.instances > 1)
        return " ".join([self.runtime.label(), *extra]) + f" | {self.transforms_label()}"


def runs_on(p: Pass, runtime: Runtime) -> bool:
    """Whether `runtime` can run what pass `p` writes (Pass.runtimes; None: every runtime)."""
    return p.runtimes is None or runtime.name in p.runtimes


def baseline_candidate(source: str | Path | None = None) -> Candidate:
    """The model as given on its own runtime: a .tflite in LiteRT, its authors' interpreter, where installed (it
    ran MediaPipe's palm detector 5.8x faster than OpenCV's defaults: a speed-up counted from OpenCV would flatter
    the answer);
    anything else the way the article runs it, OpenCV DNN with its defaults."""
    if source is not None and "litert" in RUNTIMES and make_runtime("litert").reads(source):
        return Candidate((), make_runtime("litert"))
    return Candidate((), make_runtime("opencv"))


def runnable(cand: Candidate, source_suffix: str) -> bool:
    """Whether the candidate's runtime reads the file it would run: the built model (.onnx, or what its last pass
    writes), else the source itself or cvtune's ONNX conversion of it (LiteRT reads .tflite only)."""
    formats = type(cand.runtime).formats
    if cand.passes:
        from ..passes.build import output_suffix

        return output_suffix(cand.passes) in formats
    return source_suffix.lower() in formats or ".onnx" in formats


# ------------------------------------------------------------------------------------------ the space

Choices = tuple[tuple[str, tuple[Pass | None, ...]], ...]  # (slot, the values it takes; None = off)


def _choices_to_dict(choices: Choices) -> dict[str, list[dict | None]]:
    return {slot: [None if p is None else p.to_dict() for p in values] for slot, values in choices}


def _choices_from_dict(data: dict[str, list]) -> Choices:
    return tuple((slot, tuple(None if p is None else pass_from_dict(p) for p in values))
                 for slot, values in data.items())


@dataclass(frozen=True)
class SpaceConfig:
    """Which values each axis of the space takes. `transforms` lists, per pass slot, the passes to try
    (None = that slot off); slots not listed are off."""

    runtimes: tuple[str, ...] = ("opencv", "ort")  # families; opencv expands to each available engine (the
    #                                               presets add openvino where installed)
    opencv_engines: tuple[str, ...] = ("new", "classic")
    threads: tuple[int, ...] = ()  # () = 1 and all cores
    input_scales: tuple[float, ...] = (1.0, 0.75, 0.5)  # of the task's resolution (or the representative size)
    keep_task_resize: bool = True  # also try the task's own per-image resizing (input_size None)
    fixed_sizes: bool | None = None  # fixed (H, W) sizes from input_scales; None = only for tasks without a
    #                                  resolution option (TASK_SCALE_OPTIONS), whose own resizing keeps aspect
    transforms: Choices = (("simplify", (None, Simplify())), ("prune", (None, ChannelPrune(0.25, "l1"))),
                           ("precision", (None, Int8Static("qoperator"))))
    batches: tuple[int, ...] = (1,)
    instances: tuple[int, ...] = (1,)
    debug: tuple[str, ...] = ()  # test hooks, e.g. ("abort",): adds candidates that crash on purpose

    def __post_init__(self) -> None:
        unknown = [r for r in self.runtimes if r not in RUNTIMES]
        if unknown:
            raise UsageError(f"unknown runtime '{unknown[0]}'; choose from: {', '.join(RUNTIMES)}")
        if not self.runtimes:
            raise UsageError("the search needs at least one runtime (e.g. --runtimes opencv,ort)")
        for scale in self.input_scales:
            if not 0.1 <= scale <= 2:
                raise UsageError(f"input scale {scale} is outside [0.1, 2]")
        for slot, values in self.transforms:
            for p in values:
                if p is not None and p.slot != slot:
                    raise UsageError(f"technique {p.label()} belongs to '{p.slot}', not '{slot}'")
        if self.debug and not test_hooks_enabled():
            raise UsageError(f"debug hooks are for cvtune's own tests (set {TEST_HOOKS_ENV}=1)")

    def slot_values(self, slot: str) -> tuple[Pass | None, ...]:
        return next((values for s, values in self.transforms if s == slot), (None,))

    def with_slot(self, slot: str, values: tuple[Pass | None, ...]) -> SpaceConfig:
        """The same space with `slot` taking `values` (added when missing)."""
        rest = tuple((s, v) for s, v in self.transforms if s != slot)
        return replace(self, transforms=(*rest, (slot, tuple(values))))

    def to_dict(self) -> dict[str, Any]:
        return {"runtimes": list(self.runtimes), "opencv_engines": list(self.opencv_engines),
                "threads": list(self.threads), "input_scales": list(self.input_scales),
                "keep_task_resize": self.keep_task_resize, "fixed_sizes": self.fixed_sizes,
                "transforms": _choices_to_dict(self.transforms), "batches": list(self.batches),
                "instances": list(self.instances), "debug": list(self.debug)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpaceConfig:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "transforms"}
        if "transforms" in data:
            values["transforms"] = _choices_from_dict(data["transforms"])
        return cls(**values)


def slot_choices(slot: str, texts: str, *, like: Pass | None = None) -> tuple[Pass | None, ...]:
    """CLI lists into a slot's values: '0,0.25' for pruning ratios (settings taken from `like`), or technique
    names such as 'none,int8-qdq,fp16'."""
    values: list[Pass | None] = []
    for text in (t.strip() for t in texts.split(",") if t.strip()):
        try:
            number = float(text)
        except ValueError:
            values.append(pass_choice(text, slot))
            continue
        if number == 0:
            values.append(None)
        elif like is not None and hasattr(like, "ratio"):
            values.append(replace(like, ratio=number))
        elif like is not None and hasattr(like, "sparsity"):
            values.append(replace(like, sparsity=number))
        else:
            raise UsageError(f"'{text}' is a number, but the {slot} techniques are named: e.g. none,int8-qdq")
    return tuple(dict.fromkeys(values)) or (None,)


def space_preset(name: str, **overrides: Any) -> SpaceConfig:
    """A named space (see SPACE_PRESETS) with some fields replaced, e.g. space_preset("quick", threads=(2,))."""
    if name not in SPACE_PRESETS:
        raise UsageError(f"unknown space preset '{name}'; choose one of: {', '.join(SPACE_PRESETS)}")
    return replace(SPACE_PRESETS[name](), **overrides)


def _prune(ratio: float, importance: str) -> ChannelPrune:
    return ChannelPrune(ratio=ratio, importance=importance)


def _openvino() -> tuple[str, ...]:
    """OpenVINO where it is installed: its fp32 is then a runtime like the others."""
    return ("openvino",) if "openvino" in RUNTIMES else ()


def _optional() -> tuple[str, ...]:
    """The optional runtimes where installed: OpenVINO, and LiteRT (it runs .tflite files only: other models get
    no LiteRT candidates, see `runnable`)."""
    return (*_openvino(), *(("litert",) if "litert" in RUNTIMES else ()))


def _nncf() -> tuple[Pass, ...]:
    """NNCF's post-training int8 (an OpenVINO IR) where NNCF and OpenVINO are installed."""
    return (NncfInt8(),) if _openvino() and NncfInt8.available() else ()


def _nncf_ac() -> tuple[Pass, ...]:
    """NNCF int8 with accuracy control (layers back to float until within 1% on held-out calibration images): built
    in 13 s on PP-OCRv4 det here, where plain NNCF int8 already kept hmean (bench_quantize)."""
    return (NncfInt8AccuracyControl(),) if _nncf() and NncfInt8AccuracyControl.available() else ()


def _allocations(*targets: float) -> tuple[ChannelAllocate, ...]:
    """Latency-driven channel pruning (prune-15/30/45): per-group ratios from measured cost and sensitivity. On
    PP-OCRv4 det -35% kept hmean where uniform pruning at the same predicted speed collapsed it (README)."""
    return tuple(ChannelAllocate(target=t) for t in targets)


def _default_space() -> SpaceConfig:
    """SpaceConfig's runtimes and int8, latency-driven pruning, and OpenVINO fp32 / NNCF int8 where installed."""
    space = SpaceConfig()
    space = replace(space, runtimes=(*space.runtimes, *_optional()))
    space = space.with_slot("prune", (None, *_allocations(0.15, 0.3)))
    return space.with_slot("precision", (*space.slot_values("precision"), *_nncf()))


SPACE_PRESETS: dict[str, Any] = {
    # The levers that pay off on a CPU in minutes: runtime, int8 where the runtime has fast int8 kernels (ORT's
    # QOperator with VNNI, NNCF's on OpenVINO), latency-driven channel pruning; all cores for latency; the task's
    # resize only upscales, so smaller scales bought little speed and cost hmean. OpenVINO fp32 (where installed)
    # is cheap to try: nothing to build, and its outputs match the model's, so its accuracy settles on the first
    # chunk of images. The anytime planner orders these by expected gain per second.
    "quick": lambda: SpaceConfig(runtimes=("opencv", "ort", *_optional()), opencv_engines=("new",),
                                 threads=(max(default_threads()),), input_scales=(1.0,),
                                 transforms=(("prune", (None, *_allocations(0.3))),
                                             ("precision", (None, Int8Static("qoperator"), *_nncf())))),
    # SpaceConfig's defaults with latency-driven pruning; where installed, OpenVINO fp32 and NNCF's int8.
    "default": _default_space,
    # Everything: both OpenCV engines, every int8/fp16 variant, uniform and latency-driven pruning; large, so optuna
    # samples it.
    "full": lambda: SpaceConfig(runtimes=("opencv", "ort", *_optional()), input_scales=(1.0, 0.875, 0.75, 0.625, 0.5),
                                transforms=(
        ("simplify", (None, Simplify())),
        ("prune", (None, _prune(0.25, "l1"), _prune(0.5, "l1"), *_allocations(0.15, 0.3, 0.45),
                   ChannelAllocate(max_drop=0.01))),
        ("precision", (None, PASSES["fp16"](), Int8Static("qdq"), Int8Static("qoperator"), *_nncf(), *_nncf_ac())))),
}


@dataclass(frozen=True)
class ModelFacts:
    """What the space needs to know about the model and task to decide which axes apply."""

    representative_size: tuple[int, int] | None  # (H, W) the task feeds for a typical image
    resizable: bool  # fully convolutional (dynamic H, W) and the task accepts another input size
    size_multiple: int = 1
    dynamic_batch: bool = True
    scalable: bool = False  # the task has a resolution option (TASK_SCALE_OPTIONS)
    source_suffix: str = ".onnx"  # the model file's format: which runtimes read it as given


# Tasks whose own resizing has a resolution knob: task -> option name. A scale s sets option = round(s * default),
# so the aspect ratio is kept (a fixed H x W would distort images of other shapes and cost accuracy).
TASK_SCALE_OPTIONS: dict[str, str] = {"textdet": "limit_side_len"}


def scaled_task_options(task: str, options: dict[str, Any], default: Any, scale: float) -> dict[str, Any]:
    """The task options for a resolution `scale` (unchanged at 1.0 or for tasks without a resolution option)."""
    name = TASK_SCALE_OPTIONS.get(task)
    if name is None or scale == 1.0:
        return dict(options)
    base = options.get(name, default)
    return {**options, name: max(1, int(round(float(base) * scale)))}


def default_threads() -> tuple[int, ...]:
    try:
        import psutil

        cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:  # pragma: no cover - psutil is a dependency
        cores = os.cpu_count() or 1
    return tuple(sorted({1, int(cores)}))


def input_sizes(config: SpaceConfig, facts: ModelFacts) -> list[tuple[int, int] | None]:
    """Fixed sizes to try (at each scale of the representative size), after the task's own resizing (None)."""
    fixed = config.fixed_sizes if config.fixed_sizes is not None else not facts.scalable
    if not fixed or not facts.resizable or facts.representative_size is None:
        return [None]
    sizes: list[tuple[int, int] | None] = [None] if config.keep_task_resize else []
    m = max(1, facts.size_multiple)
    h0, w0 = facts.representative_size
    for scale in config.input_scales:
        size = (max(m, int(round(h0 * scale / m)) * m), max(m, int(round(w0 * scale / m)) * m))
        if size not in sizes:
            sizes.append(size)
    return sizes or [None]


def input_scales(config: SpaceConfig, facts: ModelFacts) -> list[float]:
    """Scales of the task's own resizing (tasks with a resolution option only)."""
    if not facts.scalable or not facts.resizable:
        return [1.0]
    scales = [1.0] if config.keep_task_resize or 1.0 in config.input_scales else []
    return scales + [s for s in config.input_scales if s != 1.0]


def runtime_choices(config: SpaceConfig, threads: tuple[int, ...], *, objective: str = "latency") -> list[Runtime]:
    """The runtime settings to try: each OpenCV engine, ONNX Runtime, and OpenVINO with its latency hint at each
    thread count, plus (throughput objective only: one synchronous request uses one stream) its throughput hint."""
    from ..runtimes.opencv import available_engines

    choices: list[Runtime] = []
    for family in config.runtimes:
        if family == "opencv":
            engines = [e for e in config.opencv_engines if e in available_engines()] or ["auto"]
            choices += [make_runtime("opencv", engine=e, threads=t) for e in engines for t in threads]
        elif family == "openvino":
            from ..runtimes.openvino import search_variants

            choices += [rt for rt in search_variants(threads) if objective == "throughput" or rt.hint == "latency"]
        else:
            choices += [make_runtime(family, threads=t) for t in threads]
    return choices


def transform_axes(config: SpaceConfig, *, objective: str = "latency") -> dict[str, list[Pass | None]]:
    """One axis per pass slot: the configured passes whose modules are installed and that serve `objective`."""
    axes: dict[str, list[Pass | None]] = {}
    for slot, values in config.transforms:
        kept = [p for p in values if p is None or (type(p).available() and objective in p.objectives)]
        if any(p is not None for p in kept):
            axes[f"pass:{slot}"] = list(dict.fromkeys(kept))
    return axes


def space_notes(config: SpaceConfig, *, objective: str = "latency") -> list[str]:
    """Why a configured pass is left out of the space: a module it needs is not installed, or none of the runtimes
    that run its output is searched (said once per pass, for the report)."""
    notes = []
    for _, values in config.transforms:
        for p in dict.fromkeys(v for v in values if v is not None):
            missing = type(p).missing()
            if missing:
                notes.append(f"{p.label()} is left out of the search: it needs {', '.join(missing)}, which is not "
                             f"installed")
            elif objective in p.objectives and p.runtimes is not None and not set(p.runtimes) & set(config.runtimes):
                notes.append(f"{p.label()} is left out of the search: only {', '.join(p.runtimes)} runs its model, "
                             f"and the search's runtimes are {', '.join(config.runtimes)}")
    return notes


def space_axes(config: SpaceConfig, facts: ModelFacts, *, objective: str = "latency") -> dict[str, list[Any]]:
    """Each axis of the space with its values."""
    threads = config.threads or default_threads()
    return {
        "runtime": runtime_choices(config, threads, objective=objective),
        "input_size": input_sizes(config, facts),
        "input_scale": input_scales(config, facts),
        **transform_axes(config, objective=objective),
        "batch": list(config.batches if facts.dynamic_batch else (1,)) or [1],
        "instances": list(config.instances) or [1],
    }


def candidate_from(values: dict[str, Any], source_suffix: str = ".onnx") -> Candidate | None:
    """The candidate for one value per axis, or None for a combination that cannot exist (static shapes fix the
    batch at 1, so a static model cannot take a bigger batch; a fixed size and a resize scale exclude each other;
    a pass whose output only some runtimes run (Pass.runtimes) goes with those only)."""
    if values["input_size"] is not None and float(values.get("input_scale", 1.0)) != 1.0:
        return None
    passes = tuple(v for k, v in values.items() if k.startswith("pass:") and v is not None)
    if not all(runs_on(p, values["runtime"]) for p in passes):  # e.g. NNCF's OpenVINO IR on ONNX Runtime
        return None
    cand = Candidate(passes, values["runtime"], input_size=values["input_size"],
                     input_scale=float(values.get("input_scale", 1.0)), batch=int(values["batch"]),
                     instances=int(values["instances"]))
    if (cand.static and cand.batch > 1) or not runnable(cand, source_suffix):
        return None
    return cand


def build_space(config: SpaceConfig, facts: ModelFacts, *, objective: str = "latency") -> list[Candidate]:
    """Every candidate of the space (the product of its axes), in a fixed order, plus any test hooks."""
    axes = space_axes(config, facts, objective=objective)
    names = list(axes)
    seen: set[str] = set()
    out: list[Candidate] = []
    for combo in itertools.product(*(axes[n] for n in names)):
        cand = candidate_from(dict(zip(names, combo, strict=True)), facts.source_suffix)
        if cand is not None and cand.key() not in seen:
            seen.add(cand.key())
            out.append(cand)
    threads = config.threads or default_threads()
    for hook in config.debug:
        cand = Candidate((), make_runtime("ort", threads=threads[0]), debug=hook)
        if cand.key() not in seen:
            seen.add(cand.key())
            out.append(cand)
    return out
