"""Static int8 with ONNX Runtime's quantize_static: QDQ or QOperator, per-tensor or per-channel, MinMax / Entropy /
Percentile (or per-tensor "auto") calibration on the user's images, optionally after cross-layer equalization and
with bias correction.

Known traps handled here (see DESIGN.md): PP-OCR keeps weights in Constant nodes, which ORT does not quantize, so
they become initializers first; per-channel DequantizeLinear needs opset 13 (PP-OCR is opset 11/12, and ORT then
rejects the `axis` attribute), so the opset is raised; the result is loaded in ORT before it is accepted.
"""

from __future__ import annotations

import dataclasses
import inspect
import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx

from ..data.calibration import CalibrationSet
from ..errors import CvtuneError, ModelError
from ..model import constants_to_initializers, load_onnx
from .config import CALIBRATIONS, FORMATS, QTYPES, STATIC_WEIGHTED_OPS, StaticConfig
from .graph import (
    PER_CHANNEL_MIN_OPSET,
    check_not_quantized,
    check_quantizable,
    float_inputs_for,
    name_nodes,
    raise_opset,
)
from .ortutil import captured_logs, check_loads, first_line, pre_process


@dataclass(frozen=True)
class PreparedModel:
    """The float model as the quantizer sees it (initializers, named nodes, opset raised, pre-processed)."""

    path: Path
    quantizable: tuple[str, ...]  # names of the weighted nodes int8 will quantize
    notes: tuple[str, ...]


def prepare_float(model_path: str | Path, config: StaticConfig, workdir: Path, *,
                  op_types: tuple[str, ...] = STATIC_WEIGHTED_OPS) -> PreparedModel:
    """Everything before calibration, written to `workdir/prepared.onnx`; checks the model is float and has
    something to quantize."""
    proto = load_onnx(model_path)
    check_not_quantized(proto, model_path)
    notes: list[str] = []
    proto = name_nodes(constants_to_initializers(proto))
    if config.input_shape:
        from ..prepare import make_static, simplify

        proto = simplify(make_static(proto, config.input_shape), config.input_shape)
        notes.append(f"static input shape {'x'.join(map(str, config.input_shape))} + onnxslim")
    if config.per_channel:
        proto, note = raise_opset(proto, PER_CHANNEL_MIN_OPSET)
        if note:
            notes.append(note)
    check_quantizable(proto, model_path, op_types, (), hint=" (int8 shrinks Conv/Gemm/MatMul weights)")
    raw = workdir / "float.onnx"
    onnx.save(proto, str(raw))
    prepared = workdir / "prepared.onnx"
    notes.extend(pre_process(raw, prepared))
    final = name_nodes(onnx.load(str(prepared)))
    if config.cle:
        from .cle import equalize

        final, report = equalize(final)
        notes.append(report.summary())
    onnx.save(final, str(prepared))
    quantizable = check_quantizable(final, model_path, op_types, config.exclude)
    return PreparedModel(prepared, tuple(quantizable), tuple(notes))


def _supports_calibration_cache() -> bool:
    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def streamed_ranges(prepared: PreparedModel, calibration: CalibrationSet, config: StaticConfig, cache: Path) -> str:
    """Write ORT's calibration cache at `cache` with ranges found by streaming the calibration images one at a time
    (quantize.ranges): Entropy, Percentile, or per tensor the best of the three ("auto"). Returns a note."""
    from .ranges import RANGE_METHODS, choose_ranges, collect_histograms, write_cache

    cfg = config.resolved()
    histograms = collect_histograms(prepared.path, calibration, percentile=cfg.percentile)
    methods = RANGE_METHODS if cfg.calibrate == "auto" else (cfg.calibrate,)
    chosen = choose_ranges(histograms, methods=methods, activation_type=str(cfg.activation_type))
    write_cache(chosen, cache)
    return chosen.summary() + f" ({histograms.images} images, streamed)"


