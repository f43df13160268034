"""The optimizer end to end on a tiny search (ppocr-cls, fidelity task, 2-4 candidates, 8 small images):
crash isolation, export, resume without re-measuring, SIGKILL mid-search, Ctrl-C, and bad input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cvtune.cli import run_cli
from cvtune.runtimes import runtime_from_dict
from cvtune.search import Trial, optimize
from cvtune.search.store import Store

DEPLOY_KEYS = {"schema", "version", "model", "runtime", "task", "task_options", "input_size", "batch", "instances",
               "preprocessing", "preprocessing_source", "transforms", "expected"}


def _rows(out: Path) -> list[Trial]:
    with Store.open(out, create=False) as store:
        return store.trials()


def test_a_crashing_candidate_is_recorded_failed_and_the_search_finishes(optimize_run):
    config, result = optimize_run
    rows = _rows(config.out)
    crashed = [t for t in rows if t.candidate.debug == "abort" and t.rung == "result"]
    assert len(crashed) == 1 and crashed[0].status == "failed" and "SIGABRT" in crashed[0].error
    assert result.baseline.label.startswith("opencv:auto") and result.best is not None
    if result.improved:  # ONNX Runtime usually beats OpenCV here; the claim was checked through deploy.json
        assert result.baseline_final.rung == result.best_final.rung == f"final:{result.best.key}"
        assert result.speedup == pytest.approx(result.baseline_final.p50_ms / result.best_final.p50_ms)
        assert result.claim["holds"] and result.exit_code == 0 and result.drop <= config.budget.value
    else:
        assert result.best.key == result.baseline.key and result.exit_code == 3
    assert "SIGABRT" in (config.out / "report.html").read_text()


def test_the_chosen_candidate_is_exported_and_runs(optimize_run):
    config, result = optimize_run
    best = config.out / "best"
    deploy = json.loads((best / "deploy.json").read_text())
    assert set(deploy) == DEPLOY_KEYS and deploy["model"] == "model.onnx" and deploy["task"] == "fidelity"
    assert deploy["expected"]["p50_ms"] == pytest.approx(result.best.timing.p50_ms)
    assert deploy["expected"]["metric"]["value"] == pytest.approx(result.best.metric.value)
    assert deploy["expected"]["answer"] == ("a confirmed improvement" if result.improved else "the model as given")
    assert deploy["transforms"] == [{"pass": p.name, "description": p.describe(), "settings": p.settings()}
                                    for p in result.best.candidate.passes]
    session = runtime_from_dict(deploy["runtime"]).open(best / deploy["model"])
    assert session.run(np.zeros((1, 3, 48, 192), np.float32))[0].shape == (1, 2)
    deploy_module = pytest.importorskip("cvtune.deploy")
    deployed = deploy_module.load_deployed(best / "deploy.json")
    assert deployed.model_path == best / "model.onnx" and deployed.runtime.to_dict() == deploy["runtime"]


def test_rerunning_resumes_and_measures_nothing_again(optimize_run, cls_model):
    config, first = optimize_run
    before = {(t.key, t.rung): t.finished for t in _rows(config.out) if t.rung != "result"}
    digest = hashlib.sha256(cls_model.read_bytes()).hexdigest()
    result = optimize(config)
    after = {(t.key, t.rung): t.finished for t in _rows(config.out) if t.rung != "result"}
    assert result.resumed and after == before and result.best.key == first.best.key
    assert hashlib.sha256(cls_model.read_bytes()).hexdigest() == digest  # the user's model is never touched


def _count(store: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def test_sigkill_mid_search_then_resume_keeps_every_finished_trial_once(tmp_path, cls_model, tiny_image_dir):
    out = tmp_path / "run"
    args = ["optimize", str(cls_model), "--task", "fidelity", "--data", str(tiny_image_dir), "-o", str(out),
            "--runtimes", "opencv,ort", "--threads", "1", "--scales", "1", "--prune", "0", "--quant", "none",
            "--no-simplify", "--eval-images", "4"]
    proc = subprocess.Popen([sys.executable, "-c", "from cvtune.cli import main; main()", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _count(out / "trials.sqlite") < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the search finished before it could be killed"
    before = {(t.key, t.rung): t.finished for t in _rows(out) if t.rung != "result"}  # measured stages
    assert len(before) >= 2
    assert run_cli(args) in (0, 3)
    rows = _rows(out)
    after = [(t.key, t.rung) for t in rows]
    assert len(after) == len(set(after))  # nothing measured twice
    assert {(t.key, t.rung): t.finished for t in rows if (t.key, t.rung) in before} == before  # none re-measured
    assert len(rows) > len(before) and (out / "best" / "deploy.json").is_file() and (out / "report.html").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".best-")]  # no half-exported answer left behind


def test_ctrl_c_stops_after_committing_and_the_cli_says_how_to_resume(tmp_path, cls_model, tiny_image_dir,
                                                                      monkeypatch, capsys):
    from conftest import small_search_config

    config = small_search_config(tmp_path / "run", cls_model, tiny_image_dir)

    def interrupt(kind, **data):
        if kind == "trial_done":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        optimize(config, on_event=interrupt)
    assert len(_rows(config.out)) == 1
    assert not (config.out / "best").exists()  # interrupted before the baseline was measured: nothing to point at

    import cvtune.commands.optimize as command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "optimize", interrupted)
    code = run_cli(["optimize", str(cls_model), "--task", "fidelity", "--data", str(tiny_image_dir), "-o",
                    str(config.out)])
    assert code == 130 and "cvtune optimize" in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--max-drop", "lots"], "cannot read the accuracy budget"),
    (["--max-drop", "150%"], "max drop) must be in"),
    (["--time", "soon"], "cannot read duration"),
    (["--quant", "int4"], "unknown technique 'int4'"),
    (["--objective", "speed"], "unknown objective"),
    (["--task", "poetry"], "unknown task"),
    (["--runtimes", "tensorflow"], "unknown runtime"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, cls_model, tiny_image_dir, capsys, extra, message):
    args = ["optimize", str(cls_model), "--task", "fidelity", "--data", str(tiny_image_dir), "-o",
            str(tmp_path / "run"), *extra]
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_an_output_folder_holding_other_files_is_refused(tmp_path, cls_model, tiny_image_dir, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    args = ["optimize", str(cls_model), "--task", "fidelity", "--data", str(tiny_image_dir), "-o", str(tmp_path)]
    assert run_cli(args) == 2
    assert "not a cvtune optimize run" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_missing_model_or_dataset_is_one_clear_line(tmp_path, cls_model, tiny_image_dir, capsys):
    assert run_cli(["optimize", str(tmp_path / "nope.onnx"), "--task", "fidelity", "--data", str(tiny_image_dir),
                    "-o", str(tmp_path / "a")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert run_cli(["optimize", str(cls_model), "--task", "fidelity", "--data", str(tmp_path / "nodata"),
                    "-o", str(tmp_path / "b")]) == 2
    assert "not found" in capsys.readouterr().err


def test_a_model_the_task_does_not_fit_is_refused_before_anything_is_written(tmp_path, cls_model, icdar_dir,
                                                                              capsys):
    out = tmp_path / "run"
    assert run_cli(["optimize", str(cls_model), "--task", "textdet", "--data", str(icdar_dir), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not run with task 'textdet'" in err and "Traceback" not in err
    assert not out.exists()


def test_large_spaces_are_sampled_with_seeded_optuna_and_resume(tmp_path, cls_model, tiny_image_dir):
    from conftest import small_search_config

    config = small_search_config(tmp_path / "run", cls_model, tiny_image_dir, strategy="optuna-tpe", max_trials=2)
    result = optimize(config)
    assert result.strategy == "optuna-tpe" and result.best is not None
    measured = [t for t in _rows(config.out) if t.rung == "result"]
    assert 2 <= len(measured) <= 3  # the baseline + at most max_trials candidates
    before = {(t.key, t.rung) for t in _rows(config.out)}
    assert optimize(config).resumed and {(t.key, t.rung) for t in _rows(config.out)} == before


def test_a_hanging_candidate_times_out_and_the_search_goes_on(optimize_run):
    config, result = optimize_run
    hung = [t for t in _rows(config.out) if t.candidate.debug == "hang" and t.rung == "result"]
    assert len(hung) == 1 and hung[0].status == "failed"
    assert f"timed out after {config.trial_timeout_s:.0f} s" in hung[0].error
    assert result.best is not None and not result.best.candidate.debug


def test_accuracy_stages_keep_their_per_image_rows_for_the_paired_test(optimize_run):
    """Candidates are judged image by image against the baseline's results on the same images: every accuracy
    stage stores one row of the task's statistics per image (a search once compared a candidate on 40 images with
    a baseline measured on 8, and printed +10% hmean for a runtime switch)."""
    config, _ = optimize_run
    stages = [t for t in _rows(config.out) if t.rung.startswith("accuracy:") and t.metric is not None]
    assert stages
    for t in stages:
        assert t.metric.statistic and len(t.metric.per_image) == t.metric.n_images > 0, t.rung
