"""CTC charsets and greedy decoding for PP-OCR recognizers.

PP-OCR rec models store their character list in the ONNX metadata key 'character' (one per line). The class
index layout is [blank] + that list + [' '] (PaddleOCR's use_space_char), so the zoo model's 6623 characters give
6625 classes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelError

BLANK = "<blank>"


def charset_from_characters(characters: list[str], *, use_space_char: bool = True) -> list[str]:
    """Index -> character table: blank at 0, then the characters, then ' ' when use_space_char."""
    return [BLANK, *characters, *([" "] if use_space_char else [])]


def read_charset(model_path: str | Path, *, use_space_char: bool = True) -> list[str] | None:
    """The decoding table from a model's 'character' metadata, or None when the model has none.
    Reads only the graph's metadata (external weight files are not loaded); cached per file version."""
    path = Path(model_path)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        raise ModelError(f"model file not found: {path}") from None
    characters = _metadata_characters(str(path.resolve()), stamp)
    if characters is None:
        return None
    return charset_from_characters(list(characters), use_space_char=use_space_char)


@lru_cache(maxsize=8)
def _metadata_characters(path: str, stamp: int) -> tuple[str, ...] | None:
    import onnx

    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types on a corrupt file
        raise ModelError(f"cannot read {path} as ONNX: {str(exc).splitlines()[0][:200]}") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    return tuple(meta["character"].splitlines()) if "character" in meta else None


def ctc_greedy_decode(probs: np.ndarray, charset: list[str]) -> list[tuple[str, float]]:
    """Best-path CTC decoding of (N, T, C) (or (T, C)) class scores: argmax per step, merge repeats, drop blanks
    (index 0). Returns (text, mean probability of the kept steps) per row; empty text scores 0.0."""
    probs = np.asarray(probs)
    if probs.ndim == 2:
        probs = probs[None]
    if probs.ndim != 3 or probs.shape[2] != len(charset):
        raise ModelError(f"CTC output of shape {tuple(probs.shape)} does not fit a charset of {len(charset)} "
                         f"classes (blank + characters + space); is this the recognizer the charset came from?")
    best = probs.argmax(axis=2)
    best_p = probs.max(axis=2)
    results = []
    for idx, p in zip(best, best_p, strict=True):
        keep = np.ones(len(idx), dtype=bool)
        keep[1:] = idx[1:] != idx[:-1]
        keep &= idx != 0
        text = "".join(charset[i] for i in idx[keep])
        results.append((text, float(p[keep].mean()) if keep.any() else 0.0))
    return results
