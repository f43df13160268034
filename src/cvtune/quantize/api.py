"""The umbrella entry point: `quantize(model, output, config)` dispatches on the config's type, then every method
ends the same way: compact, check fidelity, probe which runtimes load the file, write model + sidecar atomically.

All work happens in a temporary folder; the user's output appears only when everything succeeded, and the input
is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..data.calibration import CalibrationSet, random_calibration
from ..errors import UsageError
from ..files import atomic_files, json_document, temp_dir
from ..files import check_output as check_output_path
from ..model import Model, check_model_file, constants_to_initializers, load_onnx
from ..probe import ProbeResult, probe_runtimes
from ..runtimes import Runtime, make_runtime
from .config import DynamicConfig, Fp16Config, NncfConfig, QuantConfig, StaticConfig
from .graph import all_names, compact
from .ortutil import check_loads
from .result import QuantResult, output_fidelity, quant_op_counts, runtime_agreement, sidecar_path


def check_output(model: str | os.PathLike[str], output: str | os.PathLike[str], suffix: str = ".onnx", *,
                 force: bool = True, option: str = "output", force_hint: str = "force=True") -> tuple[Path, Path]:
    """Source and output as Paths; the source must exist, the output must be a file path ending in `suffix` (see
    files.check_output: not a folder, not the input, in a writable folder; existing only with `force`). An
    OpenVINO IR's .bin next to an .xml output is checked as a companion."""
    source = check_model_file(model)
    out = Path(output)
    if out.suffix.lower() != suffix and suffix == ".xml":
        raise UsageError(f"output {out} must end in .xml (NNCF int8 writes an OpenVINO IR: .xml + .bin)")
    companions = [sidecar_path(out)] + ([out.with_suffix(".bin")] if suffix == ".xml" else [])
    output = check_output_path(out, force=force, inputs=(source,), suffixes=(suffix,), companions=companions,
                               option=option, force_hint=force_hint)
    return source, output


def build(source: Path, target: Path, config: QuantConfig, workdir: Path,
          calibration: CalibrationSet | None) -> tuple[list[str], dict[str, Any]]:
    """Produce the quantized model at `target`; returns (notes, extra details). Dispatches on the config type."""
    if isinstance(config, StaticConfig):
        from .static import prepare_float, quantize_static_model

        if calibration is None or not len(calibration):
            raise UsageError("static int8 needs calibration images (a folder of images like the deployed ones), or use "
                             "dynamic int8, which needs none")
        prepared = prepare_float(source, config, workdir)
        notes = list(prepared.notes)
        notes += quantize_static_model(prepared, target, calibration, config, cache=workdir / "ranges.json")
        return notes, {"quantized_nodes": len(prepared.quantizable), "settings": config.resolved().to_dict()}
    if isinstance(config, DynamicConfig):
        from .dynamic import quantize_dynamic_model

        return quantize_dynamic_model(source, target, config, workdir), {"settings": config.to_dict()}
    if isinstance(config, Fp16Config):
        from .fp16 import convert_fp16_model

        notes, details = convert_fp16_model(source, target, config)
        return notes, {"settings": config.to_dict(), "fp16": details}
    if isinstance(config, NncfConfig):
        from .nncf_ov import quantize_openvino

        if calibration is None or not len(calibration):
            raise UsageError("NNCF int8 needs calibration images (calibration=...)")
        done = quantize_openvino(source, target, calibration, preset=config.preset,
                                 fast_bias_correction=config.fast_bias_correction, ignored=config.ignored)
        return list(done.notes), {"settings": config.to_dict(), "nncf_seconds": round(done.seconds, 2)}
    raise UsageError(f"unknown quantization config {type(config).__name__}; use StaticConfig, DynamicConfig, "
                     f"Fp16Config or NncfConfig")


def default_probe_shape(source: Path, config: QuantConfig) -> tuple[int, ...]:
    if isinstance(config, StaticConfig) and config.input_shape:
        return tuple(config.input_shape)
    return Model.load(source).default_input_shape()


def _compact_file(source: Path, produced: Path, sample: np.ndarray) -> str:
    """Compact `produced` in place (see graph.compact) if the result still loads and runs in ORT; returns a note."""
    original = all_names(constants_to_initializers(load_onnx(source)))
    prepared = produced.parent / "prepared.onnx"
    if prepared.is_file():
        original |= all_names(onnx.load(str(prepared)))
    before = produced.stat().st_size
    backup = produced.with_suffix(".uncompacted.onnx")
    shutil.copyfile(produced, backup)
    onnx.save(compact(onnx.load(str(produced)), original), str(produced))
    error = check_loads(produced, sample)
    if error:
        shutil.move(backup, produced)
        return f"compaction skipped: the compacted model did not load in ORT ({error[:120]})"
    backup.unlink()
    return f"compacted: {before} -> {produced.stat().st_size} bytes (value_info, zero zero-points, shorter names)"


