"""A technique is a registered pass: a frozen dataclass whose fields are its settings, with a plan/apply split,
the calibration it needs declared as data, and its own words for labels and reports.

Subclassing `Pass` with a `name` registers the class (as Olive's passes do), so adding a technique is one module:
the search space, the build, the report's findings and deploy.json all read `PASSES`. A pass defined outside
cvtune records its module in `to_dict()`, so a child process (the build runs in one) can import it back.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import onnx

from ..data.calibration import CalibrationNeed, CalibrationSet
from ..errors import ModelError, UsageError

PASSES: dict[str, type[Pass]] = {}
BUILTIN_PREFIX = "cvtune.passes."


@dataclass
class BuildContext:
    """What a pass may use while it builds: the input shape the model is built for, a scratch folder, and the
    one calibration stream (images of the calibration split through the task's own preprocessing)."""

    input_shape: tuple[int, ...]
    workdir: Path
    calibration: Callable[[CalibrationNeed], CalibrationSet] | None = None
    static_size: tuple[int, int] | None = None  # set when the model is built for one fixed input size
    # The task metric of a Session on held-out labelled images, higher is better (quantize.validation
    # .SessionValidator): what accuracy-aware passes keep within their budget. None: they judge by output fidelity.
    validation: Callable[..., float] | None = None

    def calibrate(self, need: CalibrationNeed) -> CalibrationSet:
        """The calibration images `need` asks for; a clear error when this build has none."""
        if self.calibration is None:
            raise ModelError("this technique needs calibration images, and the build has none: give a folder of "
                             "images like the ones the model will see")
        return self.calibration(need)


@dataclass(frozen=True)
class PassOutput:
    """The transformed model and facts about the change (recorded with the built model, shown in reports)."""

    model: onnx.ModelProto
    info: dict[str, Any] = field(default_factory=dict)
    # A pass whose output is not ONNX (output_suffix) writes it here, in ctx.workdir; `model` is then its input.
    artifact: Path | None = None


class Pass:
    """Base of every technique. Subclasses are frozen dataclasses that set the ClassVars and implement `apply`."""

    name: ClassVar[str] = ""
    slot: ClassVar[str] = ""  # passes sharing a slot exclude each other (a model has one precision)
    order: ClassVar[int] = 50  # build order: smaller runs first (prune before quantize)
    off_label: ClassVar[str] = "not applied"  # how reports name "no pass in this slot"
    edits_weights: ClassVar[bool] = False  # needs weights as initializers (the zoo keeps them in Constant nodes)
    fixes_shape: ClassVar[bool] = False  # with a fixed input size, the built model depends on that size
    objectives: ClassVar[tuple[str, ...]] = ("latency", "throughput", "size")  # where the search tries it
    requires: ClassVar[tuple[str, ...]] = ()  # modules that must be importable
    aliases: ClassVar[dict[str, dict[str, Any]]] = {}  # short names for CLI lists, e.g. "int8-qdq"
    # The file its output is: ".onnx", or e.g. ".xml" (an OpenVINO IR, written as PassOutput.artifact), after which
    # no other pass can run; and the runtimes that can run that output (None: all).
    output_suffix: ClassVar[str] = ".onnx"
    runtimes: ClassVar[tuple[str, ...] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            register(cls)

    # ---- what the pass needs and does ------------------------------------------------------------------
    def calibration(self) -> CalibrationNeed | None:
        """The calibration images this pass needs, or None."""
        return None

    def plan(self, model: onnx.ModelProto, ctx: BuildContext) -> Any:
        """What apply will do, computed cheaply and printable (e.g. the channel groups to cut). Default: None."""
        return None

    def apply(self, model: onnx.ModelProto, ctx: BuildContext, plan: Any = None) -> PassOutput:
        raise NotImplementedError

    # ---- words ---------------------------------------------------------------------------------------
    def label(self) -> str:
        """Short label inside a candidate's name, e.g. 'prune 0.3 activation'."""
        values = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        return " ".join([self.name, *values])

    def describe(self) -> str:
        """What the pass did, for findings: '30% channel pruning'."""
        return self.label()

    # ---- serialization ---------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"pass": self.name, **self.settings()}
        module = type(self).__module__
        if not module.startswith(BUILTIN_PREFIX):
            data["module"] = module
        return data

    @classmethod
    def available(cls) -> bool:
        return not cls.missing()

    @classmethod
    def missing(cls) -> list[str]:
        """The modules this pass needs (`requires`) that cannot be imported here."""
        return [m for m in cls.requires if not _module_available(m)]


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def register(cls: type[Pass]) -> type[Pass]:
    """Add a Pass class to the registry (done by subclassing; call it for classes made otherwise)."""
    if not cls.slot:
        raise TypeError(f"pass {cls.__name__} needs a slot")
    PASSES[cls.name] = cls
    return cls


def get_pass(name: str) -> type[Pass]:
    if name not in PASSES:
        raise UsageError(f"unknown technique '{name}'; choose one of: {', '.join(sorted(PASSES))}")
    return PASSES[name]


def pass_from_dict(data: dict[str, Any]) -> Pass:
    """Inverse of Pass.to_dict(). A pass defined outside cvtune is imported from the module it recorded."""
    data = dict(data)
    name = data.pop("pass", None)
    module = data.pop("module", None)
    if not isinstance(name, str):
        raise UsageError(f"a technique needs a 'pass' name (got {data!r})")
    if name not in PASSES and module:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UsageError(f"technique '{name}' comes from module '{module}', which cannot be imported "
                             f"({exc})") from None
    cls = get_pass(name)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UsageError(f"technique '{name}' has no setting {', '.join(unknown)}; it takes: "
                         f"{', '.join(known) or 'nothing'}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


def pass_choice(text: str, slot: str | None = None) -> Pass | None:
    """A pass from a short CLI name: 'none', a registered alias ('int8-qdq', 'fp16') or a pass name, optionally
    with settings: 'channel_prune:ratio=0.3,importance=l1'."""
    name, _, rest = text.strip().partition(":")
    if name in ("none", "off", ""):
        return None
    settings: dict[str, Any] = {}
    matches = [(cls, dict(cls.aliases[name])) for cls in PASSES.values() if name in cls.aliases]
    if not matches and name in PASSES:
        matches = [(PASSES[name], {})]
    if slot is not None:
        matches = [(cls, s) for cls, s in matches if cls.slot == slot]
    if not matches:
        names = sorted({a for cls in PASSES.values() if slot in (None, cls.slot) for a in [*cls.aliases, cls.name]})
        raise UsageError(f"unknown technique '{name}'; choose one of: none, {', '.join(names)}")
    cls, settings = matches[0]
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"bad technique '{text}': expected NAME[:key=value,...]")
        settings[key.strip()] = _coerce(value.strip())
    return pass_from_dict({"pass": cls.name, **settings})


def _coerce(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def slots() -> dict[str, list[type[Pass]]]:
    """Registered passes grouped by slot, in build order."""
    out: dict[str, list[type[Pass]]] = {}
    for cls in sorted(PASSES.values(), key=lambda c: (c.order, c.name)):
        out.setdefault(cls.slot, []).append(cls)
    return out
