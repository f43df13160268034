"""Shared fixtures: real zoo models (read-only) and small generated inputs. Append new shared fixtures here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from real_models import real_models, real_photos  # noqa: F401 - shared fixtures (real third-party models, photos)

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


# ---- rendered text (tasks/eval tests): clean lines drawn with cv2.putText, exact boxes from getTextSize ----------
TEXT_PAGES = (
    (("Hello World 42", (20, 50)), ("Total 1234.56", (30, 120))),
    (("cvtune", (40, 60)), ("OpenCV DNN", (60, 130))),
)


def render_text_page(lines, size=(160, 400)):
    """A white BGR page with black text lines [(text, (x, baseline_y))] and their ICDAR boxes (4 points each)."""
    import cv2
    import numpy as np

    image = np.full((*size, 3), 255, np.uint8)
    boxes = []
    for text, (x, y) in lines:
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 2)
        cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2, cv2.LINE_AA)
        boxes.append(((x - 2, y - h - 2), (x + w + 2, y - h - 2), (x + w + 2, y + base), (x - 2, y + base)))
    return image, boxes


@pytest.fixture(scope="session")
def icdar_dir(tmp_path_factory) -> Path:
    """Two rendered pages in ICDAR-2015 layout (img_N.jpg + gt_img_N.txt), two text lines each."""
    import cv2

    root = tmp_path_factory.mktemp("icdar")
    for n, lines in enumerate(TEXT_PAGES, 1):
        image, boxes = render_text_page(lines)
        cv2.imwrite(str(root / f"img_{n}.png"), image)
        rows = [",".join(str(v) for point in box for v in point) + f",{text}"
                for box, (text, _) in zip(boxes, lines, strict=True)]
        (root / f"gt_img_{n}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def ocr_lines_dir(tmp_path_factory) -> Path:
    """The rendered lines as crops listed in labels.txt (`path<TAB>text`)."""
    import cv2

    root = tmp_path_factory.mktemp("ocr_lines")
    (root / "crops").mkdir()
    labels = []
    for n, lines in enumerate(TEXT_PAGES, 1):
        image, boxes = render_text_page(lines)
        for k, (box, (text, _)) in enumerate(zip(boxes, lines, strict=True), 1):
            (x0, y0), (x1, y1) = box[0], box[2]
            name = f"crops/line_{n}_{k}.png"
            cv2.imwrite(str(root / name), image[max(y0 - 4, 0):y1 + 4, max(x0 - 4, 0):x1 + 4])
            labels.append(f"{name}\t{text}")
    (root / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return root


# ---- optimizer (search/report tests) ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_image_dir(tmp_path_factory) -> Path:
    """Eight small 48x192 text-line-like images (a plain folder): enough for the fidelity task on ppocr-cls."""
    import cv2
    import numpy as np

    root = tmp_path_factory.mktemp("tiny_images")
    rng = np.random.default_rng(0)
    for i in range(8):
        image = np.full((48, 192, 3), 230 - 10 * i, np.uint8)
        cv2.putText(image, f"cvtune {i}{rng.integers(100, 999)}", (6, 34), cv2.FONT_HERSHEY_SIMPLEX, 0.9,
                    (20, 20, 20), 2)
        cv2.imwrite(str(root / f"line_{i}.png"), image)
    return root


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """cvtune's cache (converted models, built candidates) in a folder of this test session, not the user's."""
    import os

    previous = os.environ.get("CVTUNE_CACHE")
    os.environ["CVTUNE_CACHE"] = str(tmp_path_factory.mktemp("cvtune-cache"))
    yield
    if previous is None:
        os.environ.pop("CVTUNE_CACHE", None)
    else:
        os.environ["CVTUNE_CACHE"] = previous


def small_search_config(out: Path, model: Path, data: Path, **overrides):
    """A 2-4 candidate search on ppocr-cls with the fidelity task: runs in seconds."""
    from cvtune.search import OptimizeConfig, SpaceConfig

    space = overrides.pop("space", None) or SpaceConfig(runtimes=("opencv", "ort"), opencv_engines=("new",),
                                                        threads=(1,), transforms=())
    return OptimizeConfig(model=model, task="fidelity", data=data, out=out, space=space, final_min_time_s=0.3,
                          **overrides)


def _small_search_with_hooks(out: Path, cls_model: Path, tiny_image_dir: Path):
    """The search optimize_run shares: (config, result)."""
    import os

    from cvtune.report import write_report
    from cvtune.search import SpaceConfig, optimize
    from cvtune.search.space import TEST_HOOKS_ENV

    previous = os.environ.get(TEST_HOOKS_ENV)
    os.environ[TEST_HOOKS_ENV] = "1"
    try:
        space = SpaceConfig(runtimes=("opencv", "ort"), opencv_engines=("new",), threads=(1,), transforms=(),
                            debug=("abort", "hang"))
        config = small_search_config(out, cls_model, tiny_image_dir, space=space, trial_timeout_s=20)
        result = optimize(config)
        result.report = write_report(config.out)
    finally:
        if previous is None:
            os.environ.pop(TEST_HOOKS_ENV, None)
        else:
            os.environ[TEST_HOOKS_ENV] = previous
    return config, result


@pytest.fixture(scope="session")
def optimize_run(tmp_path_factory, cls_model: Path, tiny_image_dir: Path):
    """One finished small search whose space includes a candidate that aborts and one that hangs (test hooks,
    trial timeout 20 s: 8 s timed real trials out on a loaded 2-core machine): (config, result). Under pytest-xdist
    the first worker that needs it runs it (a file lock in the folder the workers share) and every worker gets its
    own copy of the run folder, so tests may resume or rewrite it."""
    import dataclasses
    import fcntl
    import os
    import pickle
    import shutil

    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run_id is None:  # one process: nothing to share
        return _small_search_with_hooks(tmp_path_factory.mktemp("optimize") / "run", cls_model, tiny_image_dir)
    shared = tmp_path_factory.getbasetemp().parent / f"optimize-run-{run_id}"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "done.pickle").is_file():
            done = _small_search_with_hooks(shared / "run", cls_model, tiny_image_dir)
            (shared / "done.pickle").write_bytes(pickle.dumps(done))
    config, result = pickle.loads((shared / "done.pickle").read_bytes())
    own = tmp_path_factory.mktemp("optimize") / "run"
    shutil.copytree(shared / "run", own)
    return dataclasses.replace(config, out=own), result


@pytest.fixture(scope="session")
def synth_text_dir(tmp_path_factory) -> Path:
    """8 generated text images (seed 0, matplotlib's bundled fonts: the same on every machine), shared by the
    accuracy, compression, quantization and search tests. Holds textdet/ (ICDAR) and ocr/ (line crops)."""
    from cvtune.data.synth import SynthConfig, generate_text_set

    out = tmp_path_factory.mktemp("synth") / "text"
    generate_text_set(out, SynthConfig(n=8, seed=0, fonts="bundled"))
    return out


@pytest.fixture()
def cli_help(capsys, monkeypatch):
    """`cli_help("prune")` runs `cvtune prune --help` in-process (120 columns) and checks what it printed: the usage
    line and every option the command declares (names taken from the command itself). Returns the printed text with
    runs of whitespace collapsed, so wrapped sentences read whole."""
    import typer

    from cvtune.cli import app, run_cli

    monkeypatch.setenv("COLUMNS", "120")

    def check(*command: str) -> str:
        capsys.readouterr()
        assert run_cli([*command, "--help"]) == 0
        out = capsys.readouterr().out
        assert f"Usage: cvtune {' '.join(command)} [OPTIONS]" in out
        cmd = typer.main.get_command(app)
        for name in command:
            cmd = cmd.commands[name]
        options = [p.opts[0] for p in cmd.params if p.opts[0].startswith("--") and p.name != "help"]
        assert options, f"cvtune {' '.join(command)} declares no options"
        missing = [opt for opt in options if opt not in out]
        assert not missing, f"--help of cvtune {' '.join(command)} does not list {missing}"
        return " ".join(out.split())

    return check
