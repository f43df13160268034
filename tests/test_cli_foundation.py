"""The CLI in-process: zoo, inspect, bench, prepare; and every bad input ends in one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import conv_relu

from cvtune.cli import run_cli


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert run_cli(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_zoo_lists_the_three_real_models(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "zoo", "list", "--json")
    assert {r["name"] for r in rows} == {"ppocr-det", "ppocr-cls", "ppocr-rec"}
    assert all(Path(r["file"]).is_file() for r in rows)


@pytest.mark.parametrize("name, shape", [("ppocr-det", "1x3x64x64"), ("ppocr-cls", "1x3x48x192"),
                                         ("ppocr-rec", "1x3x48x160")])
def test_inspect_json_on_each_zoo_model(capsys: pytest.CaptureFixture[str], name: str, shape: str) -> None:
    assert run_cli(["zoo", "path", name]) == 0
    path = capsys.readouterr().out.strip()
    info = run_json(capsys, "inspect", path, "--input-shape", shape, "--json")
    assert info["params"] > 100_000 and info["flops"] > 1_000_000
    assert info["inputs"][0]["name"] == "x" and info["outputs"]
    assert {r["label"] for r in info["runtimes"]} >= {"ort:cpu"}
    assert next(r for r in info["runtimes"] if r["label"] == "ort:cpu")["ok"]


def test_inspect_prints_a_readable_summary(capsys: pytest.CaptureFixture[str], det_model: Path) -> None:
    assert run_cli(["inspect", str(det_model), "--input-shape", "1x3x64x64", "--no-probe"]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "FLOPs at 1x3x64x64" in out and "Conv" in out


def test_bench_json_has_every_field_and_compare_gives_ratios(capsys: pytest.CaptureFixture[str],
                                                            det_model: Path) -> None:
    rows = run_json(capsys, "bench", str(det_model), "--input-shape", "1x3x64x64", "--threads", "1",
                    "--min-runs", "3", "--min-time", "0", "--compare", "ort:threads=1", "--json")
    assert [r["label"] for r in rows] == ["opencv:auto/cpu t1", "ort:cpu t1"]
    for field in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "throughput_ips", "peak_rss_mb", "load_ms",
                  "gflops_per_s"):
        assert rows[0][field] > 0
    assert run_cli(["bench", str(det_model), "--input-shape", "1x3x64x64", "--min-runs", "2", "--min-time", "0",
                    "-c", "ort"]) == 0
    assert "speed-up" in capsys.readouterr().out


def test_prepare_writes_a_static_verified_model(capsys: pytest.CaptureFixture[str], cls_model: Path,
                                                tmp_path: Path) -> None:
    result = run_json(capsys, "prepare", str(cls_model), "-o", str(tmp_path / "p.onnx"), "--json")
    assert result["equivalence"]["equivalent"] and result["input_shape"] == [1, 3, 48, 192]


def _bad_inputs(tmp_path: Path, det_model: Path) -> dict[str, list[str]]:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_text("not a model")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(det_model.read_bytes()[:100_000])
    fixed = tmp_path / "fixed.onnx"
    conv_relu(fixed)
    fake_tflite = tmp_path / "model.tflite"
    fake_tflite.write_bytes(b"TFL3 but not really")
    return {
        "corrupt tflite": ["bench", str(fake_tflite), "--input-shape", "1x3x32x32"],
        "tflite without shape": ["bench", str(fake_tflite)],
        "missing file": ["inspect", str(tmp_path / "missing.onnx")],
        "not a model": ["inspect", str(garbage)],
        "truncated": ["bench", str(truncated)],
        "bad shape": ["bench", str(det_model), "--input-shape", "1x3xabc"],
        "shape that does not fit": ["bench", str(fixed), "--input-shape", "1x3x9x9"],
        "absent target": ["bench", str(det_model), "--target", "cuda"],
        "absent provider": ["bench", str(det_model), "-c", "ort:provider=cuda"],
        "unknown engine": ["bench", str(det_model), "--engine", "warp"],
        "bad compare spec": ["bench", str(det_model), "-c", "ort:threads"],
        "engine on ort": ["bench", str(det_model), "--runtime", "ort", "--engine", "new"],
        "unknown zoo model": ["zoo", "path", "yolo"],
        "prepare over input": ["prepare", str(fixed), "-o", str(fixed)],
    }


def test_bad_input_gives_one_error_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                   det_copy: Path) -> None:
    before = det_copy.read_bytes()
    for case, argv in _bad_inputs(tmp_path, det_copy).items():
        assert run_cli(argv) == 2, case
        err = capsys.readouterr().err
        assert "Traceback" not in err, case
        lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
        assert len(lines) == 1, (case, err)
    assert det_copy.read_bytes() == before
