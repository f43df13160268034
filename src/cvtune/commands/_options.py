"""Options shared by several commands (runtime selection, output format), and their parsing."""

from __future__ import annotations

from typing import Any

import typer

from ..errors import UsageError
from ..runtimes import RUNTIMES, Runtime, make_runtime

RUNTIME_HELP = f"Runtime: {', '.join(RUNTIMES)}."


def runtime_option(default: str = "opencv") -> Any:
    return typer.Option(default, "--runtime", "-r", help=RUNTIME_HELP)


ENGINE = typer.Option(None, "--engine", help="OpenCV engine: auto, new, classic (OpenCV 5); 4.x has classic only.")
TARGET = typer.Option(None, "--target", help="OpenCV target: cpu, cpu_fp16, opencl, opencl_fp16, cuda, cuda_fp16.")
THREADS = typer.Option(None, "--threads", "-t", help="Threads per session (cv2.setNumThreads / ORT intra-op).")
JSON = typer.Option(False, "--json", help="Print machine-readable JSON on stdout instead of tables.")


def build_runtime(name: str, *, engine: str | None = None, target: str | None = None,
                  threads: int | None = None) -> Runtime:
    """A Runtime from the common CLI options; an option the runtime does not have is an error naming it."""
    settings: dict[str, Any] = {"threads": threads}
    if name == "opencv":
        settings.update(engine=engine, target=target)
    elif engine or target:
        raise UsageError(f"--engine/--target are OpenCV options; runtime '{name}' does not take them")
    return make_runtime(name, **settings)


def parse_runtime_spec(spec: str) -> Runtime:
    """'ort', 'opencv:engine=classic,threads=1' -> Runtime. Values: ints, true/false, or strings."""
    name, _, rest = spec.partition(":")
    settings: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"bad runtime spec '{spec}': expected RUNTIME[:key=value,...], e.g. opencv:engine=classic")
        settings[key.strip()] = _coerce(value.strip())
    return make_runtime(name.strip(), **settings)


def _coerce(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return int(value)
    except ValueError:
        return value
