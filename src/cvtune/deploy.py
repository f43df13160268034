"""Load a deploy.json (written by the optimizer) and run what it describes:

    deployed = load_deployed("out/deploy.json")
    prediction = deployed.predict(cv2.imread("page.png"))

deploy.json: {"schema": "cvtune-deploy/1", "version": cvtune's version, "model": "model.onnx" (relative to the
deploy.json folder, and inside it), "runtime": Runtime.to_dict(), "task": "textdet", "task_options": {...},
"input_size": [H, W] or null, "batch": 1, "instances": 1, "preprocessing": Preprocessing.to_dict(),
"expected": {...}}. Only "model" and "runtime" are required; schemas.DeployFile validates it (JSON Schema:
`cvtune schema deploy`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CvtuneError, ModelError, UsageError
from .files import display_path
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
    preprocessing: dict[str, Any] | None = None
    expected: dict[str, Any] = field(default_factory=dict)
    _state: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

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

    def open(self) -> Session:
        """A new session of the deployed model with the deployed runtime settings."""
        return self.runtime.open(self.model_path)

    def predict(self, image: np.ndarray) -> Any:
        """One BGR uint8 image -> the task's prediction (session opened on first use)."""
        if "session" not in self._state:
            self._state["session"] = self.open()
        return self.task.predict(self._state["session"], image)

    def close(self) -> None:
        session = self._state.pop("session", None)
        if session is not None:
            session.close()
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
    preprocessing = doc.preprocessing.model_dump() if doc.preprocessing is not None else None
    return Deployed(path=path, model_path=model_path, runtime=runtime, task_name=task,
                    task_options=dict(doc.task_options),
                    input_size=(doc.input_size[0], doc.input_size[1]) if doc.input_size else None, batch=doc.batch,
                    instances=doc.instances, preprocessing=preprocessing, expected=dict(doc.expected))
