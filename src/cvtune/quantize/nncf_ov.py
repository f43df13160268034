"""NNCF post-training int8 on the OpenVINO model: `nncf.quantize` (MinMax ranges, fast bias correction) and
`nncf.quantize_with_accuracy_control` (reverts the layers that cost the most of a validation metric to float until
a budget holds). The result is an OpenVINO IR (.xml + .bin) that only the openvino runtime runs.

Why the OpenVINO model and not NNCF's ONNX backend: measured on PP-OCRv4 det, NNCF's ONNX-backend QDQ model (opset
11, per-tensor) ran 3.3x faster than ORT fp32 when OpenVINO loaded it, but its output was wrong (cosine 0.03 against
fp32), while ORT ran the same file at cosine 0.95. Quantizing the OpenVINO model directly gave cosine 0.98 and ran
1.43x faster than ORT fp32. Either way every produced model's outputs are checked against the float model's
(quantize.check), because loading and running proves nothing about what a runtime computes.

Calibration streams: `nncf.Dataset` iterates cvtune's CalibrationSet, which preprocesses one image at a time.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..budget import Budget
from ..errors import ModelError, UsageError
from .validation import Validator

__all__ = ["NNCF_PRESETS", "CompiledSession", "NncfResult", "quantize_openvino", "save_ir"]

NNCF_PRESETS = ("performance", "mixed")  # symmetric activations (faster) or asymmetric (closer for ReLU outputs)


class CompiledSession:
    """cvtune's Session protocol over an OpenVINO CompiledModel (what NNCF hands a validation function)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.input_name = compiled.inputs[0].get_any_name()
        self.output_names = [o.get_any_name() if o.get_names() else f"output{i}"
                             for i, o in enumerate(compiled.outputs)]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return [np.array(result[port], copy=True) for port in self.compiled.outputs]

    def close(self) -> None:
        self.request = None


@dataclass(frozen=True)
class NncfResult:
    """What NNCF did: settings, timings, and (with accuracy control) the validation metric before and after."""

    settings: dict[str, Any]
    seconds: float
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "seconds": round(self.seconds, 2), "notes": list(self.notes)}


def _require() -> tuple[Any, Any]:
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise UsageError(f"NNCF int8 needs the nncf and openvino packages ({exc}); pip install nncf openvino "
                         f"(cvtune's default dependencies)") from None
    return nncf, ov


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """NNCF logs through its own logger and draws rich progress bars on stdout (which `--json` owns): silence both."""
    import logging

    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        nncf_logger.setLevel(level)


def save_ir(model: Any, output: Path) -> None:
    """Write an OpenVINO model as `output` (.xml) + its .bin, atomically: both go to a temporary folder next to the
    output, then the .bin and the .xml are renamed into place (the .xml last: it is what readers open)."""
    _, ov = _require()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.stem}.tmp-ir"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        ov.save_model(model, str(tmp / output.name), compress_to_fp16=False)
        (tmp / output.name).with_suffix(".bin").replace(output.with_suffix(".bin"))
        (tmp / output.name).replace(output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def quantize_openvino(source: str | Path, output: str | Path, calibration: Iterable[np.ndarray], *,
                      preset: str = "performance", fast_bias_correction: bool = True,
                      subset_size: int | None = None, ignored: tuple[str, ...] = (),
                      validation: Validator | None = None, max_drop: Budget | None = None,
                      max_steps: int | None = None) -> NncfResult:
    """Convert the ONNX `source` to an OpenVINO model, quantize it with NNCF on the calibration tensors and write
    the IR to `output` (.xml + .bin). With a `validation` (a task metric of a Session on labelled images) and
    `max_drop`, NNCF's accuracy control keeps layers in float until the budget holds (at most `max_steps`)."""
    nncf, ov = _require()
    if preset not in NNCF_PRESETS:
        raise UsageError(f"unknown NNCF preset '{preset}'; choose one of: {', '.join(NNCF_PRESETS)}")
    output = Path(output)
    if output.suffix.lower() != ".xml":
        raise UsageError(f"NNCF int8 writes an OpenVINO IR: give an output ending in .xml (got {output.name})")
    started = time.perf_counter()
    try:
        model = ov.convert_model(str(source))
    except Exception as exc:  # noqa: BLE001 - OpenVINO's converter raises several types
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise ModelError(f"OpenVINO cannot convert {source}: {first[:240]}") from None
    tensors = calibration if hasattr(calibration, "__len__") else list(calibration)
    count = len(tensors)  # type: ignore[arg-type]
    if not count:
        raise ModelError("NNCF int8 needs calibration images (calibration=...)")
    dataset = nncf.Dataset(tensors)
    settings: dict[str, Any] = {"method": "nncf", "preset": preset, "fast_bias_correction": fast_bias_correction,
                                "subset_size": subset_size or count, "ignored": list(ignored)}
    common = {"preset": getattr(nncf.QuantizationPreset, preset.upper()), "subset_size": subset_size or count,
              "fast_bias_correction": fast_bias_correction,
              "ignored_scope": nncf.IgnoredScope(names=list(ignored)) if ignored else None}
    notes: list[str] = []
    if validation is not None and (not len(validation) or max_drop is None):
        raise UsageError("NNCF accuracy control needs validation images and a max_drop budget")
    try:
        with _quiet():
            quantized = _run_nncf(nncf, model, dataset, common, settings, validation, max_drop, max_steps)
    except (UsageError, ModelError):
        raise
    except Exception as exc:  # noqa: BLE001 - NNCF raises many types
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise ModelError(f"NNCF could not quantize {Path(source).name}: {first[:240]}") from None
    save_ir(quantized, output)
    fq = sum(1 for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize")
    notes.append(f"NNCF {nncf.__version__} on OpenVINO {ov.__version__}: {fq} FakeQuantize op(s), preset "
                 f"{preset}, {count} calibration image(s){', fast bias correction' if fast_bias_correction else ''}")
    return NncfResult(settings, time.perf_counter() - started, tuple(notes))


def _run_nncf(nncf: Any, model: Any, dataset: Any, common: dict[str, Any], settings: dict[str, Any],
              validation: Validator | None, max_drop: Budget | None, max_steps: int | None) -> Any:
    if validation is None or max_drop is None:
        return nncf.quantize(model, dataset, **common)
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    def validation_fn(compiled: Any, items: Iterable[int]) -> float:
        session = CompiledSession(compiled)
        try:
            return float(validation(session, list(items)))
        finally:
            session.close()

    drop_type = nncf.DropType.RELATIVE if max_drop.relative else nncf.DropType.ABSOLUTE
    restorer = AdvancedAccuracyRestorerParameters(max_num_iterations=max_steps if max_steps is not None else 8,
                                                  ranking_subset_size=min(len(validation), 10))
    items = nncf.Dataset(list(range(len(validation))), validation.tensor)
    settings.update({"accuracy_control": True, "max_drop": max_drop.describe(),
                     "max_steps": restorer.max_num_iterations})
    return nncf.quantize_with_accuracy_control(model, dataset, items, validation_fn, max_drop=float(max_drop.value),
                                               drop_type=drop_type, advanced_accuracy_restorer_parameters=restorer,
                                               **common)
