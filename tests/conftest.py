"""Shared fixtures: real zoo models (read-only) and small generated inputs. Append new shared fixtures here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cvtune import zoo


@pytest.fixture(scope="session")
def det_model() -> Path:
    return zoo.path("ppocr-det")


@pytest.fixture(scope="session")
def cls_model() -> Path:
    return zoo.path("ppocr-cls")


@pytest.fixture(scope="session")
def rec_model() -> Path:
    return zoo.path("ppocr-rec")


@pytest.fixture()
def det_copy(tmp_path: Path, det_model: Path) -> Path:
    """A private copy of the detector, for tests that check inputs are never modified."""
    dst = tmp_path / det_model.name
    shutil.copy(det_model, dst)
    return dst
