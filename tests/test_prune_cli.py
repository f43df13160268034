"""`cvtune prune` and `cvtune sensitivity` used from the command line (in-process), on a tiny model built in
code and on the real detector: outputs, reports, refusals (exit 2), and that the input is never modified."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cvtune.budget import Budget
from cvtune.cli import run_cli
from cvtune.compress.graph import ort_session
from cvtune.compress.sensitivity import LayerCurve, SensitivityResult, allocate, analyze_sensitivity


def chain_model(path: Path) -> Path:
    """x(1,3,16,16) -> Conv(3->8) -> Relu -> Conv(8->8) -> Relu -> Conv(8->2) -> y(1,2,16,16)."""
    rng = np.random.default_rng(0)
    shapes = {"w0": (8, 3, 3, 3), "w1": (8, 8, 3, 3), "w2": (2, 8, 3, 3)}
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), n) for n, s in shapes.items()]
    nodes, x = [], "x"
    for i in range(3):
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}", kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1]))
        x = f"c{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"], name=f"relu{i}"))
            x = f"r{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 2, 16, 16])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    return chain_model(tmp_path / "chain.onnx")


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        image = cv2.GaussianBlur(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), (5, 5), 0)
        cv2.imwrite(str(folder / f"img_{i}.png"), image)
    return folder


def cli_json(capsys, args: list[str]) -> dict:
    capsys.readouterr()
    assert run_cli([*args, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_help_texts(cli_help):
    assert "least squares on --calib images. The input model is never modified." in cli_help("prune")
    assert "Measure how much the metric drops when each layer alone is pruned" in cli_help("sensitivity")


def test_magnitude_writes_the_model_and_its_report_and_leaves_the_input_alone(model, tmp_path, capsys):
    before = model.read_bytes()
    out = tmp_path / "out" / "sparse.onnx"
    report = cli_json(capsys, ["prune", str(model), "-o", str(out), "--method", "magnitude", "--sparsity", "0.5",
                               "--no-skip-first"])
    assert model.read_bytes() == before
    assert out.is_file() and (tmp_path / "out" / "sparse.prune.json").is_file()
    by_layer = {layer["name"]: layer for layer in report["layers"]}
    assert by_layer["conv0"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert by_layer["conv2"]["skipped"] == "last layer (skip_last)"
    assert report["compressed_bytes"] < report["original_compressed_bytes"]


def test_channel_plan_prints_the_groups_and_writes_nothing(model, tmp_path, capsys):
    plan = cli_json(capsys, ["prune", str(model), "--method", "channel", "--ratio", "0.5", "--plan"])
    assert [(g["name"], g["channels"], g["kept"]) for g in plan["plan"]["groups"]] == [("conv0", 8, 4),
                                                                                       ("conv1", 8, 4)]
    assert plan["output"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.onnx"]
    assert run_cli(["prune", str(model), "--method", "channel", "--ratio", "0.5", "--plan"]) == 0
    assert "channel pruning plan" in capsys.readouterr().out


def test_channel_pruning_with_reconstruction_from_a_calibration_folder(model, images, tmp_path, capsys):
    out = tmp_path / "pruned.onnx"
    report = cli_json(capsys, ["prune", str(model), "-o", str(out), "--method", "channel", "--ratio", "0.5",
                               "--calib", str(images), "--importance", "activation"])
    rec = report["reconstruction"]
    assert rec["images"] == 4 and [f["node"] for f in rec["layers"]] == ["conv1", "conv2"]
    assert rec["mean_error_fit"] < rec["mean_error_cut"]
    pruned = onnx.load(str(out))
    x = np.zeros((1, 3, 16, 16), np.float32)
    assert ort_session(pruned).run(None, {"x": x})[0].shape == (1, 2, 16, 16)


@pytest.mark.parametrize("args, message", [
    (["--method", "channel", "--ratio", "1.5", "--no-reconstruct"], "pruning ratio must be in (0, 1)"),
    (["--method", "channel", "--sparsity", "0.5"], "give --ratio R"),
    (["--method", "magnitude", "--ratio", "0.5"], "--ratio is for --method channel"),
    (["--method", "channel", "--ratio", "0.3"], "needs calibration images"),
    (["--method", "channel", "--ratio", "0.3", "--calib", "EMPTY"], "no images found"),
    (["--method", "channel", "--ratio", "0.3", "--calib", "MISSING"], "does not exist"),
    (["--method", "sculpt", "--sparsity", "0.5"], "magnitude, random, threshold, channel"),
    (["--method", "magnitude", "--sparsity", "0.5", "--calib", "EMPTY"], "--calib is for --method channel"),
    (["--method", "magnitude", "--sparsity", "0.5", "-o", "SELF"], "same file as the input"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(model, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    replace = {"EMPTY": str(tmp_path / "empty"), "MISSING": str(tmp_path / "missing"), "SELF": str(model)}
    args = [replace.get(a, a) for a in args]
    output = [] if "-o" in args else ["-o", str(tmp_path / "out.onnx")]
    before = model.read_bytes()
    capsys.readouterr()
    assert run_cli(["prune", str(model), *output, *args]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "out.onnx").exists() and model.read_bytes() == before


def test_missing_model_exits_2(tmp_path, capsys):
    assert run_cli(["prune", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "o.onnx"), "--sparsity", "0.5"]) == 2
    assert "not found" in capsys.readouterr().err


def test_real_detector_magnitude_50_shrinks_the_zip_and_channel_plan_lists_the_output_group(det_copy, tmp_path,
                                                                                            capsys):
    before = det_copy.read_bytes()
    report = cli_json(capsys, ["prune", str(det_copy), "-o", str(tmp_path / "det50.onnx"), "--sparsity", "0.5"])
    assert report["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert report["compressed_ratio"] < 0.7
    plan = cli_json(capsys, ["prune", str(det_copy), "--method", "channel", "--ratio", "0.3", "--plan"])
    assert len(plan["plan"]["groups"]) > 20
    assert any("model output" in s["reason"] for s in plan["plan"]["skipped"])
    assert det_copy.read_bytes() == before


def test_sensitivity_curves_allocation_and_prune_with_the_allocation(model, images, tmp_path, capsys):
    curve_file = tmp_path / "curves.json"
    result = cli_json(capsys, ["sensitivity", str(model), "--data", str(images), "--levels", "0.5,0.9",
                               "-o", str(curve_file), "--max-drop", "30%"])
    # nothing to decode: raw similarity, 1 - relative RMS error (50% sparsity costs this random chain ~20%)
    assert result["metric"] == "raw_similarity" and result["baseline"] == pytest.approx(1.0)
    assert result["budget"] == {"value": pytest.approx(0.3), "relative": True}
    assert [c["name"] for c in result["curves"]] == ["conv0", "conv1", "conv2"]
    assert all(set(c["metrics"]) == {"0.5", "0.9"} for c in result["curves"])
    assert all(v < 1.0 for c in result["curves"] for v in c["metrics"].values())
    allocation = result["allocation"]
    assert allocation and set(allocation) <= {"conv0", "conv1", "conv2"}
    pruned = cli_json(capsys, ["prune", str(model), "-o", str(tmp_path / "allocated.onnx"), "--allocation",
                               str(curve_file), "--no-skip-first", "--no-skip-last"])
    achieved = {layer["name"]: layer["sparsity"] for layer in pruned["layers"]}
    assert all(achieved[name] == pytest.approx(level, abs=0.02) for name, level in allocation.items())
    # A second run finds every point in the cache and measures nothing.
    calls: list[int] = []
    analyze_sensitivity(model, images, levels=(0.5, 0.9), cache=curve_file, on_point=lambda i, n: calls.append(i))
    assert calls == []
    assert run_cli(["prune", str(model), "-o", str(tmp_path / "x.onnx"), "--method", "channel",
                    "--allocation", str(curve_file)]) == 2


def test_channel_sensitivity_with_calibration_reconstructs_every_point(model, images, tmp_path, capsys):
    with_refit = cli_json(capsys, ["sensitivity", str(model), "--data", str(images), "--method", "channel",
                                   "--levels", "0.5", "--calib", str(images), "-o", str(tmp_path / "ch.json")])
    plain = analyze_sensitivity(model, images, method="channel", levels=(0.5,))
    refit = {c["name"]: c["metrics"]["0.5"] for c in with_refit["curves"]}
    assert set(refit) == {c.name for c in plain.curves} == {"conv0", "conv1"}
    assert all(refit[c.name] > c.metrics[0.5] for c in plain.curves)  # refit points lose less fidelity
    assert run_cli(["sensitivity", str(model), "--data", str(images), "--calib", str(images)]) == 2


def test_allocation_reads_the_budget_as_relative_or_absolute():
    """Baseline 0.5; pruning `a` at 0.5 costs 0.004 (0.8% relative), `b` at 0.5 costs 0.02 (4%)."""
    curves = (LayerCurve("a", 100, {0.5: 0.496}), LayerCurve("b", 100, {0.5: 0.48}))
    result = SensitivityResult("m.onnx", "k", "magnitude", "fidelity", "cosine", 0.5, (0.5,), curves)
    assert allocate(result, Budget.parse("1%")) == {"a": 0.5}  # 1% of 0.5 = 0.005 allows only `a`
    assert allocate(result, Budget.parse("0.03abs")) == {"a": 0.5, "b": 0.5}  # 0.024 <= 0.03
    assert allocate(result, Budget.parse("0.5%")) == {}
    with pytest.raises(Exception, match="allocate takes a Budget"):
        allocate(result, 0.01)  # type: ignore[arg-type]


def test_sensitivity_takes_max_drop_in_the_one_grammar(model, images, capsys):
    assert run_cli(["sensitivity", str(model), "--data", str(images), "--max-drop", "5"]) == 2
    err = capsys.readouterr().err
    assert "Error:" in err and "ambiguous" in err and "Traceback" not in err
    assert run_cli(["sensitivity", str(model), "--data", str(images), "--budget", "0.01"]) == 2  # the old spelling
