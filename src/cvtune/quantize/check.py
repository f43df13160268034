"""The output check every produced model gets, per runtime: run it on a few real inputs and compare its outputs with
the float model's (ONNX Runtime on the original file). Loading and running proves nothing about what a runtime
computes: NNCF's ONNX-backend QDQ model of PP-OCRv4 det ran in OpenVINO at cosine 0.03 against fp32 while ONNX
Runtime ran the same file at 0.95.

    checks = check_outputs("det_int8.xml", "det.onnx", [make_runtime("openvino")], samples)
    bad = [c for c in checks if not c.ok]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CvtuneError
from ..runtimes import Runtime, make_runtime

__all__ = ["MIN_COSINE", "OutputCheck", "check_outputs", "outputs_cosine"]

# Below this cosine against the float model's outputs a model computes something else: a runtime that mis-reads
# the file, not a quantization error (correct int8 of PP-OCRv4 det: 0.95-0.98; the broken case: 0.03). The task
# metric, not this check, judges whether a close model is close enough.
MIN_COSINE = 0.8


@dataclass(frozen=True)
class OutputCheck:
    """One runtime's verdict on a produced model: the mean/min cosine of all its outputs (flattened) against the
    float model's on the same inputs, or the error that stopped it."""

    runtime: str
    cosine_mean: float | None
    cosine_min: float | None
    inputs: int
    ok: bool
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "cosine_mean": self.cosine_mean, "cosine_min": self.cosine_min,
                "inputs": self.inputs, "ok": self.ok, "error": self.error}

    def describe(self) -> str:
        if self.error:
            return f"{self.runtime}: {self.error}"
        return f"{self.runtime}: output cosine vs float {self.cosine_mean:.4f} (min {self.cosine_min:.4f})"


def _flat(outputs: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(o, np.float64).ravel() for o in outputs]) if outputs else np.zeros(0)


def outputs_cosine(got: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> float:
    """Cosine of all outputs flattened together; 0.0 when the output sets differ in size (a different model)."""
    from ..tasks.fidelity import cosine

    a, b = _flat(got), _flat(ref)
    return cosine(a, b) if a.shape == b.shape and a.size else 0.0


def check_outputs(model: str | Path, reference: str | Path, runtimes: Sequence[Runtime],
                  samples: Sequence[np.ndarray], *, min_cosine: float = MIN_COSINE,
                  reference_runtime: Runtime | None = None) -> list[OutputCheck]:
    """For each runtime: open `model`, run every sample, compare with `reference` (the float model) run by
    `reference_runtime` (default ONNX Runtime). ok = it ran and the mean cosine is >= `min_cosine`."""
    if not samples:
        raise ValueError("check_outputs needs at least one input")
    ref_session = (reference_runtime or make_runtime("ort")).open(reference)
    try:
        expected = [ref_session.run(x) for x in samples]
    finally:
        ref_session.close()
    checks = []
    for runtime in runtimes:
        label = runtime.label()
        try:
            session = runtime.open(model)
            try:
                cosines = [outputs_cosine(session.run(x), want) for x, want in zip(samples, expected, strict=True)]
            finally:
                session.close()
        except CvtuneError as exc:
            checks.append(OutputCheck(label, None, None, 0, False, str(exc)[:300]))
            continue
        except Exception as exc:  # noqa: BLE001 - runtimes raise their own types
            first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            checks.append(OutputCheck(label, None, None, 0, False, f"failed to run: {first[:240]}"))
            continue
        mean, low = float(np.mean(cosines)), float(np.min(cosines))
        error = "" if mean >= min_cosine else (f"wrong outputs: cosine {mean:.4f} against the float model (below "
                                               f"{min_cosine}): this runtime does not compute what the model means")
        checks.append(OutputCheck(label, mean, low, len(cosines), not error, error))
    return checks
