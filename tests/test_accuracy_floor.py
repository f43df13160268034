"""Regression floor: the zoo's fp32 PP-OCRv4 models read the generated text set well. `make bench` measures the
full 100-image numbers (targets hmean >= 0.85, line accuracy >= 0.80); this guards a lower floor on 8 images."""

from __future__ import annotations

from pathlib import Path

from cvtune.evaluate import evaluate
from cvtune.runtimes import make_runtime


def test_detector_finds_the_generated_text_lines(det_model: Path, synth_text_dir: Path) -> None:
    metrics = evaluate(det_model, make_runtime("ort"), "textdet", synth_text_dir / "textdet", progress=False)
    assert metrics.name == "hmean" and metrics.n_images == 8
    assert metrics.value >= 0.80, metrics.details


def test_detector_and_recognizer_read_the_generated_lines(rec_model: Path, synth_text_dir: Path) -> None:
    metrics = evaluate(rec_model, make_runtime("ort"), "ocr", synth_text_dir / "textdet", progress=False)
    assert metrics.name == "line_acc"
    assert metrics.value >= 0.70, metrics.details
    assert metrics.details["cer"] < 0.1
