"""`cvtune run`: batch inference over folders and videos, resumable JSONL, bad input, deploy.json.

The main checks use the zoo's real orientation classifier on 200 generated 48x192 text crops: the pipeline's rows
must equal per-image predictions of a plain session, whatever the number of workers and the batch size."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_models import conv_relu

from cvtune.cli import run_cli
from cvtune.data.base import read_image
from cvtune.deploy import load_deployed
from cvtune.errors import ModelError, RuntimeUnavailable, UsageError
from cvtune.pipeline import PredictorSpec, build_task, run_pipeline
from cvtune.pipeline.jsonl import ResultWriter, read_done, scan_results
from cvtune.runtimes import make_runtime


def _crop(rng: np.random.Generator, i: int, size: tuple[int, int] = (48, 192)) -> np.ndarray:
    h, w = size
    img = np.full((h, w, 3), int(rng.integers(150, 255)), np.uint8)
    img = cv2.add(img, (rng.random((h, w, 3)) * 40).astype(np.uint8))
    cv2.putText(img, f"line {i}", (4, int(h * 0.7)), cv2.FONT_HERSHEY_SIMPLEX, h / 48, (20, 20, 20), 2)
    return cv2.rotate(img, cv2.ROTATE_180) if i % 3 == 0 else img


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 small text crops, some upside down, in two sub-folders (keys are relative paths)."""
    root = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(0)
    for i in range(200):
        folder = root / ("a" if i < 100 else "b")
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / f"crop{i:03d}.png"), _crop(rng, i))
    return root


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _per_image_reference(model: Path, folder: Path, task: str) -> dict[str, object]:
    """What one plain session gives, image by image: the ground truth the pipeline must reproduce."""
    session = make_runtime("opencv", threads=1).open(model)
    predictor_task = build_task(task, model)
    return {p.relative_to(folder).as_posix(): predictor_task.predict(session, read_image(p))
            for p in sorted(folder.rglob("*.png"))}


def _assert_same_predictions(rows: list[dict], reference: dict[str, object]) -> None:
    assert [r["file"] for r in rows] == sorted(reference), "rows are not one per input, in input order"
    for row in rows:
        want, got = reference[row["file"]], row["prediction"]
        if "top" in want:  # classify
            assert got["top"] == want["top"], row["file"]
            np.testing.assert_allclose(got["probs"], want["probs"], atol=1e-5, err_msg=row["file"])
        else:  # raw
            for g, w in zip(got["outputs"], want["outputs"], strict=True):
                assert g["shape"] == w["shape"]
                np.testing.assert_allclose(g["values"], w["values"], atol=1e-5, err_msg=row["file"])


