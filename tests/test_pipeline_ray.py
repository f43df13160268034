"""`cvtune run --ray`: the same pipeline on a local Ray (started and stopped by the run) gives the very rows the
local pipeline writes, and resumes the same way. Skipped where the optional `ray` extra is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvtune.cli import run_cli

pytest.importorskip("ray.data")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own deprecated settings


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ray_crops")
    rng = np.random.default_rng(7)
    for i in range(200):
        img = np.full((48, 192, 3), int(rng.integers(150, 255)), np.uint8)
        cv2.putText(img, f"text {i}", (4, 34), cv2.FONT_HERSHEY_SIMPLEX, 1, (20, 20, 20), 2)
        cv2.imwrite(str(root / f"crop{i:03d}.png"), cv2.rotate(img, cv2.ROTATE_180) if i % 2 else img)
    (root / "corrupt.png").write_bytes(b"\x89PNG broken")
    return root


def test_ray_rows_equal_local_rows_and_resume(cls_model: Path, crops: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    common = ["run", str(cls_model), "--input", str(crops), "--task", "classify", "--workers", "2", "--batch", "4",
              "--threads", "1", "--json"]
    local, distributed = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert run_cli([*common, "--out", str(local)]) == 0
    capsys.readouterr()
    lines = local.read_text().splitlines()
    distributed.write_text("\n".join(lines[:50]) + "\n")  # a previous run stopped after 50 rows
    assert run_cli([*common, "--out", str(distributed), "--ray"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["backend"], summary["already_done"], summary["written"]) == ("ray", 50, 151)
    assert distributed.read_text() == local.read_text()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 201 and sum("error" in r for r in rows) == 1


def test_optimize_evaluates_accuracy_as_ray_tasks_with_the_rows_a_local_search_gets(tmp_path, cls_model,
                                                                                     tiny_image_dir):
    """`optimize --ray`: each accuracy stage's image ranges run as Ray tasks (a local Ray, started and stopped by
    the search); every stage's per-image rows equal those of the same search run locally."""
    from conftest import small_search_config

    from cvtune.search import optimize
    from cvtune.search.store import Store

    def baseline_rows(result):
        with Store.open(result.out, create=False) as store:
            return {t.rung: t.metric.per_image for t in store.trials()
                    if t.key == result.baseline.key and t.rung.startswith("accuracy:")}

    local = optimize(small_search_config(tmp_path / "local", cls_model, tiny_image_dir, eval_workers=2))
    distributed = optimize(small_search_config(tmp_path / "ray", cls_model, tiny_image_dir, eval_workers=2,
                                               ray=True))
    rows = baseline_rows(distributed)
    assert rows and rows == baseline_rows(local)  # the model as given, judged on the same images, the same rows
    assert distributed.best is not None and (tmp_path / "ray" / "best" / "deploy.json").is_file()
    import ray

    assert not ray.is_initialized()  # the search's own Ray is shut down with it


def test_optimize_with_a_ray_address_nobody_answers_is_one_clear_error(tmp_path, cls_model, tiny_image_dir,
                                                                       capsys):
    code = run_cli(["optimize", str(cls_model), "--task", "fidelity", "--data", str(tiny_image_dir), "-o",
                    str(tmp_path / "opt"), "--ray-address", "127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and "no Ray cluster answers at 127.0.0.1:9" in err and "Traceback" not in err
    assert not (tmp_path / "opt" / "trials.sqlite").exists()  # nothing measured, nothing written
