"""Which runtimes and engines load and run a model, each tried in a child process so a crash cannot take
cvtune down. The search uses this to never propose a combination that cannot run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CvtuneError, TrialFailed
from .isolate import run_isolated
from .runtimes import Runtime, make_runtime, runtime_from_dict
from .runtimes.opencv import available_engines


@dataclass(frozen=True)
class ProbeResult:
    label: str
    runtime: dict[str, Any]
    ok: bool
    error: str = ""
    seconds: float = 0.0
    output_shapes: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "runtime": self.runtime, "ok": self.ok, "error": self.error,
                "seconds": round(self.seconds, 3), "output_shapes": self.output_shapes}


def default_probe_runtimes() -> list[Runtime]:
    """Every OpenCV engine this build has (explicitly, not 'auto') plus ONNX Runtime on the CPU."""
    engines = [e for e in available_engines() if e != "auto"]
    return [make_runtime("opencv", engine=e) for e in engines] + [make_runtime("ort")]


def _load_and_run(model: str, runtime: dict, input_shape: list[int]) -> list[list[int]]:
    session = runtime_from_dict(runtime).open(model)
    outputs = session.run(np.random.default_rng(0).random(input_shape, dtype=np.float32))
    return [list(np.asarray(o).shape) for o in outputs]


def probe_runtimes(model_path: str | Path, runtimes: list[Runtime] | None = None,
                   input_shape: tuple[int, ...] | None = None, *, timeout: float = 60.0) -> list[ProbeResult]:
    """Try to load `model_path` and run one input of `input_shape` with each runtime, each in a child process."""
    from .bench import resolve_input_shape

    shape = resolve_input_shape(model_path, input_shape, 1)
    results = []
    if runtimes is None:
        runtimes = default_probe_runtimes()
        if Path(model_path).suffix.lower() != ".onnx":  # .pb / .tflite: OpenCV only
            runtimes = [rt for rt in runtimes if rt.name == "opencv"]
    for runtime in runtimes:
        start = time.perf_counter()
        try:
            runtime.check()
            shapes = run_isolated("cvtune.probe:_load_and_run",
                                  {"model": str(model_path), "runtime": runtime.to_dict(), "input_shape": list(shape)},
                                  timeout=timeout)
            results.append(ProbeResult(runtime.label(), runtime.to_dict(), True, "",
                                       time.perf_counter() - start, shapes))
        except (TrialFailed, CvtuneError) as exc:
            results.append(ProbeResult(runtime.label(), runtime.to_dict(), False, str(exc),
                                       time.perf_counter() - start))
    return results
