"""cvtune: find the fastest way to run a vision model within an accuracy budget, measured on the target."""

import sys as _sys
import types as _types

__version__ = "0.1.0"


_API = {"optimize", "evaluate", "quantize", "prune", "load_deployed", "Deployed"}
_ERRORS = {"CvtuneError", "ModelError", "DatasetError", "UsageError", "RuntimeUnavailable", "TrialFailed"}
_TYPES = {"Metrics": "cvtune.tasks.base", "Task": "cvtune.tasks.base", "Preprocessing": "cvtune.zoo",
          "OptimizeResult": "cvtune.search", "QuantResult": "cvtune.quantize.result", "Budget": "cvtune.budget"}

__all__ = sorted(_API | _ERRORS | set(_TYPES)) + ["__version__"]


def __getattr__(name: str):  # lazy: `import cvtune` stays light; cvtune.optimize etc. load on first use
    import importlib

    if name in _API:
        return getattr(importlib.import_module("cvtune.api"), name)
    if name in _ERRORS:
        return getattr(importlib.import_module("cvtune.errors"), name)
    if name in _TYPES:
        return getattr(importlib.import_module(_TYPES[name]), name)
    raise AttributeError(f"module 'cvtune' has no attribute '{name}'")


class _Package(_types.ModuleType):
    """`cvtune.evaluate` is the API function even after the `cvtune.evaluate` submodule is imported (the import
    system would otherwise set the package attribute to the module)."""

    def __setattr__(self, name: str, value) -> None:  # noqa: ANN001
        if name in _API and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
