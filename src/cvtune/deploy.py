"""Load a deploy.json (written by the optimizer) and run what it describes:

    deployed = load_deployed("out/deploy.json")
    prediction = deployed.predict(cv2.imread("page.png"))                       # one image -> its prediction
    predictions = deployed.predict([cv2.imread(p) for p in ("a.png", "b.png")])  # a list -> one per image

deploy.json: {"schema": "cvtune-deploy/1", "version": cvtune's version, "model": "model.onnx" (or "model.xml", an
OpenVINO IR with its model.bin beside it; relative to the deploy.json folder, and inside it), "runtime":
Runtime.to_dict(), "task": "textdet", "task_options": {...}, "input_size": [H, W] or null, "batch": 1,
"instances": 1, "preprocessing": Preprocessing.to_dict() or a --preprocess string, "preprocessing_source": "user" |
"zoo" | ..., "expected": {...}}. Without "preprocessing" the model file's own (or a guess) is used, as everywhere
(cvtune.preprocess). Only "model" and "runtime" are required; schemas.DeployFile validates it (JSON Schema:
`cvtune schema deploy`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CvtuneError, ModelError, UsageError
from .files import display_path
from .preprocess import SOURCES
from .runtimes import Runtime, Session, runtime_from_dict

__all__ = ["Deployed", "load_deployed", "is_deploy_file"]


@dataclass(frozen=True)
class Deployed:
    """A deployed configuration. `predict` keeps one lazily opened session: it is not thread-safe, so give each
    thread its own `open()` session and `spec().build_task()` task, or use `cvtune run` (one per worker)."""

    path: Path
    model_path: Path
    runtime: Runtime
    task_name: str
    task_options: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] | None = None
    batch: int = 1
    instances: int = 1
    preprocessing: dict[str, Any] | None = None  # Preprocessing.to_dict(), checked at load; None: the model's own
    expected: dict[str, Any] = field(default_factory=dict)
    _state: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_model(cls, model_path: str | os.PathLike[str], runtime: Runtime | dict[str, Any] | str,
                   task: Any = None, *, input_size: tuple[int, int] | None = None, batch: int = 1,
                   instances: int = 1) -> Deployed:
        """A Deployed for a model file run by `runtime` (a Runtime, its dict, or a name) with `task` (a
        tasks.spec.TaskSpec, a task name, or None for the model's default): what a search candidate is, before
        any deploy.json exists, so a user's eval_fn can score it like an exported one."""
        from .runtimes import make_runtime
        from .tasks.spec import TaskSpec

        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        if isinstance(runtime, str):
            runtime = make_runtime(runtime)
        elif isinstance(runtime, dict):
            runtime = runtime_from_dict(runtime)
        if task is None:
            from .pipeline.predictor import default_task

            task = default_task(path)
        spec = task if isinstance(task, TaskSpec) else TaskSpec(str(task))
        return cls(path=path, model_path=path, runtime=runtime, task_name=spec.name, task_options=dict(spec.options),
                   input_size=tuple(input_size) if input_size else None, batch=batch, instances=instances,
                   preprocessing=spec.preprocessing.to_dict() if spec.preprocessing else None)

    def spec(self, *, runtime: Runtime | None = None, batch: int | None = None, task: str | None = None,
             task_options: dict[str, Any] | None = None):
        """The PredictorSpec the pipeline's workers build from (overrides for `cvtune run` options)."""
        from .pipeline.predictor import PredictorSpec

        return PredictorSpec(model=str(self.model_path), runtime=(runtime or self.runtime).to_dict(),
                             task=task or self.task_name, task_options={**self.task_options, **(task_options or {})},
                             preprocessing=self.preprocessing, input_size=self.input_size,
                             batch=batch or self.batch)

    @property
    def task(self):
        """The Task instance (built once)."""
        if "task" not in self._state:
            self._state["task"] = self.spec().build_task()
        return self._state["task"]

    @property
    def preprocessing_source(self) -> str:
        """Where the preprocessing this deployment runs came from (user, zoo, metadata:..., tflite, guessed)."""
        return self.task.preprocessing.source or "unknown"

    def open(self) -> Session:
        """A new session of the deployed model with the deployed runtime settings."""
        return self.runtime.open(self.model_path)

    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> Any:
        """One BGR uint8 image (H, W, 3) -> the task's prediction; a list of images (or an (N, H, W, 3) array) -> a
        list of predictions, in order, run through the model in batches of the deployed batch size where the
        images preprocess to the same shape (as `cvtune run` does). The session is opened on first use."""
        single = isinstance(images, np.ndarray) and images.ndim in (2, 3)
        batch = [images] if single else list(images)
        for i, image in enumerate(batch):
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
                shape = tuple(image.shape) if isinstance(image, np.ndarray) else type(image).__name__
                raise UsageError(f"predict takes BGR images of shape (H, W, 3), as cv2.imread returns them, or a "
                                 f"list of them; image {i} is {shape}")
        if "predictor" not in self._state:
            from .pipeline.predictor import Predictor

            self._state["predictor"] = Predictor(self.spec(), session=self.open())
        results = self._state["predictor"].predict(batch) if batch else []
        return results[0] if single else results

    def close(self) -> None:
        predictor = self._state.pop("predictor", None)
        if predictor is not None:
            predictor.close()
        task = self._state.pop("task", None)
        if task is not None:
            task.close()


def is_deploy_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() == ".json"


def load_deployed(path: str | os.PathLike[str]) -> Deployed:
    """Read and check a deploy.json (or the folder holding one); every problem is one UsageError/ModelError naming
    the file and the field (validated with schemas.DeployFile)."""
    from .schemas import DeployFile, parse

    path = Path(path)
    if path.is_dir() and (path / "deploy.json").is_file():
        path = path / "deploy.json"
    if not path.is_file():
        raise UsageError(f"deploy file not found: {display_path(path)}")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{display_path(path)}:{exc.lineno}: not valid JSON ({exc.msg}); fix the file or re-export "
                         f"it") from None
    except UnicodeDecodeError:
        raise UsageError(f"{display_path(path)}: not UTF-8 text; is this really a deploy.json?") from None
    except (OSError, RecursionError) as exc:
        raise UsageError(f"cannot read {display_path(path)}: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{display_path(path)}: expected a JSON object with 'model' and 'runtime'")
    for key in ("model", "runtime"):
        if key not in data:
            raise UsageError(f"{display_path(path)}: missing key '{key}' (a deploy.json needs 'model' and 'runtime')")
    doc: DeployFile = parse(DeployFile, data, source=path)
    folder = path.parent.resolve()
    model_path = (folder / doc.model).resolve()
    if folder not in model_path.parents:  # a symlink leading out of the folder
        raise UsageError(f"{display_path(path)}: model '{doc.model}' resolves outside the deploy.json folder; keep "
                         f"the model next to its deploy.json")
    if not model_path.is_file():
        raise ModelError(f"{display_path(path)}: model '{doc.model}' not found (looked for "
                         f"{display_path(model_path)}; paths are relative to the deploy.json folder)")
    try:
        runtime = runtime_from_dict(doc.runtime)
    except CvtuneError as exc:
        raise UsageError(f"{display_path(path)}: runtime: {exc}") from None
    from .pipeline.predictor import default_task, task_names

    task = doc.task or default_task(model_path)
    if task not in task_names():
        raise UsageError(f"{display_path(path)}: task: unknown task '{task}'; choose one of: {', '.join(task_names())}")
    return Deployed(path=path, model_path=model_path, runtime=runtime, task_name=task,
                    task_options=dict(doc.task_options),
                    input_size=(doc.input_size[0], doc.input_size[1]) if doc.input_size else None, batch=doc.batch,
                    instances=doc.instances, preprocessing=_preprocessing(path, data), expected=dict(doc.expected))


def _preprocessing(path: Path, data: dict[str, Any]) -> dict[str, Any] | None:
    """The deploy.json's "preprocessing" (an object or a --preprocess string), checked, with its source."""
    from .preprocess import Preprocessing, parse_preprocess

    raw = data.get("preprocessing")
    if raw is None:
        return None
    source = data.get("preprocessing_source")
    source = source if isinstance(source, str) and source in SOURCES else None
    try:
        if isinstance(raw, str):
            spec = parse_preprocess(raw, source=source or "user")
        else:
            spec = Preprocessing.from_dict(raw)
            spec = spec.with_source(source or spec.source or "user")
    except UsageError as exc:
        raise UsageError(f"{path}: preprocessing: {exc}") from None
    return spec.to_dict()
