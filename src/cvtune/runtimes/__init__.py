"""Runtime registry: name -> Runtime settings class. `make_runtime("opencv", engine="new")` builds one."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import types
import typing
from typing import Any

from ..errors import UsageError
from .base import Runtime, Session
from .opencv import OpenCVRuntime
from .ort import OrtRuntime

RUNTIMES: dict[str, type[Runtime]] = {OpenCVRuntime.name: OpenCVRuntime, OrtRuntime.name: OrtRuntime}

# OpenVINO registers only where it is installed. Found, not imported: importing it took 0.2 s of every trial child,
# most of which never run it (the module imports it when a session opens).
if importlib.util.find_spec("openvino") is not None:
    from .openvino import OpenVINORuntime

    RUNTIMES[OpenVINORuntime.name] = OpenVINORuntime

# LiteRT (TensorFlow Lite's interpreter) likewise, where ai-edge-litert is installed: the .tflite's own runtime.
if importlib.util.find_spec("ai_edge_litert") is not None:
    from .litert import LiteRTRuntime

    RUNTIMES[LiteRTRuntime.name] = LiteRTRuntime


def max_threads() -> int:
    """The most threads a session may ask for: a few times the logical cores (100000 would only wait, then fail)."""
    import os

    return max(64, 4 * (os.cpu_count() or 1))


@functools.cache
def _field_types(cls: type[Runtime]) -> dict[str, tuple[type, ...]]:
    """The plain types each settings field accepts (int | None -> (int, NoneType)); tuples as (tuple,)."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        if typing.get_origin(hint) is typing.ClassVar:
            continue
        options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        out[name] = tuple(typing.get_origin(o) or o for o in options)
    return out


def _validated(cls: type[Runtime], name: str, settings: dict[str, Any]) -> Runtime:
    """Settings checked against the dataclass's field types: values of the right type go straight in (the common
    case, in every child process); anything else is coerced or refused by pydantic (threads=abc: one clear error)."""
    tuples = {f.name for f in dataclasses.fields(cls) if isinstance(f.default, tuple)}  # type: ignore[arg-type]
    values = {k: [v] if k in tuples and isinstance(v, str) else v for k, v in settings.items()}
    kinds = _field_types(cls)

    def plain(key: str, value: Any) -> bool:
        if key in tuples:
            return isinstance(value, list | tuple) and all(isinstance(x, str) for x in value)
        return isinstance(value, kinds.get(key, ())) and (bool in kinds[key] or not isinstance(value, bool))

    if all(plain(k, v) for k, v in values.items()):
        return cls(**values)
    import pydantic

    try:
        return pydantic.TypeAdapter(cls).validate_python(values)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        raise UsageError(f"runtime '{name}' setting {field}={error.get('input')!r}: {error['msg']}") from None


def make_runtime(name: str, **settings: Any) -> Runtime:
    """Build a Runtime from its registry name and settings; unknown names, settings or values raise UsageError."""
    if not isinstance(name, str):
        raise UsageError(f"runtime must be a name, one of: {', '.join(RUNTIMES)} (got {name!r})")
    if name not in RUNTIMES:
        if name == "openvino":
            raise UsageError("the openvino runtime needs the openvino package: pip install 'cvtune[openvino]'")
        if name == "litert":
            raise UsageError("the litert runtime needs the ai-edge-litert package: pip install ai-edge-litert")
        raise UsageError(f"unknown runtime '{name}'; choose one of: {', '.join(RUNTIMES)}")
    cls = RUNTIMES[name]
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(k for k, v in settings.items() if k not in known and v is not None)
    if unknown:
        raise UsageError(f"runtime '{name}' has no setting {', '.join(unknown)}; it takes: {', '.join(sorted(known))}")
    runtime = _validated(cls, name, {k: v for k, v in settings.items() if k in known and v is not None})
    for field in ("threads", "inter_threads"):
        value = getattr(runtime, field, None)
        if isinstance(value, int) and value > max_threads():
            import os

            raise UsageError(f"{field}={value} is far more threads than this machine's {os.cpu_count() or 1} "
                             f"logical cores can run; use at most {max_threads()}")
    return runtime


def runtime_from_dict(data: dict[str, Any]) -> Runtime:
    """Inverse of Runtime.to_dict(): used by deploy.json, the trial store and child processes."""
    if not isinstance(data, dict):
        raise UsageError(f"runtime settings must be an object like {{\"runtime\": \"ort\", \"threads\": 2}} "
                         f"(got {data!r})")
    data = dict(data)
    name = data.pop("runtime", None)
    if name is None:
        raise UsageError("runtime settings need a 'runtime' key (one of: " + ", ".join(RUNTIMES) + ")")
    return make_runtime(name, **data)


__all__ = ["RUNTIMES", "Runtime", "Session", "OpenCVRuntime", "OrtRuntime", "make_runtime", "runtime_from_dict"]
