"""The search space: a Candidate is which transforms to apply to the model (simplification, channel pruning,
sparsity, quantization, input size) plus how to run it (runtime settings, batch, instances).

Candidates are frozen, hashable and JSON-serializable; `Candidate.key()` (sha256 of canonical JSON) is what the
trial store keys on, so a finished candidate is never measured twice. `Transforms.model_key()` names the model
file a transform tuple produces, so candidates that differ only in runtime settings share one built model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import UsageError
from ..runtimes import RUNTIMES, Runtime, make_runtime, runtime_from_dict

QUANT_VARIANTS = ("none", "fp16", "int8-qdq", "int8-qoperator", "int8-dynamic")
PRUNE_IMPORTANCE = ("l1", "l2", "bn", "activation")
# Test-only failure injection. Honoured only when CVTUNE_TEST_HOOKS=1 is set, so users cannot hit it by accident.
DEBUG_HOOKS = ("", "abort", "hang")
TEST_HOOKS_ENV = "CVTUNE_TEST_HOOKS"


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def short_hash(data: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:length]


def test_hooks_enabled() -> bool:
    return os.environ.get(TEST_HOOKS_ENV) == "1"


@dataclass(frozen=True)
class Transforms:
    """What is done to the model file before it runs. The all-default Transforms is the model as given."""

    simplify: bool = False  # onnxslim (with static shapes when input_size is fixed)
    prune_ratio: float = 0.0  # structured channel pruning: fraction of prunable channels removed
    prune_importance: str = "l1"
    sparsity: float = 0.0  # unstructured magnitude sparsity (helps compressed size, not dense speed)
    quant: str = "none"
    input_size: tuple[int, int] | None = None  # (H, W) fed to the model; None = the task's own resizing
    input_scale: float = 1.0  # scale of the task's own (aspect-preserving) resizing; see TASK_SCALE_OPTIONS
    debug: str = ""  # test-only failure injection (see DEBUG_HOOKS)

    def __post_init__(self) -> None:
        if not 0 <= self.prune_ratio < 1:
            raise UsageError(f"prune ratio must be in [0, 1) (got {self.prune_ratio})")
        if not 0 <= self.sparsity < 1:
            raise UsageError(f"sparsity must be in [0, 1) (got {self.sparsity})")
        if self.quant not in QUANT_VARIANTS:
            raise UsageError(f"unknown quantization '{self.quant}'; choose one of: {', '.join(QUANT_VARIANTS)}")
        if self.prune_importance not in PRUNE_IMPORTANCE:
            raise UsageError(f"unknown pruning importance '{self.prune_importance}'; choose one of: "
                             f"{', '.join(PRUNE_IMPORTANCE)}")
        if self.debug not in DEBUG_HOOKS:
            raise UsageError(f"unknown debug hook '{self.debug}'")
        if self.input_size is not None:
            object.__setattr__(self, "input_size", (int(self.input_size[0]), int(self.input_size[1])))
        if not 0.1 <= self.input_scale <= 2:
            raise UsageError(f"input scale must be in [0.1, 2] (got {self.input_scale})")
        if self.input_size is not None and self.input_scale != 1.0:
            raise UsageError("give either a fixed input size or a scale of the task's resizing, not both")
        if not self.prune_ratio:  # importance means nothing without pruning: keep keys canonical
            object.__setattr__(self, "prune_importance", "l1")

    @property
    def static(self) -> bool:
        """Simplification fixes the input shape when the size is known: the graph then loses its Shape ops."""
        return self.simplify and self.input_size is not None

    def touches_model(self) -> bool:
        return bool(self.simplify or self.prune_ratio or self.sparsity or self.quant != "none")

    def model_fields(self) -> dict[str, Any]:
        """Only what changes the model file (input size matters only for static shapes)."""
        data: dict[str, Any] = {"simplify": self.simplify, "prune_ratio": self.prune_ratio,
                                "prune_importance": self.prune_importance if self.prune_ratio else "",
                                "sparsity": self.sparsity, "quant": self.quant}
        data["static_size"] = list(self.input_size) if self.static else None
        return data

    def model_key(self, source_hash: str) -> str:
        return short_hash({"source": source_hash, **self.model_fields()})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size) if self.input_size else None
        if not self.debug:
            data.pop("debug")
        if self.input_scale == 1.0:  # keep keys of candidates without a scale as they were
            data.pop("input_scale")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transforms:
        data = dict(data)
        if data.get("input_size"):
            data["input_size"] = tuple(data["input_size"])
        return cls(**data)

    def label(self) -> str:
        parts = []
        if self.input_size:
            parts.append(f"{self.input_size[0]}x{self.input_size[1]}")
        if self.input_scale != 1.0:
            parts.append(f"scale {self.input_scale:g}")
        if self.simplify:
            parts.append("static+slim" if self.static else "slim")
        if self.prune_ratio:
            parts.append(f"prune {self.prune_ratio:g} {self.prune_importance}")
        if self.sparsity:
            parts.append(f"sparse {self.sparsity:g}")
        if self.quant != "none":
            parts.append(self.quant)
        if self.debug:
            parts.append(f"debug:{self.debug}")
        return ", ".join(parts) or "as given"


@dataclass(frozen=True)
class Candidate:
    """One configuration to measure: transforms + runtime settings (threads live in the runtime)."""

    transforms: Transforms = field(default_factory=Transforms)
    runtime: Runtime = field(default_factory=lambda: make_runtime("opencv"))
    batch: int = 1
    instances: int = 1

    def __post_init__(self) -> None:
        if self.batch < 1 or self.instances < 1:
            raise UsageError(f"batch and instances must be >= 1 (got {self.batch}, {self.instances})")

    def to_dict(self) -> dict[str, Any]:
        return {"transforms": self.transforms.to_dict(), "runtime": self.runtime.to_dict(), "batch": self.batch,
                "instances": self.instances}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(Transforms.from_dict(data.get("transforms", {})), runtime_from_dict(data["runtime"]),
                   int(data.get("batch", 1)), int(data.get("instances", 1)))

    def key(self) -> str:
        return short_hash(self.to_dict())

    def metric_key(self, source_hash: str) -> str:
        """Candidates with equal metric_key compute the same outputs: threads, batch and instances do not change
        what a model computes, so their accuracy is measured once and shared."""
        runtime = {k: v for k, v in self.runtime.to_dict().items() if k not in ("threads", "inter_threads")}
        return short_hash({"model": self.transforms.model_key(source_hash), "runtime": runtime,
                           "input_size": list(self.transforms.input_size or ()) or None,
                           "input_scale": self.transforms.input_scale,
                           "debug": self.transforms.debug})

    def label(self) -> str:
        extra = []
        if self.batch > 1:
            extra.append(f"b{self.batch}")
        if self.instances > 1:
            extra.append(f"x{self.instances}")
        return " ".join([self.runtime.label(), *extra]) + f" | {self.transforms.label()}"


def baseline_candidate() -> Candidate:
    """The model as given, run the way the article runs it: OpenCV DNN with its defaults."""
    return Candidate(Transforms(), make_runtime("opencv"))


# ------------------------------------------------------------------------------------------ techniques


def module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# technique -> module that implements it; a technique whose module is missing is left out of the space.
TECHNIQUE_MODULES: dict[str, str] = {
    "simplify": "cvtune.prepare",
    "prune": "cvtune.compress.channels",
    "sparsify": "cvtune.compress.sparsify",
    "quantize": "cvtune.quantize",
    "input_size": "cvtune.tasks",
}


def available_techniques() -> dict[str, bool]:
    return {name: module_available(module) for name, module in TECHNIQUE_MODULES.items()}


@dataclass(frozen=True)
class SpaceConfig:
    """Which values each axis of the space takes. Empty tuples mean "this technique is off"."""

    runtimes: tuple[str, ...] = ("opencv", "ort")  # families; opencv expands to each available engine
    opencv_engines: tuple[str, ...] = ("new", "classic")
    threads: tuple[int, ...] = ()  # () = 1 and all cores
    input_scales: tuple[float, ...] = (1.0, 0.75, 0.5)  # of the task's resolution (or the representative size)
    keep_task_resize: bool = True  # also try the task's own per-image resizing (input_size None)
    fixed_sizes: bool | None = None  # fixed (H, W) sizes from input_scales; None = only for tasks without a
    #                                  resolution option (TASK_SCALE_OPTIONS), whose own resizing keeps aspect
    simplify: tuple[bool, ...] = (False, True)
    prune_ratios: tuple[float, ...] = (0.0, 0.25)
    prune_importance: str = "l1"
    sparsity: tuple[float, ...] = (0.0,)
    quant: tuple[str, ...] = ("none", "int8-qoperator")
    batches: tuple[int, ...] = (1,)
    instances: tuple[int, ...] = (1,)
    debug: tuple[str, ...] = ()  # test hooks, e.g. ("abort",): adds candidates that crash on purpose

    def __post_init__(self) -> None:
        unknown = [r for r in self.runtimes if r not in RUNTIMES]
        if unknown:
            raise UsageError(f"unknown runtime '{unknown[0]}'; choose from: {', '.join(RUNTIMES)}")
        if not self.runtimes:
            raise UsageError("the search needs at least one runtime (e.g. --runtimes opencv,ort)")
        for q in self.quant:
            if q not in QUANT_VARIANTS:
                raise UsageError(f"unknown quantization '{q}'; choose from: {', '.join(QUANT_VARIANTS)}")
        for scale in self.input_scales:
            if not 0.1 <= scale <= 2:
                raise UsageError(f"input scale {scale} is outside [0.1, 2]")
        if self.debug and not test_hooks_enabled():
            raise UsageError(f"debug hooks are for cvtune's own tests (set {TEST_HOOKS_ENV}=1)")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpaceConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def space_preset(name: str, **overrides: Any) -> SpaceConfig:
    """A named space (see SPACE_PRESETS) with some fields replaced, e.g. space_preset("quick", threads=(2,))."""
    if name not in SPACE_PRESETS:
        raise UsageError(f"unknown space preset '{name}'; choose one of: {', '.join(SPACE_PRESETS)}")
    return replace(SPACE_PRESETS[name](), **overrides)


SPACE_PRESETS: dict[str, Any] = {
    # The levers that pay off on a CPU in minutes: runtime, resolution, channel pruning; all cores for latency.
    # Activation importance + reconstruction (with the layers nearest the output kept dense) keeps hmean within
    # 1% at 20-30% pruning on PP-OCRv4 det where L1 at 10% lost 8%; the task's resize only upscales, so smaller
    # scales bought little speed and cost hmean.
    "quick": lambda: SpaceConfig(opencv_engines=("new",), threads=(max(default_threads()),), simplify=(False,),
                                 input_scales=(1.0,), prune_ratios=(0.0, 0.2, 0.3), prune_importance="activation",
                                 quant=("none",)),
    "default": SpaceConfig,
    # Everything: both OpenCV engines, every int8/fp16 variant, more pruning; large, so optuna samples it.
    "full": lambda: SpaceConfig(prune_ratios=(0.0, 0.25, 0.5), quant=("none", "fp16", "int8-qdq", "int8-qoperator"),
                                input_scales=(1.0, 0.875, 0.75, 0.625, 0.5)),
}


@dataclass(frozen=True)
class ModelFacts:
    """What the space needs to know about the model and task to decide which axes apply."""

    representative_size: tuple[int, int] | None  # (H, W) the task feeds for a typical image
    resizable: bool  # fully convolutional (dynamic H, W) and the task accepts another input size
    size_multiple: int = 1
    dynamic_batch: bool = True
    scalable: bool = False  # the task has a resolution option (TASK_SCALE_OPTIONS)


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


def runtime_choices(config: SpaceConfig, threads: tuple[int, ...]) -> list[Runtime]:
    from ..runtimes.opencv import available_engines

    choices: list[Runtime] = []
    for family in config.runtimes:
        if family == "opencv":
            engines = [e for e in config.opencv_engines if e in available_engines()] or ["classic"]
            choices += [make_runtime("opencv", engine=e, threads=t) for e in engines for t in threads]
        else:
            choices += [make_runtime(family, threads=t) for t in threads]
    return choices


def space_axes(config: SpaceConfig, facts: ModelFacts, *, techniques: dict[str, bool] | None = None,
               objective: str = "latency") -> dict[str, list[Any]]:
    """Each axis of the space with its values. Techniques whose module is missing are left out; unstructured
    sparsity only enters for the size objective (zeros do not make dense kernels faster)."""
    have = techniques if techniques is not None else available_techniques()
    threads = config.threads or default_threads()
    return {
        "runtime": runtime_choices(config, threads),
        "input_size": input_sizes(config, facts) if have.get("input_size", True) else [None],
        "input_scale": input_scales(config, facts) if have.get("input_size", True) else [1.0],
        "simplify": list(config.simplify if have.get("simplify", True) else (False,)) or [False],
        "prune_ratio": list(config.prune_ratios if have.get("prune") else (0.0,)) or [0.0],
        "sparsity": list(config.sparsity if (have.get("sparsify") and objective == "size") else (0.0,)) or [0.0],
        "quant": list(config.quant if have.get("quantize") else ("none",)) or ["none"],
        "batch": list(config.batches if facts.dynamic_batch else (1,)) or [1],
        "instances": list(config.instances) or [1],
    }


def candidate_from(values: dict[str, Any], *, prune_importance: str = "l1") -> Candidate | None:
    """The candidate for one value per axis, or None for a combination that cannot exist (static shapes fix the
    batch at 1, so a static model cannot take a bigger batch; a fixed size and a resize scale exclude each other)."""
    if values["input_size"] is not None and float(values.get("input_scale", 1.0)) != 1.0:
        return None
    transforms = Transforms(simplify=bool(values["simplify"]), prune_ratio=float(values["prune_ratio"]),
                            prune_importance=prune_importance, sparsity=float(values["sparsity"]),
                            quant=values["quant"], input_size=values["input_size"],
                            input_scale=float(values.get("input_scale", 1.0)))
    if transforms.static and values["batch"] > 1:
        return None
    return Candidate(transforms, values["runtime"], int(values["batch"]), int(values["instances"]))


def build_space(config: SpaceConfig, facts: ModelFacts, *, techniques: dict[str, bool] | None = None,
                objective: str = "latency") -> list[Candidate]:
    """Every candidate of the space (the product of its axes), in a fixed order, plus any test hooks."""
    axes = space_axes(config, facts, techniques=techniques, objective=objective)
    names = list(axes)
    seen: set[str] = set()
    out: list[Candidate] = []
    for combo in itertools.product(*(axes[n] for n in names)):
        cand = candidate_from(dict(zip(names, combo, strict=True)), prune_importance=config.prune_importance)
        if cand is not None and cand.key() not in seen:
            seen.add(cand.key())
            out.append(cand)
    threads = config.threads or default_threads()
    for hook in config.debug:
        cand = Candidate(replace(Transforms(), debug=hook), make_runtime("ort", threads=threads[0]))
        if cand.key() not in seen:
            seen.add(cand.key())
            out.append(cand)
    return out
