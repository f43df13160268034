"""An optimize run as a file (YAML or JSON) to keep under version control and rerun: `cvtune optimize --config
run.yaml` reads one, `--save-config FILE` writes the resolved config of any run. The fields are OptimizeConfig's,
validated the same way as the command line (an unknown field is one error naming it and the valid ones):

    model: zoo:ppocr-det          # a path (relative to this file) or zoo:NAME
    task: textdet
    data: text/textdet            # relative to this file
    out: opt
    budget: 1%                    # the --max-drop grammar: 1% relative, 0.01abs absolute
    objective: latency
    time_budget_s: 3m             # seconds, or the --time grammar
    space:                        # SpaceConfig's fields; `preset` starts from a named space
      preset: quick
      runtimes: [opencv, ort]
      transforms:                 # per technique slot, the values to try (null = off)
        prune: [null, {pass: channel_prune, ratio: 0.2, importance: activation}]

Relative paths are read against the file's folder, so a config works from any working directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from ..budget import Budget, parse_duration
from ..errors import CvtuneError, UsageError
from ..files import write_text
from .config import OptimizeConfig
from .space import SpaceConfig, space_preset

__all__ = ["CONFIG_FIELDS", "SPACE_FIELDS", "config_from_dict", "config_to_dict", "load_config", "read_config",
           "save_config"]

CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(OptimizeConfig) if f.name != "eval_fn")  # eval_fn: API only
SPACE_FIELDS = ("preset", *(f.name for f in dataclasses.fields(SpaceConfig)))
PATH_FIELDS = ("model", "data", "out")
REQUIRED = {"model": "MODEL (the first argument)", "task": "--task", "data": "--data", "out": "-o/--output"}
INT_FIELDS = ("seed", "eval_images", "calib_images", "max_trials", "eval_workers", "memory_limit_mb")
FLOAT_FIELDS = ("calib_fraction", "trial_timeout_s", "final_min_time_s")
ZOO_PREFIX = "zoo:"


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file's fields as a plain mapping (YAML for .yaml/.yml, else JSON), unknown fields refused by name."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UsageError(f"{path}{where}: not valid YAML ({problem})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); YAML files need a .yaml name") \
                from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of fields (model: ..., task: ...), got {type(data).__name__}")
    _check_names(data, CONFIG_FIELDS, str(path))
    if "space" in data:
        if not isinstance(data["space"], dict):
            raise UsageError(f"{path}: 'space' must be a mapping of space fields ({', '.join(SPACE_FIELDS)})")
        _check_names(data["space"], SPACE_FIELDS, f"{path}: space")
    return data


def _check_names(data: dict[str, Any], valid: tuple[str, ...], where: str) -> None:
    unknown = [str(k) for k in data if k not in valid]
    if unknown:
        raise UsageError(f"{where}: unknown field '{unknown[0]}'; valid fields: {', '.join(valid)}")


def resolve_path(value: Any, base_dir: Path, name: str, where: str) -> Path:
    """A path field: zoo:NAME for a bundled model, else a path relative to the config's folder."""
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise UsageError(f"{where}: '{name}' must be a path (got {value!r})")
    text = str(value)
    if name == "model" and text.startswith(ZOO_PREFIX):
        from .. import zoo

        return zoo.path(text[len(ZOO_PREFIX):])
    path = Path(text).expanduser()
    return path if path.is_absolute() else base_dir / path


def space_from_dict(data: dict[str, Any], where: str) -> SpaceConfig:
    """A SpaceConfig from a file's `space` mapping: its fields, starting from `preset` when one is named."""
    data = dict(data)
    preset = data.pop("preset", None)
    base = space_preset(str(preset)).to_dict() if preset is not None else {}
    try:
        return SpaceConfig.from_dict({**base, **data})
    except TypeError as exc:  # a field with the wrong kind of value
        raise UsageError(f"{where}: space: {exc}") from None


