"""The dataset contract every loader returns, and robust image reading.

A Dataset is a list of Samples (an image path plus its task-specific label) with a record of what was skipped.
Tasks read labels; the search splits samples with `split()` so calibration never sees evaluation images.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..files import display_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class TextBox:
    """One ICDAR ground-truth region: 4+ (x, y) points, its transcription, and whether it is don't-care (###)."""

    points: tuple[tuple[float, float], ...]
    text: str = ""
    ignore: bool = False


@dataclass(frozen=True)
class Sample:
    """One image and its label. `target` is task-specific:
    None (plain folder), int class index (classification), tuple[TextBox, ...] (icdar),
    str (ocr line), tuple[dict, ...] of COCO annotations (coco), with `image_id` for COCO."""

    path: Path
    target: Any = None
    image_id: int | None = None


@dataclass
class Dataset:
    """Samples of one layout (`kind`: images | classification | coco | icdar | ocr_lines)."""

    kind: str
    root: Path
    samples: list[Sample]
    classes: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, why) for unreadable inputs
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the COCO json for pycocotools

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, indices: list[int]) -> Dataset:
        return Dataset(self.kind, self.root, [self.samples[i] for i in indices], self.classes, self.skipped,
                       self.extra)

    def limit(self, n: int | None) -> Dataset:
        return self if n is None or n >= len(self) else self.subset(list(range(n)))

    def split(self, calib_fraction: float = 0.3, *, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Deterministic disjoint (calibration, evaluation) split."""
        if not 0 < calib_fraction < 1:
            raise DatasetError(f"calibration fraction must be in (0, 1), got {calib_fraction}")
        order = np.random.default_rng(seed).permutation(len(self.samples)).tolist()
        n_calib = max(1, int(round(len(order) * calib_fraction)))
        return self.subset(sorted(order[:n_calib])), self.subset(sorted(order[n_calib:]))


# Largest image cvtune decodes (pixels): a header claiming 100000x100000 would need 30 GB before decoding fails.
MAX_IMAGE_PIXELS = 2**28


def read_image(path: str | Path) -> np.ndarray | None:
    """Read any image as 8-bit BGR (H, W, 3), or None when unreadable. Works with any path (Python reads the
    bytes, cv2.imdecode decodes them); grayscale, RGBA and 16-bit images are converted. Never raises."""
    return decode_image_file(path)[0]


def decode_image_file(path: str | Path) -> tuple[np.ndarray | None, str]:
    """(image, "") or (None, why it cannot be used): missing, empty, too large, or not a decodable image."""
    try:
        raw = np.fromfile(os.fsdecode(path), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        return None, f"cannot read the file: {getattr(exc, 'strerror', None) or exc}"
    if raw.size == 0:
        return None, "empty file"
    return decode_image(raw)


def _header_pixels(raw: np.ndarray) -> int | None:
    """Width x height from the image header (Pillow reads only the header), or None when Pillow cannot tell."""
    import io

    try:
        from PIL import Image

        with Image.open(io.BytesIO(raw.tobytes())) as header:
            width, height = header.size
    except Image.DecompressionBombError:  # beyond Pillow's own limit, far beyond ours
        return MAX_IMAGE_PIXELS + 1
    except Exception:  # noqa: BLE001 - any format Pillow does not know: let OpenCV try
        return None
    return int(width) * int(height)


def decode_image(raw: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Decode encoded image bytes into 8-bit BGR; (None, reason) instead of raising or allocating gigabytes."""
    import cv2

    pixels = _header_pixels(raw)
    if pixels is not None and pixels > MAX_IMAGE_PIXELS:
        return None, f"image too large (its header claims more than {MAX_IMAGE_PIXELS:,} pixels)"
    try:
        image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    except (cv2.error, MemoryError) as exc:
        return None, f"cannot decode: {' '.join(str(exc).split())[-160:]}"
    if image is None or image.size == 0:
        return None, "unreadable or corrupt image"
    try:
        if image.dtype == np.uint16:
            image = (image / 257.0).round().astype(np.uint8)
        elif image.dtype != np.uint8:
            image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        elif image.shape[2] == 1:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    except (cv2.error, MemoryError) as exc:
        return None, f"cannot convert to BGR: {' '.join(str(exc).split())[-160:]}"
    return image, ""


def read_image_or_warn(path: str | Path, skipped: list[tuple[Path, str]] | None = None) -> np.ndarray | None:
    """read_image, but a failure is warned about and recorded in `skipped` instead of raising."""
    image, why = decode_image_file(path)
    if image is None:
        warnings.warn(f"skipping unreadable image {display_path(path)} ({why})", stacklevel=2)
        if skipped is not None:
            skipped.append((Path(path), why))
    return image
