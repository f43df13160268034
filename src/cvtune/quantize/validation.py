"""What accuracy-aware int8 keeps within its budget: a score of a model (higher is better) on held-out images.

A Validator scores a Session (cvtune's runtime protocol, or an OpenVINO CompiledModel wrapped in one), on all its
items or the ones at `indices` (NNCF's accuracy control ranks layers on a subset), and gives item i as a model
input (`tensor(i)`). Two kinds: the task's own metric on labelled images (SessionValidator), or, without labels,
the output cosine against the float model on held-out calibration tensors (FidelityValidator).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ModelError

__all__ = ["FidelityValidator", "SessionValidator", "Validator", "held_out", "path_scorer"]


class Validator(Protocol):
    metric: str

    def __len__(self) -> int: ...

    def __call__(self, session: Any, indices: list[int] | None = None) -> float: ...

    def tensor(self, index: int) -> np.ndarray: ...


class SessionValidator:
    """A task's headline metric of a Session on a labelled dataset (built once for the float model, so every
    candidate is scored exactly like the original)."""

    def __init__(self, task: Any, dataset: Any) -> None:
        self.task, self.dataset = task, dataset
        self.metric = f"{task.name} {task.metric}"

    def __len__(self) -> int:
        return len(self.dataset)

    def __call__(self, session: Any, indices: list[int] | None = None) -> float:
        from ..evaluate import predict_dataset

        data = self.dataset if indices is None else self.dataset.subset(list(indices))
        self.task.bind(data)
        predictions, used, _ = predict_dataset(session, self.task, data, progress=False)
        if not used:
            raise ModelError(f"none of the validation images in {data.root} could be read")
        return float(self.task.score(predictions, used, data).value)

    def tensor(self, index: int) -> np.ndarray:
        from ..data.base import read_image

        path = self.dataset.samples[index].path
        image = read_image(path)
        if image is None:
            raise ModelError(f"cannot read validation image {path}")
        return np.ascontiguousarray(self.task.preprocess(image)[0], dtype=np.float32)


class FidelityValidator:
    """Mean output cosine against the float model (run once, by ONNX Runtime) on held-out input tensors."""

    metric = "output cosine vs float"

    def __init__(self, reference: str | Path, tensors: Sequence[np.ndarray]) -> None:
        from ..runtimes import make_runtime

        self.tensors = list(tensors)
        if not self.tensors:
            raise ModelError("output fidelity needs at least one held-out input")
        session = make_runtime("ort").open(reference)
        try:
            self.expected = [session.run(x) for x in self.tensors]
        finally:
            session.close()

    def __len__(self) -> int:
        return len(self.tensors)

    def __call__(self, session: Any, indices: list[int] | None = None) -> float:
        from .check import outputs_cosine

        chosen = range(len(self.tensors)) if indices is None else indices
        return float(np.mean([outputs_cosine(session.run(self.tensors[i]), self.expected[i]) for i in chosen]))

    def tensor(self, index: int) -> np.ndarray:
        return self.tensors[index]


def path_scorer(validator: Validator, runtime: Any = None):
    """validate(path) -> score: the model file opened with `runtime` (default ONNX Runtime), then scored."""
    from ..runtimes import make_runtime

    runner = runtime or make_runtime("ort")

    def validate(path: Path) -> float:
        session = runner.open(path)
        try:
            return float(validator(session))
        finally:
            session.close()

    return validate


def held_out(calibration: Any, n: int) -> tuple[Any, Any]:
    """Split a CalibrationSet into (the rest, `n` held-out items spread over it), both lazy when it streams images:
    the held-out ones check or validate what the rest calibrated."""
    import dataclasses

    from ..data.calibration import ImageTensors

    total = len(calibration)
    if n < 1 or total <= n:
        raise ModelError(f"need more than {n} calibration images to hold {n} back (got {total})")
    held = sorted({int(i) for i in np.linspace(0, total - 1, n + 2)[1:-1].round()})
    rest = [i for i in range(total) if i not in set(held)]
    stream = calibration.stream

    def pick(indices: list[int]) -> Any:
        if isinstance(stream, ImageTensors):
            return ImageTensors([stream.paths[i] for i in indices], stream.preprocess)
        items = list(stream)
        return tuple(items[i] for i in indices)

    return (dataclasses.replace(calibration, stream=pick(rest)),
            dataclasses.replace(calibration, stream=pick(held), need=None))
