"""evaluate() and `cvtune eval`: real models on small rendered datasets, JSON output, skipped images, and one
clear error line (exit code 2) for every kind of bad input."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from cvtune.cli import run_cli
from cvtune.data.loaders import load_dataset
from cvtune.errors import DatasetError, ModelError, UsageError
from cvtune.evaluate import build_task, evaluate
from cvtune.runtimes import make_runtime


def test_evaluate_recognizer_on_line_crops(rec_model, ocr_lines_dir):
    metrics = evaluate(rec_model, make_runtime("ort", threads=1), "ocr", load_dataset(ocr_lines_dir), progress=False)
    assert (metrics.task, metrics.name) == ("ocr", "line_acc")
    assert metrics.value == 1.0 and metrics.details["cer"] == 0.0
    assert (metrics.n_images, metrics.n_skipped) == (4, 0)
    assert metrics.ci_low <= metrics.value <= metrics.ci_high


def test_evaluate_detector_with_a_fixed_input_size(det_model, icdar_dir):
    task = build_task("textdet", det_model, input_size="320x800")
    metrics = evaluate(det_model, make_runtime("ort", threads=1), task, icdar_dir, limit=1, progress=False)
    assert metrics.value == 1.0 and metrics.n_images == 1
    assert metrics.details["gt_boxes"] == 2


def test_unreadable_images_are_skipped_and_counted(rec_model, ocr_lines_dir, tmp_path):
    data = tmp_path / "lines"
    shutil.copytree(ocr_lines_dir, data)
    (data / "crops" / "broken.png").write_bytes(b"not a png")
    with (data / "labels.txt").open("a", encoding="utf-8") as labels:
        labels.write("crops/broken.png\tnothing\n")
    with pytest.warns(UserWarning, match="broken.png"):
        metrics = evaluate(rec_model, "ort", "ocr", load_dataset(data), progress=False)
    assert (metrics.n_images, metrics.n_skipped) == (4, 1)
    assert metrics.value == 1.0


def test_build_task_takes_zoo_defaults(cls_model, rec_model):
    cls_task = build_task("classify", cls_model)
    assert (cls_task.resize, cls_task.labels, cls_task.size) == ("pad", ["0", "180"], (48, 192))
    assert len(build_task("ocr", rec_model).charset) == 6625
    with pytest.raises(UsageError, match="unknown task 'pose'"):
        build_task("pose", rec_model)


def test_evaluate_rejects_mismatched_model_task_and_data(cls_model, det_model, icdar_dir, ocr_lines_dir):
    with pytest.raises(ModelError, match="textdet"):
        evaluate(cls_model, "ort", "textdet", icdar_dir, limit=1, progress=False)
    with pytest.raises(DatasetError, match="needs a dataset of kind icdar.*'ocr_lines'"):
        evaluate(det_model, "ort", "textdet", ocr_lines_dir, progress=False)
    with pytest.raises(ModelError, match="not found"):
        evaluate(icdar_dir / "missing.onnx", "ort", "textdet", icdar_dir, progress=False)


def test_cli_eval_json_on_line_crops(rec_model, ocr_lines_dir, capsys):
    code = run_cli(["eval", str(rec_model), "--data", str(ocr_lines_dir), "--runtime", "ort", "--threads", "1",
                    "--json"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)
    assert result["task"] == "ocr" and result["metric"] == "line_acc"  # task taken from the zoo entry
    assert result["value"] == 1.0 and result["n_images"] == 4 and len(result["ci95"]) == 2
    assert result["runtime"]["runtime"] == "ort"


def test_cli_eval_table_with_opencv_new_engine(det_copy, icdar_dir, capsys):
    before = hashlib.sha256(det_copy.read_bytes()).hexdigest()
    code = run_cli(["eval", str(det_copy), "--task", "textdet", "--data", str(icdar_dir), "--engine", "new",
                    "--input-size", "320x800", "--limit", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "hmean" in out and "95% CI" in out and "1 used, 0 skipped" in out
    assert hashlib.sha256(det_copy.read_bytes()).hexdigest() == before  # the user's model is never modified


@pytest.mark.parametrize("args, message", [
    (["--task", "pose"], "unknown task 'pose'"),
    (["--task", "textdet", "--runtime", "ort", "--engine", "new"], "runtime 'ort' has no setting engine"),
    (["--task", "fidelity", "--runtime", "ort"], "needs a reference model"),
    (["--task", "textdet", "--input-size", "640"], "HEIGHTxWIDTH"),
])
def test_cli_eval_bad_input_is_one_error_line(det_model, icdar_dir, capsys, args, message):
    code = run_cli(["eval", str(det_model), "--data", str(icdar_dir), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("Error:") and message in err and "Traceback" not in err


def test_cli_eval_needs_a_task_for_non_zoo_models(tmp_path, icdar_dir, capsys):
    from tiny_models import conv_relu

    mine = tmp_path / "mine.onnx"
    conv_relu(mine)
    assert run_cli(["eval", str(mine), "--data", str(icdar_dir)]) == 2
    assert "--task" in capsys.readouterr().err


def test_renamed_zoo_copies_are_still_recognized(det_copy, tmp_path, icdar_dir, capsys):
    renamed = tmp_path / "mine.onnx"
    det_copy.rename(renamed)
    capsys.readouterr()
    assert run_cli(["eval", str(renamed), "--data", str(icdar_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # No --task: the task, metric and preprocessing come from the zoo entry, found by content, not by file name.
    assert (result["task"], result["metric"], result["model"]) == ("textdet", "hmean", str(renamed))
    assert result["value"] == 1.0 and result["n_images"] == 2 and result["details"]["gt_boxes"] == 4


def test_cli_eval_help(cli_help):
    assert "the headline metric with its 95% bootstrap CI" in cli_help("eval")
