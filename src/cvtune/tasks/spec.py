"""A task resolved once for a model: its name, the preprocessing (and where it came from) and every option (zoo
defaults, the OCR charset from the model's metadata, the user's). Resolution looks things up (the user's
--preprocess, the zoo entry, Ultralytics/cvtune metadata, TFLite tensors: cvtune.preprocess, else a guess that says
so); everything after it, including child processes, builds the task from the spec without looking again."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import zoo
from ..preprocess import ACCEPT_GUESS, Preprocessing, guess_refusal, resolve_preprocessing
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
    preprocessing_source: str = ""  # the preprocessing's source (cvtune.preprocess.SOURCES); filled from it

    def __post_init__(self) -> None:
        if not self.preprocessing_source and self.preprocessing is not None and self.preprocessing.source:
            object.__setattr__(self, "preprocessing_source", self.preprocessing.source)

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


# The model family a task's guess follows when nothing in the file says (textdet/ocr: PP-OCR's normalization).
TASK_FAMILY_DEFAULTS: dict[str, str] = {"textdet": "ppocr-det", "ocr": "ppocr-rec"}


def resolve_task(name: str, model_path: str | os.PathLike[str] | None = None, *, preprocess: Any = None,
                 allow_guess: bool = True, **options: Any) -> TaskSpec:
    """Resolve task `name` for the model at `model_path`: zoo defaults, OCR charset from the model's metadata,
    preprocessing (cvtune.preprocess.resolve_preprocessing: `preprocess` or the `preprocessing` option from the
    user, else what the model file, or a fidelity task's reference, says, else a guess). Explicit `options` win
    over every default. `allow_guess=False` (optimize) raises GuessedPreprocessing on a guess, unless
    `preprocess="guess"` accepts it."""
    from . import get_task_class
    from .ctc import read_charset
    from .plugin import PLUGIN_OPTION, load_task_plugin

    if options.get(PLUGIN_OPTION):
        options[PLUGIN_OPTION] = str(Path(options[PLUGIN_OPTION]).resolve())
        load_task_plugin(options[PLUGIN_OPTION])
    get_task_class(name)  # unknown names fail here, listing the valid ones
    user = options.pop("preprocessing", None)
    preprocess = user if preprocess is None else preprocess
    if model_path is None:
        spec = None if preprocess in (None, ACCEPT_GUESS) else resolve_preprocessing(None, preprocess)
        return TaskSpec(name, spec, options)
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
    family = zoo.ZOO[TASK_FAMILY_DEFAULTS[name]].preprocessing if name in TASK_FAMILY_DEFAULTS else None
    spec = resolve_preprocessing(model_path, preprocess, reference=reference, default=family)
    if spec.guessed and not allow_guess and preprocess != ACCEPT_GUESS:
        raise guess_refusal(spec, model_path)
    return TaskSpec(name, spec, {**defaults, **options}, spec.source)