def test_run_200_images_equals_per_image_predictions(cls_model: Path, crops: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.jsonl"
    args = ["run", str(cls_model), "--input", str(crops), "--out", str(out), "--task", "classify", "--workers", "2",
            "--batch", "4", "--threads", "1", "--json"]
    assert run_cli(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 200 and summary["errors"] == 0 and summary["workers"] == 2
    rows = _rows(out)
    _assert_same_predictions(rows, _per_image_reference(cls_model, crops, "classify"))
    assert {r["prediction"]["top"][0] for r in rows} == {0, 1}, "the classifier should see both orientations"
    # Run again: everything is done, nothing is added.
    assert run_cli(args) == 0
    assert json.loads(capsys.readouterr().out)["already_done"] == 200
    assert _rows(out) == rows


def test_concurrent_workers_give_the_sequential_rows(cls_model: Path, crops: Path, tmp_path: Path) -> None:
    runtime = make_runtime("opencv", threads=1).to_dict()
    folder = crops / "a"
    sequential = run_pipeline(PredictorSpec(str(cls_model), runtime, task="raw"), folder, tmp_path / "seq.jsonl",
                              workers=1, progress=False)
    concurrent = run_pipeline(PredictorSpec(str(cls_model), runtime, task="raw", batch=3), folder,
                              tmp_path / "par.jsonl", workers=3, progress=False)
    assert sequential.written == concurrent.written == 100
    seq_rows, par_rows = _rows(tmp_path / "seq.jsonl"), _rows(tmp_path / "par.jsonl")
    _assert_same_predictions(par_rows, {r["file"]: r["prediction"] for r in seq_rows})


def test_killed_run_resumes_without_lost_or_duplicated_rows(det_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pages"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(120):
        cv2.imwrite(str(folder / f"page{i:03d}.png"), _crop(rng, i, (128, 128)))
    out = tmp_path / "results.jsonl"
    cmd = [sys.executable, "-c", "from cvtune.cli import main; main()", "run", str(det_model), "--input",
           str(folder), "--out", str(out), "--task", "raw", "--workers", "1", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 10:
                break
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed_at = out.read_bytes().count(b"\n")
    assert 10 <= killed_at < 120, f"the run was not stopped midway ({killed_at} rows)"
    assert run_cli(["run", str(det_model), "--input", str(folder), "--out", str(out), "--task", "raw",
                    "--workers", "2", "--threads", "1"]) == 0
    rows = _rows(out)
    keys = [r["file"] for r in rows]
    assert len(keys) == len(set(keys)) == 120, "a row was lost or written twice"
    assert keys == sorted(keys)
    # Rows on both sides of the restart equal per-image predictions.
    session, task = make_runtime("opencv", threads=1).open(det_model), build_task("raw", det_model)
    for row in rows[killed_at - 2:killed_at + 2]:
        want = task.predict(session, read_image(folder / row["file"]))
        np.testing.assert_allclose(row["prediction"]["outputs"][0]["mean"], want["outputs"][0]["mean"], atol=1e-5)


def test_a_torn_last_line_is_cut_and_redone(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.write_text('{"file":"a.png","prediction":1}\n{"file":"b.png","prediction":2}\n{"file":"c.p')
    resume = scan_results(out, "file")
    assert read_done(out, "file") == set(resume.done) == {"a.png", "b.png"}
    assert out.read_text().endswith('{"file":"c.p'), "reading never changes the file"
    writer = ResultWriter(out, keep_bytes=resume.valid_bytes)  # the torn row is cut when the first row is written
    writer.add(0, {"file": "c.png", "prediction": 3})
    writer.close()
    assert out.read_text().splitlines()[-2:] == ['{"file":"b.png","prediction":2}', '{"file":"c.png","prediction":3}']


def test_a_file_that_is_not_ours_is_refused_and_left_alone(cls_model: Path, crops: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\nno trailing newline")
    before = notes.read_bytes()
    assert run_cli(["run", str(cls_model), "--input", str(crops / "a"), "--out", str(notes)]) == 2
    assert "notes.txt:1: not a JSON line" in capsys.readouterr().err
    assert notes.read_bytes() == before
    with pytest.raises(UsageError, match="keyed by 'file'"):
        frames = tmp_path / "frames.jsonl"
        frames.write_text('{"frame": 0, "prediction": 1}\n')
        read_done(frames, "file")


def test_corrupt_inputs_get_an_error_row_and_the_run_goes_on(cls_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(3):
        cv2.imwrite(str(folder / f"ok{i}.png"), _crop(rng, i))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "empty.png").write_bytes(b"")
    result = run_pipeline(PredictorSpec(str(cls_model), make_runtime("opencv").to_dict(), task="classify"), folder,
                          tmp_path / "r.jsonl", progress=False)
    assert (result.written, result.errors) == (5, 2)
    rows = {r["file"]: r for r in _rows(tmp_path / "r.jsonl")}
    assert rows["broken.jpg"] == {"file": "broken.jpg", "error": "unreadable or corrupt image"}
    assert "error" in rows["empty.png"] and "prediction" in rows["ok1.png"]


def test_video_frames_are_keyed_by_index_and_resume(cls_model: Path, tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (192, 48))
    assert writer.isOpened(), "this OpenCV cannot write MJPG AVI"
    rng = np.random.default_rng(3)
    frames = [_crop(rng, i) for i in range(12)]
    for frame in frames:
        writer.write(frame)
    writer.release()
    out = tmp_path / "frames.jsonl"
    args = ["run", str(cls_model), "--input", str(video), "--out", str(out), "--task", "raw", "--workers", "2",
            "--batch", "2"]
    assert run_cli(args) == 0
    rows = _rows(out)
    assert [r["frame"] for r in rows] == list(range(12))
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:5]))  # as if stopped after frame 4
    assert run_cli(args) == 0
    assert _rows(out) == rows
    capture = cv2.VideoCapture(str(video))  # frame 7 as decoded == the row for frame 7
    for _ in range(8):
        ok, frame = capture.read()
    session, task = make_runtime("opencv").open(cls_model), build_task("raw", cls_model)
    np.testing.assert_allclose(rows[7]["prediction"]["outputs"][0]["values"],
                               task.predict(session, frame)["outputs"][0]["values"], atol=1e-5)


def test_bad_input_is_one_clear_error(cls_model: Path, crops: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.jsonl"
    base = ["run", str(cls_model), "--out", str(out)]
    broken_video = tmp_path / "broken.mp4"
    broken_video.write_bytes(b"\x00" * 100)
    (tmp_path / "empty").mkdir()
    fixed = tmp_path / "fixed.onnx"
    conv_relu(fixed, size=16)
    cases = [
        ([*base, "--input", str(broken_video)], "cannot open video"),
        ([*base, "--input", str(tmp_path / "empty")], "no images found"),
        ([*base, "--input", str(crops), "--workers", "0"], "--workers must be >= 1"),
        ([*base, "--input", str(crops), "--workers", "many"], "--workers must be 'auto'"),
        (["run", str(fixed), "--input", str(crops), "--out", str(out), "--batch", "4"], "fixed at 1"),
        ([*base, "--input", str(crops), "--task", "poetry"], "unknown task 'poetry'"),
        (["run", str(cls_model), "--input", str(crops), "--out", str(cls_model)], "same file as the input"),
        ([*base, "--input", str(crops), "--ray-address", "127.0.0.1:9"], "no Ray cluster answers at 127.0.0.1:9"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert run_cli(args) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert "Traceback" not in err
    assert not out.exists() or out.read_text() == ""


def test_without_ray_installed_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from cvtune.pipeline.ray_runner import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RuntimeUnavailable, match=r"pip install 'cvtune\[ray\]'"):
        import_ray()


# ---------------------------------------------------------------------------------------------- deploy.json

def _deploy(folder: Path, source_model: Path, changes: dict | None = None) -> Path:
    (folder / "model.onnx").write_bytes(source_model.read_bytes())
    data = {"model": "model.onnx", "runtime": {"runtime": "ort", "threads": 1}, "task": "classify",
            "task_options": {}, "input_size": None, "batch": 2, "instances": 2, "expected": {"top1": 0.9},
            **(changes or {})}
    path = folder / "deploy.json"
    path.write_text(json.dumps(data))
    return path


def test_deployed_model_predicts_like_its_task(cls_model: Path, crops: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    deployed = load_deployed(_deploy(tmp_path, cls_model))
    assert (deployed.batch, deployed.instances, deployed.runtime.name) == (2, 2, "ort")
    assert deployed.model_path == (tmp_path / "model.onnx").resolve()
    image = read_image(crops / "a" / "crop003.png")
    want = build_task("classify", cls_model).predict(make_runtime("ort", threads=1).open(cls_model), image)
    assert deployed.predict(image)["top"] == want["top"]
    deployed.close()
    out = tmp_path / "r.jsonl"
    assert run_cli(["run", str(tmp_path / "deploy.json"), "--input", str(crops / "b"), "--out", str(out),
                    "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["workers"] == 2 and summary["written"] == 100  # instances from deploy.json


@pytest.mark.parametrize(("change", "message"), [
    ({"model": "missing.onnx"}, "model 'missing.onnx' not found"),
    ({"runtime": {"runtime": "tensorflow"}}, "unknown runtime 'tensorflow'"),
    ({"batch": 0}, "batch: Input should be greater than or equal to 1"),
    ({"task": "poetry"}, "unknown task 'poetry'"),
])
def test_bad_deploy_files_name_the_problem(cls_model: Path, tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises((UsageError, ModelError), match=message):
        load_deployed(_deploy(tmp_path, cls_model, change))
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": "model.onnx",\n "runtime": }')
    with pytest.raises(UsageError, match="broken.json:2: not valid JSON"):
        load_deployed(broken)