def quantize_probe_runtimes() -> list[Runtime]:
    """What a produced model is probed with: every OpenCV engine, ONNX Runtime, and OpenVINO where installed."""
    from ..probe import default_probe_runtimes
    from ..runtimes import RUNTIMES

    runtimes = default_probe_runtimes()
    if "openvino" in RUNTIMES:
        runtimes.append(make_runtime("openvino"))
    return runtimes


def judge_probes(probes: tuple[ProbeResult, ...], agreement: dict[str, float | str]) -> tuple[ProbeResult, ...]:
    """A runtime that loads and runs the model but whose outputs are far from the float model's (cosine below
    check.MIN_COSINE) does not run it: its probe is marked failed with the cosine, so nothing picks it."""
    import dataclasses

    from .check import MIN_COSINE

    out = []
    for p in probes:
        value = agreement.get(p.label)
        if p.ok and isinstance(value, float) and value < MIN_COSINE:
            p = dataclasses.replace(p, ok=False, error=f"wrong outputs: cosine {value:.4f} against the float model "
                                                       f"(below {MIN_COSINE}); this runtime computes something else")
        out.append(p)
    return tuple(out)


def finalize(source: Path, produced: Path, output: Path, config: QuantConfig, notes: list[str], *,
             calibration: CalibrationSet | None, details: dict[str, Any], probe: bool,
             probe_shape: tuple[int, ...] | None, probe_runtimes_: list[Runtime] | None = None,
             accuracy: dict[str, Any] | None = None, started: float | None = None) -> QuantResult:
    """Compact `produced`, measure it, probe it, then write it to `output` with its sidecar (atomically)."""
    shape = probe_shape or default_probe_shape(source, config)
    samples = calibration.head(4) if calibration is not None else []
    if not samples:
        samples = random_calibration(source, shape, n=2).tensors()
    notes = [*notes, _compact_file(source, produced, samples[0])]
    fidelity = output_fidelity(source, produced, samples)
    fidelity["inputs_from"] = calibration.source if calibration is not None else "random"
    probes: tuple[ProbeResult, ...] = ()
    extra = {k: v for k, v in details.items() if k not in ("settings", "quantized_nodes")}
    if probe:
        probes = tuple(probe_runtimes(produced, probe_runtimes_ or quantize_probe_runtimes(), shape))
        if calibration is not None and len(calibration):
            extra["agreement"] = runtime_agreement(produced, source, probes, samples[0], produced.parent)
            probes = judge_probes(probes, extra["agreement"])
        if isinstance(config, Fp16Config):
            alt = probe_runtimes(source, [make_runtime("opencv", engine="classic", target="cpu_fp16")], shape)[0]
            extra["runtime_alternative"] = {"what": "float model on OpenCV's DNN_TARGET_CPU_FP16", **alt.to_dict()}
    settings = details.get("settings", config.to_dict())
    excluded = tuple(settings.get("exclude", ()))
    counts = quant_op_counts(produced)
    quantized = details.get("quantized_nodes")
    if quantized is None:
        quantized = sum(n for op, n in counts.items() if op.startswith(("QLinear", "ConvInteger", "MatMulInteger",
                                                                          "DynamicQuantizeMatMul", "QGemm")))
    result = QuantResult(
        output=output, sidecar=sidecar_path(output), source=source, method=config.method, settings=settings,
        source_bytes=source.stat().st_size, output_bytes=produced.stat().st_size, quantized_nodes=int(quantized),
        op_counts=counts, excluded=excluded, notes=tuple(n for n in notes if n),
        calibration=calibration.to_dict() if calibration is not None and config.method == "static" else None,
        fidelity=fidelity, probe=probes, accuracy=accuracy, extra=extra,
        seconds=time.perf_counter() - started if started else 0.0)
    sidecar = json.dumps(json_document("quant", result.to_dict()), indent=2, ensure_ascii=False, default=str)
    with atomic_files(output, result.sidecar, size_hint=produced.stat().st_size) as (tmp_model, tmp_sidecar):
        shutil.copyfile(produced, tmp_model)  # model and sidecar are committed together, the sidecar first
        tmp_sidecar.write_bytes((sidecar + "\n").encode("utf-8", "backslashreplace"))
    return result


