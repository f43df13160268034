"""The workflow around the commands: plain progress lines in pipes, optimize's display while the baseline is
measured and when a run resumes, --limit where images are iterated, Deployed.predict over a batch, the OCR
task's helper models, Ray's log kept out of cvtune's output, and no environment change at import."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from cvtune.cli import run_cli
from cvtune.console import PlainProgress, progress


def _env_change(code: str) -> str:
    """The environment variables that change while `code` runs in a fresh interpreter (set between the marks)."""
    wrapped = f"import os, sys; {code.split('|')[0]}; before = dict(os.environ); {code.split('|')[1]}; " \
              "print(sorted(set(os.environ.items()) ^ set(before.items())), 'cv2' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    return subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, env=env,
                          check=True).stdout.strip()


def test_importing_cvtune_changes_no_environment_variable():
    assert _env_change("pass | import cvtune") == "[] False"  # light: not even OpenCV is loaded
    # cv2 itself edits LD_LIBRARY_PATH when imported: load it first, then cvtune's modules change nothing
    assert _env_change("import cv2 | import cvtune.deploy, cvtune.report, cvtune.search, cvtune.evaluate, "
                       "cvtune.profiling") == "[] True"


def test_off_a_terminal_progress_is_plain_lines():
    assert isinstance(progress(), PlainProgress)  # pytest's stderr is not a terminal
    buffer = io.StringIO()
    with PlainProgress(Console(file=buffer, width=200), every_s=3600) as bar:
        job = bar.add_task("eval textdet", total=8, rate="")
        for i in range(8):
            bar.update(job, advance=1, rate=f"{i + 1}.0 img/s")
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "eval textdet: started (8 to do)"
    assert [ln.split(",")[0] for ln in lines[1:]] == [f"eval textdet: {n}/8 ({25 * n // 2}%)" for n in (2, 4, 6, 8)]
    assert lines[-1].endswith("8.0 img/s - done")


def _stages(out):
    from cvtune.search import Store

    with Store.open(out, create=False) as store:
        return [t for t in store.trials() if t.rung != "result"]


def test_optimize_says_it_is_measuring_the_baseline_and_what_a_resumed_run_inherits(optimize_run, capsys):
    from dataclasses import replace

    from cvtune.commands.optimize import LiveDisplay
    from cvtune.search.space import baseline_candidate

    config, result = optimize_run
    display = LiveDisplay(replace(config, time_budget_s=180.0))
    display("start", resumed=False, config=config)
    assert "measuring the model as given (the baseline) ..." in capsys.readouterr().err  # a plain line off a TTY
    display("trial_start", candidate=baseline_candidate(), rung="time")
    panel = Console(file=io.StringIO(), width=200)
    panel.print(display.render())  # the live panel (on a terminal) says it too, not "starting"
    shown = panel.file.getvalue()
    assert "time: opencv:auto/cpu | as given" in shown and " s left of 180 s" in shown
    display("start", resumed=True, config=config)
    err = capsys.readouterr().err
    candidates = len({t.key for t in _stages(config.out)})
    assert f"{candidates} candidates (" in err and "were done before and are not measured again" in err
    assert "this run has its own 180 s budget" in err
    display("start", resumed=True, config=config, budget_used_s=95.2)  # when the search counts across runs
    assert "resuming: 95 s of the 180 s budget were used before" in capsys.readouterr().err


def test_run_and_data_info_take_limit(cls_model, tiny_image_dir, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert run_cli(["run", str(cls_model), "-i", str(tiny_image_dir), "-o", str(out), "--limit", "3", "--json",
                    "--workers", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == 3 and len(out.read_text().splitlines()) == 3
    assert run_cli(["data", "info", str(tiny_image_dir), "--check", "--limit", "2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["checked"] == info["readable"] == 2 and info["samples"] == 8


def test_deployed_predict_takes_one_image_or_a_batch(cls_model, tiny_image_dir, tmp_path):
    import cv2

    from cvtune.deploy import load_deployed
    from cvtune.errors import UsageError

    (tmp_path / "model.onnx").write_bytes(cls_model.read_bytes())
    (tmp_path / "deploy.json").write_text(json.dumps({"model": "model.onnx", "task": "classify", "batch": 2,
                                                      "runtime": {"runtime": "ort", "threads": 1}}))
    deployed = load_deployed(tmp_path / "deploy.json")
    images = [cv2.imread(str(p)) for p in sorted(tiny_image_dir.glob("*.png"))[:3]]
    one_by_one = [deployed.predict(image) for image in images]
    batch = deployed.predict(images)  # two runs: a batch of 2, then 1
    assert isinstance(batch, list) and len(batch) == 3
    for single, batched in zip(one_by_one, batch, strict=True):
        assert single["top"] == batched["top"] and single["probs"] == pytest.approx(batched["probs"], abs=1e-5)
    assert deployed.predict([]) == []
    assert len(deployed.predict(np.stack(images[:2]))) == 2  # an (N, H, W, 3) array is a batch of N
    with pytest.raises(UsageError, match=r"image 1 is \(48, 192\)"):
        deployed.predict([images[0], images[0][:, :, 0]])
    deployed.close()


def test_eval_ocr_says_which_detector_and_classifier_it_runs_and_takes_them_as_options(rec_model, icdar_dir,
                                                                                       ocr_lines_dir, capsys):
    args = ["eval", str(rec_model), "--task", "ocr", "--json"]
    assert run_cli([*args, "--data", str(icdar_dir), "-O", "classifier=none", "-O", "detector=ppocr-det"]) == 0
    helpers = json.loads(capsys.readouterr().out)["helper_models"]
    assert helpers["detector"].startswith("zoo ppocr-det (") and helpers["classifier"] == "off"
    assert run_cli([*args, "--data", str(ocr_lines_dir)]) == 0
    helpers = json.loads(capsys.readouterr().out)["helper_models"]
    assert helpers["detector"] == "not used (the data are line crops)" and helpers["classifier"].startswith("zoo")
    assert run_cli([*args, "--data", str(ocr_lines_dir), "-O", "classifier=nope.onnx"]) == 2
    assert "ocr classifier model not found: nope.onnx" in capsys.readouterr().err


def test_ray_log_lines_go_to_a_log_file_and_cvtune_output_stays_on_the_terminal(capfd):
    from cvtune.console import err_console
    from cvtune.pipeline.ray_runner import ray_output

    before = os.environ.get("RAY_BACKEND_LOG_LEVEL")
    with ray_output(verbose=False) as log:
        os.write(2, b"[2026 I core_worker.cc] Ray's own line\n")  # what Ray's C++ core does
        err_console.print("cvtune: 3/8 images")
        assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    err = capfd.readouterr().err
    assert "cvtune: 3/8 images" in err and "Ray's own line" not in err
    assert "Ray's own line" in Path(log).read_text()
    assert os.environ.get("RAY_BACKEND_LOG_LEVEL") == before  # Ray's switches are set for the run only
    Path(log).unlink()
    with ray_output(verbose=True) as log:
        os.write(2, b"shown when verbose\n")
    assert log is None and "shown when verbose" in capfd.readouterr().err