def config_from_dict(data: dict[str, Any], *, base_dir: str | os.PathLike[str] = ".",
                     where: str = "config") -> OptimizeConfig:
    """An OptimizeConfig from a mapping of its fields (as read_config returns, command-line values merged in);
    every value is checked the way the command line checks it."""
    _check_names(data, CONFIG_FIELDS, where)
    missing = next((k for k in REQUIRED if data.get(k) in (None, "")), None)
    if missing is not None:
        raise UsageError(f"{where}: missing the {missing}: give {REQUIRED[missing]} on the command line or "
                         f"'{missing}:' in a --config file")
    base = Path(base_dir)
    values: dict[str, Any] = {k: v for k, v in data.items() if v is not None}
    for name in PATH_FIELDS:
        values[name] = resolve_path(values[name], base, name, where)
    budget = values.get("budget")
    if isinstance(budget, dict):
        values["budget"] = Budget.from_dict(budget)
    elif budget is not None and not isinstance(budget, Budget):
        values["budget"] = Budget.parse(str(budget))
    if "time_budget_s" in values:
        values["time_budget_s"] = parse_duration(values["time_budget_s"])
    if isinstance(values.get("space"), dict):
        values["space"] = space_from_dict(values["space"], where)
    if "task_options" in values and not isinstance(values["task_options"], dict):
        raise UsageError(f"{where}: 'task_options' must be a mapping, e.g. {{box_thresh: 0.6}}")
    if "ray" in values and not isinstance(values["ray"], bool):
        raise UsageError(f"{where}: 'ray' must be true or false (got {values['ray']!r})")
    if "ray_address" in values and not isinstance(values["ray_address"], str):
        raise UsageError(f"{where}: 'ray_address' must be HOST:PORT or ray://HOST:PORT (got {values['ray_address']!r})")
    for name in INT_FIELDS:
        if name in values:
            values[name] = _number(values[name], int, name, where)
    for name in FLOAT_FIELDS:
        if name in values:
            values[name] = _number(values[name], float, name, where)
    try:
        return OptimizeConfig(**values)
    except CvtuneError:
        raise
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: {exc}") from None


def _number(value: Any, kind: type, name: str, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
        raise UsageError(f"{where}: '{name}' must be {'a whole number' if kind is int else 'a number'} "
                         f"(got {value!r})")
    return kind(value)


def load_config(path: str | os.PathLike[str], **overrides: Any) -> OptimizeConfig:
    """Read a config file, apply `overrides` (command-line values, by field name), and resolve it."""
    data = {**read_config(path), **overrides}
    return config_from_dict(data, base_dir=Path(path).resolve().parent, where=str(path))


def config_to_dict(config: OptimizeConfig, *, relative_to: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Every field of `config`, as a file holds it: the budget in the --max-drop grammar, zoo models as zoo:NAME,
    paths relative to `relative_to` when they lie inside it (else absolute)."""
    data: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.name not in CONFIG_FIELDS:  # eval_fn: a function, for the Python API only
            continue
        value = getattr(config, f.name)
        if f.name in PATH_FIELDS:
            value = _path_text(Path(value), f.name, relative_to)
        elif isinstance(value, Budget):
            value = f"{value.value * 100:.10g}%" if value.relative else f"{value.value:.10g}abs"
        elif isinstance(value, SpaceConfig):
            value = value.to_dict()
        elif isinstance(value, dict):
            value = {k: str(v) if isinstance(v, Path) else v for k, v in value.items()}
        data[f.name] = value
    return data


def _path_text(path: Path, name: str, relative_to: str | os.PathLike[str] | None) -> str:
    if name == "model":
        from .. import zoo

        for entry in zoo.ZOO:
            try:
                if zoo.path(entry).resolve() == path.resolve():
                    return f"{ZOO_PREFIX}{entry}"
            except CvtuneError:
                continue
    resolved = path.resolve()
    if relative_to is not None:
        base = Path(relative_to).resolve()
        if resolved == base or base in resolved.parents:
            return resolved.relative_to(base).as_posix() or "."
    return str(resolved)


def save_config(config: OptimizeConfig, path: str | os.PathLike[str]) -> Path:
    """Write `config` to `path` (YAML for .yaml/.yml, else JSON), atomically; `load_config(path)` gives it back."""
    path = Path(path)
    data = config_to_dict(config, relative_to=path.parent)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        header = "# cvtune optimize --config " + path.name + "  (relative paths are read against this file's folder)\n"
        text = header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110)
    else:
        text = json.dumps(data, indent=2) + "\n"
    return write_text(path, text)