def quantize(model: str | os.PathLike[str], output: str | os.PathLike[str], config: QuantConfig | None = None, *,
             calibration: CalibrationSet | None = None, probe: bool = True,
             probe_shape: tuple[int, ...] | None = None, runtimes: list[Runtime] | None = None) -> QuantResult:
    """Quantize `model` into `output` (+ `<output stem>.quant.json`). `config` defaults to static int8 QDQ, which
    needs `calibration` (see cvtune.data.calibration.calibration_set). `runtimes` are what the probe tries
    (default: every OpenCV engine and ONNX Runtime)."""
    started = time.perf_counter()
    config = config or StaticConfig()
    ir = isinstance(config, NncfConfig)
    source, output = check_output(model, output, ".xml" if ir else ".onnx")
    with temp_dir("quantize") as workdir:  # private to this call: ORT's quantizer writes beside its input
        produced = workdir / ("quantized.xml" if ir else "quantized.onnx")
        notes, details = build(source, produced, config, workdir, calibration)
        if ir:
            return finalize_ir(source, produced, output, config, notes, calibration=calibration, details=details,
                               probe=probe, probe_shape=probe_shape, started=started)
        return finalize(source, produced, output, config, notes, calibration=calibration, details=details,
                        probe=probe, probe_shape=probe_shape, probe_runtimes_=runtimes, started=started)


def finalize_ir(source: Path, produced: Path, output: Path, config: QuantConfig, notes: list[str], *,
                calibration: CalibrationSet | None, details: dict[str, Any], probe: bool,
                probe_shape: tuple[int, ...] | None, accuracy: dict[str, Any] | None = None,
                started: float | None = None) -> QuantResult:
    """The OpenVINO IR counterpart of `finalize`: check its outputs against the float model (OpenVINO vs ONNX
    Runtime), probe the openvino runtime, then write .bin, .xml and the sidecar (each atomically, the .xml last)."""
    import openvino as ov

    from .check import check_outputs

    shape = probe_shape or Model.load(source).default_input_shape()
    samples = calibration.head(4) if calibration is not None else []
    if not samples:
        samples = random_calibration(source, shape, n=2).tensors()
    runtime = make_runtime("openvino")
    check = check_outputs(produced, source, [runtime], samples)[0]
    fidelity = {"inputs": check.inputs, "cosine_mean": check.cosine_mean, "cosine_min": check.cosine_min,
                "max_abs_error": None, "runtime": check.runtime,
                "inputs_from": calibration.source if calibration is not None else "random"}
    probes: tuple[ProbeResult, ...] = ()
    extra = {k: v for k, v in details.items() if k not in ("settings", "quantized_nodes")}
    if probe:
        probes = tuple(probe_runtimes(produced, [runtime], shape))
        extra["agreement"] = {check.runtime: round(check.cosine_mean, 6) if check.cosine_mean is not None
                              else f"failed: {check.error}"}
        probes = judge_probes(probes, extra["agreement"])
    ops: dict[str, int] = {}
    for op in ov.Core().read_model(str(produced)).get_ops():
        if op.get_type_name() in ("FakeQuantize", "Convert"):
            ops[op.get_type_name()] = ops.get(op.get_type_name(), 0) + 1
    weights = produced.with_suffix(".bin")
    size = produced.stat().st_size + (weights.stat().st_size if weights.is_file() else 0)
    settings = details.get("settings", config.to_dict())
    result = QuantResult(
        output=output, sidecar=sidecar_path(output), source=source, method=config.method, settings=settings,
        source_bytes=source.stat().st_size, output_bytes=size, quantized_nodes=ops.get("FakeQuantize", 0),
        op_counts=ops, excluded=tuple(settings.get("ignored", ())), notes=tuple(n for n in notes if n),
        calibration=calibration.to_dict() if calibration is not None else None, fidelity=fidelity,
        probe=probes, accuracy=accuracy, extra={**extra, "output_check": check.to_dict()},
        seconds=time.perf_counter() - started if started else 0.0)
    sidecar = json.dumps(json_document("quant", result.to_dict()), indent=2, ensure_ascii=False, default=str)
    companions = (output.with_suffix(".bin"),) if weights.is_file() else ()
    with atomic_files(output, result.sidecar, *companions, size_hint=size) as (tmp_xml, tmp_sidecar, *tmp_bin):
        shutil.copyfile(produced, tmp_xml)  # .xml, .bin and sidecar committed together, the .xml last
        tmp_sidecar.write_bytes((sidecar + "\n").encode("utf-8", "backslashreplace"))
        if tmp_bin:
            shutil.copyfile(weights, tmp_bin[0])
    return result
