"""Activation ranges for static int8, computed one calibration image at a time, and chosen per tensor.

ONNX Runtime's histogram calibrators (Entropy, Percentile) keep every intermediate tensor of every calibration image
in memory until the end of `collect_data` (calibrate.py: `self.intermediate_outputs.append(...)`), so their memory
grows with the number of images (measured on PP-OCRv4 det: see README). Here the same ORT collectors are fed one
image at a time (`HistogramCollector.collect` merges histograms), so memory holds one image's activations whatever
the count. The ranges are written to ORT's calibration cache (ORT >= 1.22 `calibration_cache_path`) and
quantize_static reads them from there instead of calibrating again.

`calibrate="auto"` picks, per tensor, the range among MinMax, Entropy and Percentile with the lowest quantization
error of that tensor: the mean squared error of quantize-dequantize over its calibration histogram (clipping and
rounding both count). A quick local measurement instead of one global method: measured, not assumed.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.calibration import CalibrationSet
from .ortutil import captured_logs

__all__ = ["RANGE_METHODS", "ChosenRanges", "choose_ranges", "collect_histograms", "quant_mse", "write_cache"]

RANGE_METHODS = ("minmax", "entropy", "percentile")
# ORT's defaults for each method (create_calibrator): entropy on a signed 128-bin histogram with 128 quantized bins,
# percentile on a 2048-bin histogram of |x| (symmetric). A signed 2048-bin histogram measures the error.
ENTROPY_BINS, PERCENTILE_BINS, ERROR_BINS = 128, 2048, 2048


@dataclass
class Histograms:
    """What one streaming pass over the calibration images collected, per activation tensor."""

    entropy: Any  # ORT HistogramCollector (signed, for entropy; its min/max are the MinMax range)
    percentile: Any  # ORT HistogramCollector (|x|, for percentile)
    error: Any  # ORT HistogramCollector (signed, fine bins, for the error measurement)
    images: int = 0

    def tensors(self) -> list[str]:
        return sorted(self.entropy.histogram_dict)

    @classmethod
    def empty(cls, percentile: float = 99.999) -> Histograms:
        from onnxruntime.quantization.calibrate import HistogramCollector

        return cls(HistogramCollector("entropy", False, ENTROPY_BINS, ENTROPY_BINS, percentile, "same"),
                   HistogramCollector("percentile", True, PERCENTILE_BINS, PERCENTILE_BINS, percentile, "same"),
                   HistogramCollector("entropy", False, ERROR_BINS, ERROR_BINS, percentile, "same"))

    def add(self, values: dict[str, np.ndarray]) -> None:
        """Fold one image's values of each tensor into the histograms (ORT's collectors merge them)."""
        with captured_logs():
            for collector in (self.entropy, self.percentile, self.error):
                collector.collect(values)
        self.images += 1


@dataclass(frozen=True)
class ChosenRanges:
    """A (low, high) range per tensor, the method each came from, and the error of every method tried."""

    ranges: dict[str, tuple[float, float]]
    method: dict[str, str]
    errors: dict[str, dict[str, float]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.method.values():
            out[m] = out.get(m, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def summary(self) -> str:
        parts = ", ".join(f"{m} {n}" for m, n in self.counts().items())
        return f"activation ranges per tensor ({len(self.ranges)} tensors): {parts}"


def _op_types() -> list[str]:
    """The op types quantize_static calibrates when given none (its own default)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def collect_histograms(model_path: str | Path, calibration: CalibrationSet | Iterable[np.ndarray], *,
                       percentile: float = 99.999, op_types: list[str] | None = None) -> Histograms:
    """Run the model over the calibration tensors one at a time and fold each tensor's values into ORT's histogram
    collectors. Memory: one image's activations plus the histograms, whatever the number of images."""
    import onnx
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    collectors = Histograms.empty(percentile)
    with tempfile.TemporaryDirectory(prefix="cvtune-ranges-") as tmp, captured_logs():
        inferred = Path(tmp) / "inferred.onnx"
        onnx.save(load_model_with_shape_infer(Path(model_path)), str(inferred))
        calibrator = create_calibrator(inferred, op_types or _op_types(), str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod.Entropy)
        session = calibrator.infer_session
        input_name = session.get_inputs()[0].name
        names = [o.name for o in session.get_outputs()]
        wanted = calibrator.tensors_to_calibrate
        for tensor in calibration:
            outputs = session.run(None, {input_name: tensor})
            values = {n: v for n, v in zip(names, outputs, strict=True) if n in wanted}
            del outputs
            collectors.add(values)
            del values
        del session, calibrator
    return collectors


