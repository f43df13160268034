"""Which runtimes and engines load and run a model, each tried in a child process so a crash cannot take
cvtune down, and which outputs each returns. The search uses this to never propose a combination that cannot run,
and `check_outputs` to never compare or choose one whose outputs differ from the original's (OpenCV 5's default
engine drops the scores of MediaPipe's palm detector, for one)."""

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

Shape = tuple[int, ...] | list[int]


def _fmt(shape: Shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def check_outputs(reference: list[Shape], candidate: list[Shape]) -> str | None:
    """None when `candidate` returns what `reference` does (as many outputs, each of the same shape, in the same
    order, both run on the same input shape); else the reason, in one line for the report."""
    ref, cand = [tuple(int(d) for d in s) for s in reference], [tuple(int(d) for d in s) for s in candidate]
    if len(cand) != len(ref):
        missing = [s for s in ref if s not in cand]
        extra = f"; missing {', '.join(map(_fmt, missing))}" if missing and len(cand) < len(ref) else ""
        return (f"returns {len(cand)} output(s) ({', '.join(map(_fmt, cand)) or 'none'}) where the original returns "
                f"{len(ref)} ({', '.join(map(_fmt, ref))}){extra}")
    if cand == ref:
        return None
    if sorted(cand) == sorted(ref):
        return (f"returns the original's outputs in another order ({', '.join(map(_fmt, cand))} instead of "
                f"{', '.join(map(_fmt, ref))})")
    i = next(i for i, (a, b) in enumerate(zip(cand, ref, strict=True)) if a != b)
    return f"output {i} has shape {_fmt(cand[i])} where the original's has {_fmt(ref[i])}"


def declared_output_shapes(model_path: str | Path, input_shape: tuple[int, ...] | None = None
                           ) -> list[list[int]] | None:
    """The output shapes the model file declares, as runtimes return them (NCHW), with the batch of
    `input_shape`; None when the file leaves a dim other than the batch dynamic, or `input_shape` is not the one
    the file declares (a resized input changes output shapes: probe the original at that size instead)."""
    from .model import model_io

    try:
        inputs, outputs = model_io(model_path)
    except CvtuneError:
        return None
    declared = inputs[0].shape
    batch = int(input_shape[0]) if input_shape else 1
    if input_shape is not None and (len(input_shape) != len(declared) or any(
            isinstance(d, int) and d > 0 and d != s for d, s in zip(declared[1:], input_shape[1:], strict=True))):
        return None
    if input_shape is not None and any(not (isinstance(d, int) and d > 0) for d in declared[1:]):
        return None
    shapes = []
    for out in outputs:
        dims = list(out.shape)
        if any(not (isinstance(d, int) and d > 0) for d in dims[1:]):
            return None
        shapes.append([batch if (i == 0 and not (isinstance(d, int) and d > 0)) or (i == 0 and d == 1) else int(d)
                       for i, d in enumerate(dims)])
    return shapes


@dataclass(frozen=True)
class ProbeResult:
    """One runtime tried on one model: did it load and run, how long it took, the shape of each output it
    returned, and (`output_problem`) how those differ from what the file declares, if they do."""

    label: str
    runtime: dict[str, Any]
    ok: bool
    error: str = ""
    seconds: float = 0.0
    output_shapes: list[list[int]] = field(default_factory=list)
    output_problem: str = ""

    @property
    def usable(self) -> bool:
        """Loads, runs, and returns the outputs the file declares (when it declares them)."""
        return self.ok and not self.output_problem

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "runtime": self.runtime, "ok": self.ok, "error": self.error,
                "seconds": round(self.seconds, 3), "output_shapes": self.output_shapes,
                "output_count": len(self.output_shapes), "output_problem": self.output_problem}


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
    """Try to load `model_path` and run one input of `input_shape` with each runtime, each in a child process.
    Each result holds the output shapes that runtime returned, and whether they differ from the file's own."""
    from .bench import resolve_input_shape

    shape = resolve_input_shape(model_path, input_shape, 1)
    declared = declared_output_shapes(model_path, shape)
    results = []
    if runtimes is None:
        runtimes = default_probe_runtimes()
        if Path(model_path).suffix.lower() != ".onnx":  # .pb / .tflite: the runtimes that read the file itself
            from .runtimes import RUNTIMES

            extra = [make_runtime("litert")] if "litert" in RUNTIMES else []
            runtimes = [rt for rt in [*runtimes, *extra] if rt.reads(model_path)]
    for runtime in runtimes:
        start = time.perf_counter()
        try:
            runtime.check()
            shapes = run_isolated("cvtune.probe:_load_and_run",
                                  {"model": str(model_path), "runtime": runtime.to_dict(), "input_shape": list(shape)},
                                  timeout=timeout)
            problem = check_outputs(declared, shapes) if declared is not None else None
            results.append(ProbeResult(runtime.label(), runtime.to_dict(), True, "",
                                       time.perf_counter() - start, shapes, problem or ""))
        except (TrialFailed, CvtuneError) as exc:
            results.append(ProbeResult(runtime.label(), runtime.to_dict(), False, str(exc),
                                       time.perf_counter() - start))
    return results
