"""Runtime registry: name -> Runtime settings class. `make_runtime("opencv", engine="new")` builds one."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import UsageError
from .base import Runtime, Session
from .opencv import OpenCVRuntime
from .ort import OrtRuntime

RUNTIMES: dict[str, type[Runtime]] = {OpenCVRuntime.name: OpenCVRuntime, OrtRuntime.name: OrtRuntime}

try:  # OpenVINO is an optional extra; its module registers itself only when importable.
    from .openvino import OpenVINORuntime  # noqa: F401

    RUNTIMES[OpenVINORuntime.name] = OpenVINORuntime
except ImportError:
    pass


def make_runtime(name: str, **settings: Any) -> Runtime:
    """Build a Runtime from its registry name and settings; unknown names or settings raise UsageError."""
    if name not in RUNTIMES:
        if name == "openvino":
            raise UsageError("the openvino runtime needs the openvino package: pip install 'cvtune[openvino]'")
        raise UsageError(f"unknown runtime '{name}'; choose one of: {', '.join(RUNTIMES)}")
    cls = RUNTIMES[name]
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(k for k, v in settings.items() if k not in known and v is not None)
    if unknown:
        raise UsageError(f"runtime '{name}' has no setting {', '.join(unknown)}; it takes: {', '.join(sorted(known))}")
    return cls(**{k: v for k, v in settings.items() if k in known and v is not None})


def runtime_from_dict(data: dict[str, Any]) -> Runtime:
    """Inverse of Runtime.to_dict(): used by deploy.json, the trial store and child processes."""
    data = dict(data)
    name = data.pop("runtime", None)
    if name is None:
        raise UsageError("runtime settings need a 'runtime' key (one of: " + ", ".join(RUNTIMES) + ")")
    return make_runtime(name, **data)


__all__ = ["RUNTIMES", "Runtime", "Session", "OpenCVRuntime", "OrtRuntime", "make_runtime", "runtime_from_dict"]