def run_quantize_static(prepared: PreparedModel, output: Path, calibration: CalibrationSet, config: StaticConfig, *,
                        cache: Path | None = None, extra: dict | None = None) -> list[str]:
    """One call of ORT's quantize_static; ranges come from `cache` when a previous call with the same calibration
    method wrote it (ORT >= 1.22), so exclusion steps and other formats do not calibrate again. Histogram methods
    (entropy, percentile, auto) are computed here, streamed, and handed to ORT through the cache. Returns notes."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    cfg = config.resolved()
    notes: list[str] = []
    method = cfg.calibrate
    if method != "minmax":
        if not _supports_calibration_cache():
            raise ModelError(f"calibration '{method}' needs onnxruntime >= 1.22 (calibration cache); use minmax or "
                             f"upgrade onnxruntime")
        if cache is None:
            cache = output.with_name(output.stem + ".ranges.json")
        if not cache.is_file():
            notes.append(streamed_ranges(prepared, calibration, cfg, cache))
        method = "minmax"  # the cache holds the chosen ranges, labelled MinMax
    options: dict = {"CalibPercentile": cfg.percentile} if cfg.calibrate == "percentile" else {}
    if cfg.exclude:  # a float layer must see its input's Relu/Clip, not one folded into a QuantizeLinear range
        options["QDQKeepRemovableActivations"] = True
    options.update(extra or {})
    kwargs = {}
    if cache is not None and _supports_calibration_cache():
        kwargs["calibration_cache_path"] = str(cache)
    with captured_logs():
        quantize_static(
            str(prepared.path), str(output), calibration.reader(),
            quant_format=getattr(QuantFormat, FORMATS[cfg.format]),
            per_channel=cfg.per_channel, reduce_range=bool(cfg.reduce_range),
            activation_type=getattr(QuantType, QTYPES[cfg.activation_type]),
            weight_type=getattr(QuantType, QTYPES[cfg.weight_type]),
            calibrate_method=getattr(CalibrationMethod, CALIBRATIONS[method]),
            nodes_to_exclude=list(cfg.exclude), extra_options=options, **kwargs,
        )
    return notes


def quantize_static_model(prepared: PreparedModel, output: Path, calibration: CalibrationSet, config: StaticConfig,
                          *, cache: Path | None = None, extra: dict | None = None) -> list[str]:
    """Quantize `prepared` into `output` and make sure ONNX Runtime loads and runs it. If per-channel output does
    not load, retry without bias quantization (the DequantizeLinear-with-axis trap) and say so. Returns notes."""
    cfg = config.resolved()
    notes = [f"activations {cfg.activation_type}, weights {cfg.weight_type}, reduce_range {cfg.reduce_range}"]
    if cache is None and cfg.calibrate != "minmax" or cfg.bias_correction and cache is None:
        cache = output.with_name(output.stem + ".ranges.json")
    if cfg.bias_correction:
        prepared, note = _bias_corrected(prepared, calibration, cfg, cache)
        notes.append(note)
    try:
        notes += run_quantize_static(prepared, output, calibration, cfg, cache=cache, extra=extra)
    except CvtuneError:
        raise
    except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises many types
        raise ModelError(f"ONNX Runtime's quantize_static failed on {prepared.path.name}: {first_line(exc)}") from None
    sample = calibration.head(1)[0]
    error = check_loads(output, sample)
    if error and cfg.per_channel:
        retry = output.with_name(output.stem + ".nobias.onnx")
        run_quantize_static(prepared, retry, calibration, cfg, cache=cache,
                            extra={**(extra or {}), "QuantizeBias": False})
        if not check_loads(retry, sample):
            shutil.move(retry, output)
            notes.append(f"per-channel output did not load in ORT ({error[:120]}); biases kept in float "
                         f"(QuantizeBias=False)")
            error = ""
    if error:
        raise ModelError(f"the int8 model ORT produced does not load in ONNX Runtime: {error}")
    if cfg.exclude:
        notes.append(_keep_excluded_float(output, set(cfg.exclude), cfg.format))
    return notes


def _bias_corrected(prepared: PreparedModel, calibration: CalibrationSet, config: StaticConfig, cache: Path
                    ) -> tuple[PreparedModel, str]:
    """The prepared float model with every quantized layer's bias corrected (quantize.bias_correction); layers
    kept in float are left alone. The shifts are measured once per prepared model (on a quantization with every
    layer quantized: each layer's shift is its own, measured on float inputs) and reused for every exclusion set."""
    from .bias_correction import BiasShifts, apply_bias_shifts, measure_bias_shifts

    store = prepared.path.with_name(prepared.path.stem + ".bias_shifts.npz")
    if store.is_file():
        shifts = BiasShifts.load(store)
    else:
        qdq = prepared.path.with_name(prepared.path.stem + ".bc_plain.onnx")
        # measured on the model as it will be quantized (format, activation type, 7-bit weights): its own grid
        plain = dataclasses.replace(config, exclude=(), bias_correction=False)
        try:
            run_quantize_static(prepared, qdq, calibration, plain, cache=cache)
        except CvtuneError:
            raise
        except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises many types
            raise ModelError(f"ONNX Runtime's quantize_static failed on {prepared.path.name}: "
                             f"{first_line(exc)}") from None
        shifts = measure_bias_shifts(prepared.path, qdq, calibration)
        qdq.unlink(missing_ok=True)
        shifts.save(store)
    corrected, count = apply_bias_shifts(onnx.load(str(prepared.path)), shifts, skip=config.exclude)
    path = prepared.path.with_name(prepared.path.stem + ".bc.onnx")
    onnx.save(corrected, str(path))
    return dataclasses.replace(prepared, path=path), shifts.summary() + f"; {count} corrected"


def _keep_excluded_float(path: Path, excluded: set[str], fmt: str) -> str:
    """Make excluded layers really run in float (see graph.float_inputs_for); returns a note."""
    proto = onnx.load(str(path))
    rewired = float_inputs_for(proto, excluded)
    onnx.save(proto, str(path))
    note = f"{len(excluded)} layer(s) kept in float ({rewired} input(s) read unquantized)"
    if fmt == "qoperator":
        note += ("; in QOperator models ONNX Runtime may still quantize the weights of a float Conv/Gemm between "
                 "DequantizeLinear and QuantizeLinear at load time (WeightBiasQuantization)")
    return note
