"""Quantization: tiny graphs built in code, the zoo's real classifier and detector, the CLI, and bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from cvtune.budget import Budget
from cvtune.cli import run_cli
from cvtune.data.calibration import CalibrationNeed, calibration_set, random_calibration
from cvtune.errors import ModelError, UsageError
from cvtune.quantize import (
    DynamicConfig,
    Fp16Config,
    StaticConfig,
    fp32_kernel_ops,
    locate_harmful,
    quantize,
    quantize_with_accuracy_control,
    sidecar_path,
)
from cvtune.runtimes import runtime_from_dict
from cvtune.tasks.fidelity import cosine

# ---------------------------------------------------------------------------------------------- tiny graphs


def conv_relu_conv(path: Path, *, opset: int = 13, harmful: bool = False, seed: int = 0) -> Path:
    """x(1,3,16,16) -> conv0 (3->8, 3x3) -> relu0 -> conv1 (8->8, 3x3) -> relu1 -> conv2 (8->4, 3x3) -> y.

    harmful=True: conv0's channel 7 is always negative (so relu0 zeroes it) and conv1 has a weight of 1000 on that
    dead channel: the float output does not change, but per-tensor int8 of conv1 rounds every other weight to 0."""
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.5
    b0 = np.zeros(8, np.float32)
    w1 = rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.3
    if harmful:
        b0[7] = -1000.0
        w1[:, 7, 1, 1] = 1000.0
    w2 = rng.standard_normal((4, 8, 3, 3)).astype(np.float32) * 0.3
    inits = [numpy_helper.from_array(a, n) for a, n in ((w0, "w0"), (b0, "b0"), (w1, "w1"), (w2, "w2"))]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
         helper.make_node("Conv", ["r0", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
         helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])],
        "conv_relu_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def matmul_head(path: Path) -> Path:
    """x(1,3,4,4) -> Reshape(1,48) -> MatMul W(48,10) -> Add b -> y(1,10): a MatMul-heavy model."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(np.array([1, 48], np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((48, 10)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "b")]
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["flat"], name="flatten"),
         helper.make_node("MatMul", ["flat", "w"], ["mm"], name="matmul0"),
         helper.make_node("Add", ["mm", "b"], ["y"], name="bias0")],
        "matmul_head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, str(path))
    return path


