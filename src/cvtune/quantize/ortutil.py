"""Small wrappers around ONNX Runtime's quantization tooling: quiet logging, the pre-processing step with its
known fallbacks, and the check that a produced model really loads and runs in ORT."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import ModelError


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def captured_logs() -> Iterator[list[logging.LogRecord]]:
    """Collect ORT's Python warnings/errors (it logs through the root logger) instead of printing them, and keep its
    calibrators' progress prints off stdout (which `--json` owns)."""
    import io

    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    root = logging.getLogger()
    handler = _Collect()
    saved = root.handlers[:]
    root.handlers = [handler]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield handler.records
    finally:
        root.handlers = saved


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def pre_process(source: Path, target: Path) -> list[str]:
    """ORT's quant_pre_process (ORT graph optimization + ONNX shape inference) with skip_symbolic_shape=True, which
    PP-OCR needs (symbolic shape inference fails on it). Returns notes; if it fails, `target` is a copy of `source`
    and the note says quantization goes on without it."""
    import shutil

    from onnxruntime.quantization import quant_pre_process

    notes = []
    try:
        with captured_logs() as records:
            quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
        errors = [r.getMessage().splitlines()[0] for r in records if r.levelno >= logging.ERROR]
        if errors:
            notes.append(f"pre-processing: ORT graph optimization skipped ({errors[0][:160]})")
        else:
            notes.append("pre-processing: quant_pre_process(skip_symbolic_shape=True)")
    except Exception as exc:  # noqa: BLE001 - ORT's tooling raises many types
        shutil.copyfile(source, target)
        notes.append(f"pre-processing failed, quantizing without it: {first_line(exc)}")
    return notes


def check_loads(path: Path, sample: np.ndarray | None = None) -> str:
    """'' when ONNX Runtime (CPU) loads the model and runs `sample` through it, else ORT's first error line."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        from ..files import path_or_bytes

        session = ort.InferenceSession(path_or_bytes(path), sess_options=options, providers=["CPUExecutionProvider"])
        if sample is not None:
            session.run(None, {session.get_inputs()[0].name: sample})
    except Exception as exc:  # noqa: BLE001
        return first_line(exc)
    return ""


def require_loads(path: Path, what: str, sample: np.ndarray | None = None) -> None:
    error = check_loads(path, sample)
    if error:
        raise ModelError(f"the {what} model ONNX Runtime produced does not load in ONNX Runtime: {error}")
