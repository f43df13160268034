"""A folder of real photos for tests and benchmarks: each photo, mirrored, and its four corner crops.

Eight scikit-image photos (tests/real_models.py's `real_photos`) become 48 images: enough faces, people and objects
for a detector's decisions to count, while every image stays a real photo (no synthetic pixels).

    folder = photo_variants(real_photos, tmp_path / "photos")      # 48 PNGs, written once
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["CROP_FRACTION", "photo_variants", "variants"]

CROP_FRACTION = 0.6  # each corner crop keeps 60% of the height and of the width


def variants(image: np.ndarray) -> dict[str, np.ndarray]:
    """{suffix: image}: the photo as it is (""), mirrored left-right ("_mirror") and its four corner crops
    ("_crop0".."_crop3": top-left, top-right, bottom-left, bottom-right)."""
    h, w = image.shape[:2]
    ch, cw = int(h * CROP_FRACTION), int(w * CROP_FRACTION)
    out = {"": image, "_mirror": np.ascontiguousarray(image[:, ::-1])}
    for i, (y, x) in enumerate(((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw))):
        out[f"_crop{i}"] = np.ascontiguousarray(image[y:y + ch, x:x + cw])
    return out


def photo_variants(photos: Iterable[str | os.PathLike[str]], folder: str | os.PathLike[str]) -> Path:
    """Write every variant of every readable photo into `folder` as STEM{suffix}.png (created when missing; files
    already there with those names are rewritten) and return the folder. Unreadable photos are skipped."""
    import cv2

    from ..data.base import read_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        image = read_image(Path(photo))
        if image is None:
            continue
        for suffix, pixels in variants(image).items():
            cv2.imwrite(str(folder / f"{Path(photo).stem}{suffix}.png"), pixels)
    return folder
