"""Task plugins: a Python file defining a `cvtune.tasks.Task` subclass (preprocess, postprocess, score) that cvtune
imports and registers under the class's `name`, the way `--task-plugin my_task.py` and `cvtune.optimize(task=
MyTask)` bring a user's own task. The file's path travels in the task options (TaskSpec), so child processes
import it again before building the task."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path

from ..errors import UsageError
from .base import Task

PLUGIN_OPTION = "task_plugin"  # the TaskSpec option that holds the plugin file's absolute path

_LOADED: dict[str, list[str]] = {}


def load_task_plugin(path: str | os.PathLike[str]) -> list[str]:
    """Import the file at `path` once per process and register every Task subclass it defines; returns their
    names. A missing file, an import error, no Task subclass, or a name a built-in task already has is a
    UsageError saying which."""
    from . import TASKS

    path = Path(path).expanduser().resolve()
    key = str(path)
    if key in _LOADED:
        return _LOADED[key]
    if not path.is_file():
        raise UsageError(f"task plugin not found: {path} (a .py file defining a cvtune.tasks.Task subclass)")
    module_name = f"cvtune_task_plugin_{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"task plugin {path} cannot be imported; is it a .py file?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's code can raise anything
        del sys.modules[module_name]
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
        raise UsageError(f"task plugin {path} failed to import: {type(exc).__name__}: {first[:200]}") from None
    classes = [obj for _, obj in inspect.getmembers(module, inspect.isclass)
               if issubclass(obj, Task) and obj.__module__ == module_name and obj.name != Task.name]
    if not classes:
        raise UsageError(f"task plugin {path} defines no cvtune.tasks.Task subclass with a `name`; see "
                         f"examples/my_task.py")
    names = []
    for cls in classes:
        known = TASKS.get(cls.name)
        if known is not None and known.__module__.startswith("cvtune."):
            raise UsageError(f"task plugin {path}: task name '{cls.name}' is a built-in task; pick another name")
        TASKS[cls.name] = cls
        names.append(cls.name)
    _LOADED[key] = names
    return names


def plugin_for(task: type[Task]) -> str | None:
    """The source file that defines a Task subclass, when it is not one of cvtune's own (for child processes)."""
    if task.__module__.startswith("cvtune.") and not task.__module__.startswith("cvtune_task_plugin_"):
        return None
    source = inspect.getsourcefile(task)
    return str(Path(source).resolve()) if source else None
