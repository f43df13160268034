"""A task resolved once for a model: its name, the preprocessing (and where it came from) and every option (zoo
defaults, the OCR charset from the model's metadata, the user's). Resolution looks things up (zoo entry, model
metadata); everything after it, including child processes, builds the task from the spec without looking again."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import zoo
from ..zoo import Preprocessing
from .base import Task

# Task options that follow from a zoo model (beyond its preprocessing).
ZOO_TASK_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("ppocr-cls", "classify"): {"resize": "pad", "labels": ["0", "180"]},
}


@dataclass(frozen=True)
class TaskSpec:
    """What `build()` needs to make the task; JSON-able (to_dict/from_dict) so it crosses process boundaries."""

    name: str
    preprocessing: Preprocessing | None = None  # None: the task's own default (PP-OCR for textdet/ocr)
    options: dict[str, Any] = field(default_factory=dict)
    preprocessing_source: str = ""  # "zoo", "user", "model" (read from the graph) or "" (the task's default)

    def build(self, *, input_size: tuple[int, int] | list[int] | None = None, **overrides: Any) -> Task:
        """A fresh Task instance (tasks hold helper sessions: one per worker)."""
        from . import get_task_class
        from .plugin import PLUGIN_OPTION, load_task_plugin

        options = {**self.options, **overrides}
        if options.get(PLUGIN_OPTION):  # a user's task file: import it in this process first
            load_task_plugin(options.pop(PLUGIN_OPTION))
        if input_size:
            options["input_size"] = tuple(input_size)
        return get_task_class(self.name)(self.preprocessing, **options)

    def with_options(self, **options: Any) -> TaskSpec:
        return replace(self, options={**self.options, **options})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "preprocessing": self.preprocessing.to_dict() if self.preprocessing else None,
                "options": dict(self.options), "preprocessing_source": self.preprocessing_source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        pre = data.get("preprocessing")
        return cls(data["name"], Preprocessing.from_dict(pre) if pre else None, dict(data.get("options") or {}),
                   data.get("preprocessing_source", ""))


def _preprocessing_for(model_path: Path, task_name: str, reference: Path | None
                       ) -> tuple[Preprocessing | None, str]:
    """The zoo entry's preprocessing for the model (or, for fidelity, its reference); else what the graph says
    for tasks that depend on it; else None (textdet/ocr then use PP-OCR's, their model family)."""
    for candidate in (model_path, reference):
        entry = zoo.find_by_path(candidate) if candidate else None
        if entry:
            return entry.preprocessing, "zoo"
    if task_name in ("textdet", "ocr"):
        return None, ""
    from ..model import read_preprocessing

    return read_preprocessing(model_path), "model"


def resolve_task(name: str, model_path: str | os.PathLike[str] | None = None, **options: Any) -> TaskSpec:
    """Resolve task `name` for the model at `model_path`: zoo defaults, OCR charset from the model's metadata,
    preprocessing. Explicit `options` (including `preprocessing`) win over every default."""
    from . import get_task_class
    from .ctc import read_charset
    from .plugin import PLUGIN_OPTION, load_task_plugin

    if options.get(PLUGIN_OPTION):
        options[PLUGIN_OPTION] = str(Path(options[PLUGIN_OPTION]).resolve())
        load_task_plugin(options[PLUGIN_OPTION])
    get_task_class(name)  # unknown names fail here, listing the valid ones
    preprocessing = options.pop("preprocessing", None)
    source = "user" if preprocessing is not None else ""
    if model_path is None:
        return TaskSpec(name, preprocessing, options, source)
    model_path = Path(model_path)
    reference = Path(options["reference_model"]) if options.get("reference_model") else None
    defaults: dict[str, Any] = {}
    entry = zoo.find_by_path(model_path)
    if entry:
        defaults.update(ZOO_TASK_DEFAULTS.get((entry.name, name), {}))
    if name == "ocr" and "charset" not in options and model_path.suffix.lower() == ".onnx":
        charset = read_charset(model_path)
        if charset:
            defaults["charset"] = charset
    if preprocessing is None:
        preprocessing, source = _preprocessing_for(model_path, name, reference)
    return TaskSpec(name, preprocessing, {**defaults, **options}, source)