def _qrange(activation_type: str) -> tuple[int, int]:
    return (0, 255) if activation_type == "u8" else (-128, 127)


def quant_mse(centers: np.ndarray, counts: np.ndarray, low: float, high: float, activation_type: str) -> float:
    """Mean squared error of quantize-dequantize (ORT's asymmetric scale and zero point for [low, high], zero
    included) over a histogram: clipping of values outside the range and rounding inside it both count."""
    qmin, qmax = _qrange(activation_type)
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    total = counts.sum()
    if total == 0:
        return 0.0
    if high - low <= 0:
        return float((counts * centers ** 2).sum() / total)
    scale = (high - low) / (qmax - qmin)
    zero = np.clip(np.round(qmin - low / scale), qmin, qmax)
    restored = (np.clip(np.round(centers / scale) + zero, qmin, qmax) - zero) * scale
    return float((counts * (centers - restored) ** 2).sum() / total)


def _method_ranges(h: Histograms) -> dict[str, dict[str, tuple[float, float]]]:
    with captured_logs():
        entropy = h.entropy.compute_entropy()
        percentile = h.percentile.compute_percentile()
    minmax = {name: (float(v[2]), float(v[3])) for name, v in h.entropy.histogram_dict.items()}
    return {"minmax": minmax,
            "entropy": {n: (float(v[0]), float(v[1])) for n, v in entropy.items()},
            "percentile": {n: (float(v[0]), float(v[1])) for n, v in percentile.items()}}


def choose_ranges(h: Histograms, *, methods: tuple[str, ...] = RANGE_METHODS, activation_type: str = "u8"
                  ) -> ChosenRanges:
    """Per tensor, the range of `methods` with the lowest quantization MSE on that tensor's histogram (a single
    method: its ranges, errors still measured). Ties keep the earlier method (MinMax first: no clipping)."""
    unknown = [m for m in methods if m not in RANGE_METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown range method {unknown}; choose from {RANGE_METHODS}")
    candidates = _method_ranges(h)
    ranges: dict[str, tuple[float, float]] = {}
    chosen: dict[str, str] = {}
    errors: dict[str, dict[str, float]] = {}
    for name, (hist, edges, *_rest) in h.error.histogram_dict.items():
        centers = (edges[:-1] + edges[1:]).astype(np.float64) / 2
        counts = hist.astype(np.float64)
        errors[name] = {m: quant_mse(centers, counts, *candidates[m][name], activation_type) for m in methods
                        if name in candidates[m]}
        best = min(errors[name], key=lambda m: (errors[name][m], methods.index(m)))
        ranges[name], chosen[name] = candidates[best][name], best
    return ChosenRanges(ranges, chosen, errors)


def write_cache(ranges: ChosenRanges, path: Path) -> None:
    """ORT's calibration cache (calibrate.save_tensors_data) holding these ranges, labelled MinMax: quantize_static
    with calibrate_method=MinMax and calibration_cache_path=path then uses them as they are."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, save_tensors_data

    data = {name: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
            for name, (lo, hi) in ranges.ranges.items()}
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), path)
    sidecar = path.with_suffix(".methods.json")
    sidecar.write_text(json.dumps({"method": ranges.method, "errors": ranges.errors}))


def read_methods(path: Path) -> dict[str, str]:
    """The per-tensor method a `write_cache` cache came from ({} when it has none)."""
    sidecar = path.with_suffix(".methods.json")
    return json.loads(sidecar.read_text())["method"] if sidecar.is_file() else {}
