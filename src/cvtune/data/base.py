"""The dataset contract every loader returns, and robust image reading.

A Dataset is a list of Samples (an image path plus its task-specific label) with a record of what was skipped.
Tasks read labels; the search splits samples with `split()` so calibration never sees evaluation images.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError

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


def read_image(path: str | Path) -> np.ndarray | None:
    """Read any image as 8-bit BGR (H, W, 3), or None when unreadable. Works with non-ASCII paths
    (np.fromfile + cv2.imdecode); grayscale, RGBA and 16-bit images are converted."""
    import cv2

    try:
        raw = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if raw.size == 0:
        return None
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
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
    return image


def read_image_or_warn(path: str | Path, skipped: list[tuple[Path, str]] | None = None) -> np.ndarray | None:
    """read_image, but a failure is warned about and recorded in `skipped` instead of raising."""
    image = read_image(path)
    if image is None:
        warnings.warn(f"skipping unreadable image {path}", stacklevel=2)
        if skipped is not None:
            skipped.append((Path(path), "unreadable or corrupt image"))
    return image
