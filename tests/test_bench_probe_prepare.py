"""Benchmarks, probes and preparation run in child processes on the real models, at small input sizes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tiny_models import conv_relu

from cvtune.bench import BenchSettings, measure
from cvtune.errors import TrialFailed, UsageError
from cvtune.isolate import run_isolated
from cvtune.model import Model
from cvtune.prepare import prepare
from cvtune.probe import probe_runtimes
from cvtune.runtimes import make_runtime

QUICK = BenchSettings(warmup=1, min_runs=3, min_time_s=0.0)


def test_bench_reports_percentiles_throughput_memory_and_flops(det_model: Path) -> None:
    result = measure(det_model, make_runtime("ort", threads=1), (1, 3, 64, 64), settings=QUICK)
    assert result.runs >= 3
    assert 0 < result.min_ms <= result.p50_ms <= result.p90_ms <= result.p99_ms
    assert result.throughput_ips == pytest.approx(1000 / result.mean_ms)
    assert result.peak_rss_mb > 10 and result.load_ms > 0
    assert result.flops == Model.load(det_model).total_flops((1, 3, 64, 64))
    assert result.gflops_per_s and result.gflops_per_s > 0


def test_batch_on_a_fixed_batch_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fixed.onnx"
    conv_relu(path)
    with pytest.raises(UsageError, match="batch dim is fixed at 1"):
        measure(path, make_runtime("ort"), batch=4, settings=QUICK)


def test_dynamic_batch_runs_with_the_batch_size(tmp_path: Path) -> None:
    path = tmp_path / "dyn.onnx"
    conv_relu(path, dynamic=True)
    result = measure(path, make_runtime("opencv", engine="auto"), (1, 3, 16, 16), batch=4, settings=QUICK)
    assert result.input_shape == (4, 3, 16, 16)


def test_a_crashing_child_becomes_a_trial_failure() -> None:
    with pytest.raises(TrialFailed, match="SIGABRT"):
        run_isolated("os:abort", {}, timeout=30)
    with pytest.raises(TrialFailed, match="timed out"):
        run_isolated("os:system", {"command": "sleep 20"}, timeout=1)


def test_probe_says_which_runtimes_load_the_classifier(cls_model: Path) -> None:
    results = {r.label: r for r in probe_runtimes(cls_model, input_shape=(1, 3, 48, 192))}
    assert results["ort:cpu"].ok and results["ort:cpu"].output_shapes == [[1, 2]]
    if {"opencv:new/cpu", "opencv:classic/cpu"} <= set(results):  # OpenCV 5.0's classic engine rejects the dynamic
        # Shape op (4.12's loads it; 5.1 has no classic engine)
        assert not results["opencv:classic/cpu"].ok
        assert "prepare" in results["opencv:classic/cpu"].error


def test_prepare_makes_the_classifier_loadable_by_the_classic_engine(cls_model: Path, tmp_path: Path) -> None:
    before = hashlib.sha256(cls_model.read_bytes()).hexdigest()
    result = prepare(cls_model, tmp_path / "cls_static.onnx", (1, 3, 48, 192))
    assert result.equivalence.equivalent and result.equivalence.cosine > 0.9999
    assert result.nodes_after < result.nodes_before
    assert Model.load(result.output).inputs[0].shape == (1, 3, 48, 192)
    probes = {r.label: r.ok for r in probe_runtimes(result.output)}
    assert all(probes.values()), probes
    assert hashlib.sha256(cls_model.read_bytes()).hexdigest() == before


def test_prepare_refuses_to_overwrite_its_input(det_copy: Path) -> None:
    with pytest.raises(UsageError, match="same file as the input"):
        prepare(det_copy, det_copy)
