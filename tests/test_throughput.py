"""Throughput mode: instances x threads x batch layouts under sustained load, the sweep, and the bench flags.
Tiny graphs and sub-second windows: these check behaviour and accounting, never speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import conv_relu

from cvtune.cli import run_cli
from cvtune.errors import CvtuneError, TrialFailed, UsageError
from cvtune.runtimes import make_runtime
from cvtune.throughput import Layout, ThroughputSettings, _summarize, measure_throughput, sweep_layouts

QUICK = ThroughputSettings(duration_s=0.3, warmup=1, timeout_s=120)


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tp") / "conv_dynamic.onnx"
    conv_relu(path, dynamic=True)
    return path


@pytest.fixture(scope="module")
def static_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tp") / "conv_static.onnx"
    conv_relu(path, size=16)
    return path


def test_sweep_layouts_fill_the_cores() -> None:
    labels = [layout.label() for layout in sweep_layouts(2)]
    assert labels == ["1x1", "1x2", "2x1", "1x2 b4", "2x1 b4"]
    four = sweep_layouts(4, batched=False)
    assert [(lo.instances, lo.threads) for lo in four] == [(1, 1), (1, 4), (4, 1), (2, 2)]
    assert all(lo.batch == 1 for lo in four)
    assert [lo.label() for lo in sweep_layouts(1)] == ["1x1", "1x1 b4"]


@pytest.mark.parametrize("field", ["instances", "threads", "batch"])
def test_layout_refuses_zero(field: str) -> None:
    with pytest.raises(UsageError, match=field):
        Layout(**{field: 0})


def test_work_is_counted_inside_the_window_only() -> None:
    # Window [100, 101]. Instance A: a full run inside, then one half inside. Instance B: half before the start.
    raws = [{"spans": [(100.0, 100.5), (100.5, 101.5)]}, {"spans": [(99.5, 100.5)]}]
    result = _summarize(raws, 100.0, 1.0, "x", make_runtime("ort"), "m.onnx", (2, 3, 8, 8), Layout(2, 1, 2))
    assert result.per_instance_ips == (3.0, 1.0)  # batch 2: 2 + 2 * 0.5, and 2 * 0.5
    assert result.images_per_s == pytest.approx(4.0)
    assert result.runs == 3 and result.p50_ms == pytest.approx(1000.0)


def test_two_instances_run_at_once_on_batches(dynamic_model: Path) -> None:
    result = measure_throughput(dynamic_model, make_runtime("opencv", engine="new"), (1, 3, 16, 16),
                                layout=Layout(2, 1, 2), settings=QUICK)
    assert result.input_shape == (2, 3, 16, 16)
    assert result.runtime["threads"] == 1
    assert len(result.per_instance_ips) == 2 and min(result.per_instance_ips) > 0
    assert result.images_per_s == pytest.approx(sum(result.per_instance_ips), rel=1e-3)
    assert result.runs >= 2 and result.p99_ms >= result.p50_ms > 0
    assert result.to_dict()["layout"]["label"] == "2x1 b2"


def test_batch_the_model_cannot_take_is_refused(static_model: Path) -> None:
    with pytest.raises(UsageError, match="fixed at 1"):
        measure_throughput(static_model, make_runtime("ort"), layout=Layout(1, 1, 4), settings=QUICK)


def test_an_instance_that_cannot_load_fails_the_measurement(cls_model: Path, tmp_path: Path) -> None:
    from cvtune.runtimes.opencv import available_engines

    if "classic" in available_engines() and "new" in available_engines():
        # OpenCV 5.0's classic engine rejects the classifier's dynamic Shape ops: each instance fails while loading
        with pytest.raises(TrialFailed, match="instance failed to start.*cvtune prepare"):
            measure_throughput(cls_model, make_runtime("opencv", engine="classic"), layout=Layout(2, 1),
                               settings=QUICK)
    # a model no runtime can load (its bytes cut short): each instance fails while loading, whatever the build
    broken = tmp_path / "cut.onnx"
    broken.write_bytes(cls_model.read_bytes()[: cls_model.stat().st_size // 2])
    with pytest.raises((TrialFailed, CvtuneError)):
        measure_throughput(broken, make_runtime("ort"), layout=Layout(2, 1), settings=QUICK)


def test_bench_instances_flag(dynamic_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", str(dynamic_model), "--runtime", "ort", "--input-shape", "1x3x16x16", "--duration", "0.3"]
    assert run_cli([*args, "--instances", "2", "--threads", "1", "--batch", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layout"] == {"instances": 2, "threads": 1, "batch": 2, "label": "2x1 b2"}
    assert data["images_per_s"] > 0
    assert run_cli([*args, "--instances", "0"]) == 2
    assert "instances" in capsys.readouterr().err


def test_bench_sweep_prints_every_layout_with_ratios(dynamic_model: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", str(dynamic_model), "--runtime", "ort", "--input-shape", "1x3x16x16", "--duration", "0.2",
            "--sweep"]
    assert run_cli(args) == 0
    out = capsys.readouterr().out
    assert "vs 1x1" in out and "1.00x" in out
    layouts = sweep_layouts()
    assert sum(line.count("ort:cpu") for line in out.splitlines()) == len(layouts)
