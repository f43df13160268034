"""`cvtune optimize --config run.yaml` / `--save-config FILE`: a run as a file under version control, validated like
the command line, overridden by it, and rerun to the same search."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvtune.cli import run_cli
from cvtune.search import Budget
from cvtune.search.config_file import config_to_dict, load_config, save_config
from cvtune.search.store import Store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "optimize.yaml"


def _trials(out: Path) -> dict[tuple[str, str], float]:
    with Store.open(out, create=False) as store:
        return {(t.key, t.rung): t.finished for t in store.trials() if t.rung != "result"}  # measured stages


def test_the_example_config_runs_with_command_line_overrides_and_its_saved_config_reruns_the_same_search(
        tmp_path, tiny_image_dir, capsys):
    saved = tmp_path / "conf" / "run.yaml"
    out = tmp_path / "run"
    overrides = ["--data", str(tiny_image_dir), "-o", str(out), "--threads", "1", "--prune", "0", "--quant", "none",
                 "--eval-images", "4"]
    assert run_cli(["optimize", "--config", str(EXAMPLE), *overrides, "--save-config", str(saved), "--json"]) in (0, 3)
    config = load_config(saved)
    assert config.data == tiny_image_dir and config.out == out  # the command line won
    assert config.space.threads == (1,) and config.space.slot_values("prune") == (None,)
    assert config.space.runtimes == ("opencv", "ort") and config.budget == Budget(0.01, True)  # the file's
    assert saved.read_text().count("zoo:ppocr-cls") == 1  # the zoo model by name, not a site-packages path
    first = _trials(out)
    assert len({key for key, _ in first}) >= 3  # the baseline and both runtimes
    # The saved config alone: the same search, so it resumes and measures
    # nothing (a candidate the CLI run did not have would be measured now and show up here).
    capsys.readouterr()
    assert run_cli(["optimize", "--config", str(saved), "--json"]) in (0, 3)  # 3: the model as given won
    assert '"resumed": true' in capsys.readouterr().out and _trials(out) == first


def test_a_saved_config_reads_back_equal_in_yaml_and_json(tmp_path):
    config = load_config(EXAMPLE, data=str(tmp_path / "images"), seed=3, budget="0.02abs")
    for name in ("run.yaml", "run.json"):
        assert load_config(save_config(config, tmp_path / "sub" / name)) == config
    data = config_to_dict(config, relative_to=tmp_path)
    assert data["data"] == "images" and data["budget"] == "0.02abs" and data["model"] == "zoo:ppocr-cls"


@pytest.mark.parametrize("text,message", [
    ("model: zoo:ppocr-cls\nmax_drp: 1%\n", "unknown field 'max_drp'; valid fields: model, task, data, out"),
    ("space: {runtime: [ort]}\n", "space: unknown field 'runtime'; valid fields: preset, runtimes"),
    ("space: {runtimes: [tensorflow]}\n", "unknown runtime 'tensorflow'"),
    ("budget: lots\n", "cannot read the accuracy budget (max drop) 'lots'"),
    ("time_budget_s: soon\n", "cannot read duration 'soon'"),
    ("seed: abc\n", "'seed' must be a whole number (got 'abc')"),
    ("space: {preset: huge}\n", "unknown space preset 'huge'"),
    ("seed: [1\n", "run.yaml:4: not valid YAML (expected ','"),
    ("- a list\n", "expected a mapping of fields"),
])
def test_a_bad_config_is_one_line_naming_the_field_and_exit_2(tmp_path, tiny_image_dir, capsys, text, message):
    path = tmp_path / "run.yaml"
    path.write_text("task: fidelity\nmodel: zoo:ppocr-cls\n" * ("model:" not in text and "- " not in text) + text)
    args = ["optimize", "--config", str(path), "--data", str(tiny_image_dir), "-o", str(tmp_path / "out")]
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_without_a_config_every_required_field_is_asked_for_by_its_option(tmp_path, capsys):
    assert run_cli(["optimize", "zoo:ppocr-cls", "--data", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert "missing the task: give --task on the command line or 'task:' in a --config file" in \
        capsys.readouterr().err


def test_the_readme_shows_the_example_file_as_it_is():
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert block in EXAMPLE.read_text()
