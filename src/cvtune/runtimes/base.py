"""The runtime protocol: a Runtime (settings as a frozen dataclass) opens a model file into a Session.

Everything that measures or evaluates goes through `Session.run(batch) -> list of outputs`, so adding a runtime
touches one file. A Session is not thread-safe: use one per worker.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Session(Protocol):
    """An opened model. `run` takes one input batch (N, C, H, W float32) and returns every output."""

    input_name: str
    output_names: list[str]

    def run(self, batch: np.ndarray) -> list[np.ndarray]: ...

    def close(self) -> None: ...


class Runtime:
    """Base for runtime settings dataclasses. Subclasses are frozen dataclasses with a `name` ClassVar."""

    name: ClassVar[str] = "base"
    formats: ClassVar[tuple[str, ...]] = (".onnx",)  # model file suffixes it reads itself (others: cvtune's ONNX)

    def reads(self, path: str | Path) -> bool:
        """Whether this runtime reads the file itself (a .tflite in OpenCV or LiteRT), not cvtune's ONNX of it."""
        return Path(path).suffix.lower() in self.formats

    def open(self, model_path: str | Path) -> Session:  # pragma: no cover - abstract
        raise NotImplementedError

    def check(self) -> None:
        """Raise RuntimeUnavailable, naming what is missing, when these settings cannot run here."""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {"runtime": self.name, **{k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}}

    def label(self) -> str:
        """Short human label, e.g. `opencv:new/cpu t2`."""
        return self.name