def relu_only(path: Path) -> Path:
    """x(1,3,8,8) -> Relu -> y: nothing to quantize."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "relu_only",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, str(path))
    return path


def op_types(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Eight small smooth colour images (what a camera folder looks like to a 16x16 model)."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(8):
        small = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img{i}.png"), cv2.resize(small, (32, 32), interpolation=cv2.INTER_CUBIC))
    return folder


@pytest.fixture(scope="module")
def text_lines(tmp_path_factory) -> Path:
    """Twelve 48x192 text-line crops, every other one upside down: what the PP-OCR orientation classifier sees."""
    folder = tmp_path_factory.mktemp("lines")
    rng = np.random.default_rng(0)
    words = ["hello world", "cvtune 0.25", "TOTAL 12.50", "orientation", "2024-01-05", "quantize me"]
    for i in range(12):
        image = np.full((48, 192, 3), rng.integers(150, 255, 3), np.uint8)
        ink = tuple(int(c) for c in rng.integers(0, 90, 3))
        cv2.putText(image, words[i % len(words)], (4, 33), cv2.FONT_HERSHEY_SIMPLEX, 0.9, ink, 2)
        if i % 2:
            image = cv2.rotate(image, cv2.ROTATE_180)
        cv2.imwrite(str(folder / f"line{i:02d}.png"), image)
    return folder


# ---------------------------------------------------------------------------------------------- tiny graphs


def test_static_qdq_and_qoperator_on_a_tiny_conv_graph(tmp_path, photos):
    model = conv_relu_conv(tmp_path / "tiny.onnx")
    calib = calibration_set(model, photos, CalibrationNeed(count=6))
    assert len(calib) == 6 and calib.head(1)[0].shape == (1, 3, 16, 16)
    x = calib.head(1)[0]

    qdq = quantize(model, tmp_path / "tiny_qdq.onnx", StaticConfig(format="qdq"), calibration=calib, probe=False)
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types(qdq.output)
    assert cosine(run_ort(model, x), run_ort(qdq.output, x)) > 0.99
    assert qdq.quantized_nodes == 3 and qdq.method == "static"

    qop = quantize(model, tmp_path / "tiny_qop.onnx", StaticConfig(format="qoperator"), calibration=calib,
                   probe=False)
    assert "QLinearConv" in op_types(qop.output) and "Conv" not in op_types(qop.output)
    assert cosine(run_ort(model, x), run_ort(qop.output, x)) > 0.99
    assert qop.settings["activation_type"] == "u8"  # ORT's advice for QOperator on x86


def test_per_channel_on_an_old_opset_raises_it_so_ort_loads_the_result(tmp_path, photos):
    # opset 12: a per-channel DequantizeLinear's `axis` is not allowed there, which ORT rejected (DESIGN.md)
    model = conv_relu_conv(tmp_path / "old.onnx", opset=12)
    calib = calibration_set(model, photos, CalibrationNeed(count=4))
    result = quantize(model, tmp_path / "old_pc.onnx", StaticConfig(per_channel=True), calibration=calib,
                      probe=False)
    assert any("opset 12 -> 13" in n for n in result.notes)
    dq_axes = [a.i for n in onnx.load(str(result.output)).graph.node if n.op_type == "DequantizeLinear"
               for a in n.attribute if a.name == "axis"]
    assert dq_axes, "per-channel weights carry an axis"
    x = calib.tensors()[1]
    assert cosine(run_ort(model, x), run_ort(result.output, x)) > 0.99


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_every_calibration_method_produces_a_close_model(tmp_path, photos, method):
    model = conv_relu_conv(tmp_path / "tiny.onnx")
    calib = calibration_set(model, photos, CalibrationNeed(count=4))
    result = quantize(model, tmp_path / f"{method}.onnx", StaticConfig(calibrate=method), calibration=calib,
                      probe=False)
    assert result.settings["calibrate"] == method
    assert result.fidelity["cosine_min"] > 0.98


def test_dynamic_int8_quantizes_matmul_weights(tmp_path):
    model = matmul_head(tmp_path / "head.onnx")
    result = quantize(model, tmp_path / "head_dyn.onnx", DynamicConfig(), probe=False)
    ops = op_types(result.output)
    assert "MatMul" not in ops and ({"MatMulInteger", "DynamicQuantizeMatMul"} & ops)
    x = np.random.default_rng(2).random((1, 3, 4, 4), dtype=np.float32)
    assert cosine(run_ort(model, x), run_ort(result.output, x)) > 0.99
    assert result.calibration is None


def test_the_sidecar_records_method_sizes_and_probe(tmp_path, photos):
    model = conv_relu_conv(tmp_path / "tiny.onnx")
    calib = calibration_set(model, photos, CalibrationNeed(count=3))
    result = quantize(model, tmp_path / "out" / "tiny_int8.onnx", StaticConfig(exclude=("conv2",)),
                      calibration=calib, probe_shape=(1, 3, 16, 16))
    assert result.sidecar == tmp_path / "out" / "tiny_int8.quant.json" == sidecar_path(result.output)
    data = json.loads(result.sidecar.read_text())
    assert data["method"] == "static" and data["settings"]["format"] == "qdq"
    assert data["excluded"] == ["conv2"] and data["calibration"]["images"] == 3
    assert data["sizes"]["output_bytes"] == result.output.stat().st_size
    assert {p["label"] for p in data["probe"]} >= {"ort:cpu"}
    assert data["runs_on"] == [p["label"] for p in data["probe"] if p["ok"]]
    assert "ort:cpu" in data["runs_on"]
    # conv2 stayed in float: it is still a plain Conv reading a dequantized input
    graph = onnx.load(str(result.output)).graph
    assert [n.op_type for n in graph.node if n.name == "conv2"] == ["Conv"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny_int8.onnx", "tiny_int8.quant.json"]


# ---------------------------------------------------------------------------------------------- accuracy-aware


def fidelity_validator(reference: Path, inputs: list[np.ndarray]):
    ref = [run_ort(reference, x) for x in inputs]
    return lambda path: float(np.mean([cosine(r, run_ort(path, x)) for r, x in zip(ref, inputs, strict=True)]))


def test_accuracy_aware_mode_keeps_the_harmful_layer_in_float(tmp_path):
    model = conv_relu_conv(tmp_path / "fragile.onnx", harmful=True)
    calib = random_calibration(model, n=4)
    validate = fidelity_validator(model, random_calibration(model, n=3, seed=7).tensors())
    plain = quantize(model, tmp_path / "plain.onnx", StaticConfig(), calibration=calib, probe=False)
    assert validate(plain.output) < 0.95  # all-int8 really is broken

    result, report = quantize_with_accuracy_control(model, tmp_path / "aware.onnx", StaticConfig(), calib, validate,
                                                    max_drop=Budget.parse("0.01abs"), probe=False)
    assert report.met and report.best.kept_float == ("conv1",)
    assert [f.name for f in report.found] == ["conv1"]
    assert report.steps[0].drop > 0.05 and report.best.drop <= 0.01
    assert validate(result.output) >= report.baseline - 0.01
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["excluded"] == ["conv1"] and sidecar["accuracy"]["met"] is True
    assert len(sidecar["accuracy"]["steps"]) == 2


def test_accuracy_aware_mode_reports_the_closest_when_the_budget_is_out_of_reach(tmp_path):
    model = conv_relu_conv(tmp_path / "fragile.onnx", harmful=True)
    calib = random_calibration(model, n=4)
    validate = fidelity_validator(model, calib.head(2))
    result, report = quantize_with_accuracy_control(model, tmp_path / "aware.onnx", StaticConfig(), calib, validate,
                                                    max_drop=Budget.parse("0%"), max_steps=1, probe=False)
    assert not report.met and len(report.steps) == 2
    assert "no tried configuration is within" in report.summary()
    assert report.best.metric == max(s.metric for s in report.steps)
    assert result.output.is_file()


def test_locate_harmful_descends_into_the_half_that_loses_more():
    drops = {"a": 0.0, "b": 0.01, "c": 0.3, "d": 0.0}
    name, drop, evaluations = locate_harmful(list(drops), 0.31, lambda group: sum(drops[g] for g in group))
    assert (name, evaluations) == ("c", 2) and drop == pytest.approx(0.3)


# ---------------------------------------------------------------------------------------------- real models


def test_cls_model_int8_stays_close_and_the_probe_tells_the_truth(tmp_path, cls_model, text_lines):
    calib = calibration_set(cls_model, text_lines, CalibrationNeed(count=8))
    result = quantize(cls_model, tmp_path / "cls_int8.onnx", StaticConfig(per_channel=True), calibration=calib,
                      probe_shape=(1, 3, 48, 192))
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(result.op_counts)
    unseen = [p for p in sorted(text_lines.iterdir()) if p not in calib.stream.paths]  # never used for calibration
    held_out = calibration_set(cls_model, unseen, CalibrationNeed(count=len(unseen))).tensors()
    assert len(held_out) == 4
    ref = [run_ort(cls_model, x) for x in held_out]
    got = [run_ort(result.output, x) for x in held_out]
    assert min(cosine(r, g) for r, g in zip(ref, got, strict=True)) > 0.99
    assert [r.argmax() for r in ref] == [g.argmax() for g in got]
    # the file holds int8 weights, but on a 0.6 MB model the graph itself is a visible share (see the report)
    assert result.size_ratio < 0.5
    assert result.probe and any(p.ok for p in result.probe)
    for claim in result.probe:
        if claim.ok:  # what the probe says runs must run here too, with the shapes it reported
            session = runtime_from_dict(claim.runtime).open(result.output)
            outputs = session.run(held_out[0])
            assert [list(np.asarray(o).shape) for o in outputs] == claim.output_shapes
            session.close()


@pytest.mark.parametrize("config", [StaticConfig(format="qoperator"), StaticConfig(format="qdq")],
                         ids=["qoperator", "qdq"])
def test_det_model_int8_is_at_most_30_percent_of_the_float_file(tmp_path, det_model, config):
    calib = random_calibration(det_model, (1, 3, 64, 64), n=1)  # sizes do not depend on calibration data
    result = quantize(det_model, tmp_path / "det_int8.onnx", config, calibration=calib, probe=False)
    assert result.size_ratio <= 0.30, result.notes
    assert result.output_bytes == result.output.stat().st_size


def test_fp16_checks_the_kernels_this_onnxruntime_has(tmp_path):
    model = conv_relu_conv(tmp_path / "tiny.onnx")
    try:
        strict = quantize(model, tmp_path / "strict.onnx", Fp16Config(), probe=False)
    except ModelError as exc:
        assert "no fp16 kernel" in str(exc) and "fp32 kernels" in str(exc)
        assert not (tmp_path / "strict.onnx").exists()
    else:  # a CPU/ORT with fp16 kernels for every op (e.g. ARM): then nothing ran in fp32
        assert not strict.extra["fp16"]["fp32_kernel_ops"]
    result = quantize(model, tmp_path / "half.onnx", Fp16Config(allow_fp32_kernels=True), probe=False)
    graph = onnx.load(str(result.output)).graph
    assert graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # float32 I/O kept
    assert {t.data_type for t in graph.initializer} == {TensorProto.FLOAT16}
    assert result.extra["fp16"]["fp32_kernel_ops"] == fp32_kernel_ops(result.output)
    assert result.fidelity["cosine_min"] > 0.999


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_quantizes_with_calibration_images_and_prints_json(tmp_path, photos, capsys):
    model = conv_relu_conv(tmp_path / "tiny.onnx")
    out = tmp_path / "tiny_int8.onnx"
    code = run_cli(["quantize", str(model), "-o", str(out), "--calib", str(photos), "--calib-size", "4",
                    "--format", "qoperator", "--per-channel", "--calibrate", "percentile", "--no-probe", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["format"] == "qoperator" and data["settings"]["per_channel"] is True
    assert data["calibration"]["images"] == 4 and data["probe"] == []
    assert json.loads(sidecar_path(out).read_text())["output"] == str(out)


@pytest.mark.parametrize("text, relative", [("1%", True), ("0.01abs", False)])
def test_cli_max_drop_is_relative_with_a_percent_and_absolute_with_abs(tmp_path, photos, capsys, text, relative):
    model = conv_relu_conv(tmp_path / "fragile.onnx", harmful=True)
    out = tmp_path / "aware.onnx"
    code = run_cli(["quantize", str(model), "-o", str(out), "--calib", str(photos), "--max-drop", text,
                    "--no-probe"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "within budget" in captured.out and "conv1" in captured.out
    # one folder: a seeded split calibrates on 2 of the 8 photos and evaluates on the other 6
    assert "2 image(s) calibrate, 6 evaluate" in " ".join(captured.err.split())
    sidecar = json.loads(sidecar_path(out).read_text())
    # the harmful layer goes back to float first; raw-output similarity may ask for more before 1% holds
    assert sidecar["excluded"][0] == "conv1" and sidecar["calibration"]["images"] == 2
    assert sidecar["accuracy"]["met"] is True
    assert sidecar["accuracy"]["max_drop"] == {"value": pytest.approx(0.01), "relative": relative}
    assert sidecar["accuracy"]["evaluated_on"].startswith("6 image(s)")


def test_cli_limit_caps_the_evaluation_split(tmp_path, photos, capsys):
    model = conv_relu_conv(tmp_path / "tiny.onnx")
    out = tmp_path / "tiny_int8.onnx"
    code = run_cli(["quantize", str(model), "-o", str(out), "--data", str(photos), "--max-drop", "1%",
                    "--limit", "3", "--no-probe", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data["calibration"]["images"] == 2 and data["accuracy"]["evaluated_on"].startswith("3 image(s)")
    assert "--limit 3: 3 evaluated" in " ".join(captured.err.split())


def test_accuracy_control_judges_the_drop_in_the_budgets_units(tmp_path):
    """Float scores 0.5, every int8 step 0.496: a 0.004 absolute drop is 0.8% relative."""
    model = conv_relu_conv(tmp_path / "tiny.onnx")
    calib = random_calibration(model, n=2)

    def validate(path: Path) -> float:
        return 0.5 if path == model else 0.496

    _, absolute = quantize_with_accuracy_control(model, tmp_path / "abs.onnx", StaticConfig(), calib, validate,
                                                 max_drop=Budget.parse("0.005abs"), max_steps=0, probe=False)
    assert absolute.met and absolute.best.drop == pytest.approx(0.004)
    assert "drop 0.0040 abs <= 0.0050 abs" in absolute.summary()
    _, relative = quantize_with_accuracy_control(model, tmp_path / "rel.onnx", StaticConfig(), calib, validate,
                                                 max_drop="0.5%", max_steps=0, probe=False)
    assert not relative.met and relative.best.drop == pytest.approx(0.008)
    assert "within the 0.50% budget" in relative.summary() and "drop 0.80%" in relative.summary()
    _, within = quantize_with_accuracy_control(model, tmp_path / "rel1.onnx", StaticConfig(), calib, validate,
                                               max_drop=Budget.parse("1%"), max_steps=0, probe=False)
    assert within.met


BAD_INPUTS = {
    "no calibration images": ("tiny", ["--calib", "{empty}"], "no images found"),
    "static without images": ("tiny", [], "needs calibration images"),
    "nothing to quantize": ("relu", ["--calib", "{photos}"], "nothing to quantize"),
    "dynamic on a conv model": ("tiny", ["--dynamic"], "use static int8"),
    "already quantized": ("quantized", ["--calib", "{photos}"], "already quantized"),
    "unknown format": ("tiny", ["--calib", "{photos}", "--format", "int4"], "choose one of: qdq, qoperator"),
    "output is the input": ("tiny", ["--calib", "{photos}", "--output-is-input"], "same file as the input"),
    "fp16 and dynamic": ("tiny", ["--fp16", "--dynamic"], "choose one of --dynamic, --fp16 and --nncf"),
    "ambiguous budget": ("tiny", ["--calib", "{photos}", "--max-drop", "5"], "write 5% for a relative drop or 5abs"),
    "unreadable budget": ("tiny", ["--calib", "{photos}", "--max-drop", "lots"], "budget (max drop) 'lots'"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_cli_bad_input_is_one_clear_line_and_leaves_nothing_behind(tmp_path, photos, capsys, case):
    kind, args, message = BAD_INPUTS[case]
    (tmp_path / "empty").mkdir()
    models = {"tiny": lambda: conv_relu_conv(tmp_path / "m.onnx"), "relu": lambda: relu_only(tmp_path / "m.onnx"),
              "quantized": lambda: quantize(conv_relu_conv(tmp_path / "f.onnx"), tmp_path / "m.onnx",
                                            calibration=random_calibration(tmp_path / "f.onnx", n=1),
                                            probe=False).output}
    model = Path(models[kind]())
    before = {p.name: sha(p) for p in tmp_path.iterdir() if p.is_file()}
    out = tmp_path / "out" / "result.onnx"
    if "--output-is-input" in args:
        args, out = [a for a in args if a != "--output-is-input"], model
    args = [a.format(empty=tmp_path / "empty", photos=photos) for a in args]
    code = run_cli(["quantize", str(model), "-o", str(out), "--no-probe", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert "Error:" in err and message in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert {p.name: sha(p) for p in tmp_path.iterdir() if p.is_file()} == before  # inputs untouched


def test_quantizing_never_touches_the_input(tmp_path, det_copy):
    before = sha(det_copy)
    calib = random_calibration(det_copy, (1, 3, 32, 32), n=1)
    quantize(det_copy, tmp_path / "det_q.onnx", StaticConfig(format="qoperator"), calibration=calib, probe=False)
    assert sha(det_copy) == before


def test_config_and_budget_validation():
    with pytest.raises(UsageError, match="choose one of: minmax, entropy, percentile"):
        StaticConfig(calibrate="kl")
    with pytest.raises(UsageError, match="max_drop takes a Budget"):
        quantize_with_accuracy_control("m.onnx", "o.onnx", StaticConfig(), None, lambda p: 1.0, max_drop=0.01)
    assert StaticConfig(format="qoperator", activation_type="s8").resolved().activation_type == "s8"
