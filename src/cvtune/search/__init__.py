"""The optimizer: search space (candidates of registered passes), trial runner (child processes), SQLite store of
typed trials, strategies, Pareto front, export.

`optimize(OptimizeConfig(...)) -> OptimizeResult` is the library entry point; `cvtune optimize` calls it. The names
below are imported on first use, so a trial's child process (which imports `cvtune.search.runner`) does not pay
for the whole optimizer.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Budget": "cvtune.budget", "parse_duration": "cvtune.budget",
    "OBJECTIVES": ".goals", "Objective": ".goals", "get_objective": ".goals",
    "OptimizeConfig": ".optimizer", "OptimizeResult": ".optimizer", "optimize": ".optimizer",
    "pareto_front": ".pareto",
    "BuiltModel": ".records", "Measurement": ".records", "MetricResult": ".records", "Trial": ".records",
    "Candidate": ".space", "SpaceConfig": ".space", "Transforms": ".space", "baseline_candidate": ".space",
    "build_space": ".space",
    "Store": ".store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cvtune.search' has no attribute '{name}'")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
