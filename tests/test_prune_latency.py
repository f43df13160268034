"""Latency-driven channel pruning: measured per-group cost, cheap sensitivity curves, allocation and its pass.
Tiny graphs are built in code; costs are measured on the real runtimes (in child processes), never mocked."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cvtune.compress import (
    ChannelConfig,
    allocate_channels,
    channel_curves,
    cut_channels,
    profile_cost,
    prune_channels,
    reconstruct,
    verify_allocation,
)
from cvtune.compress.curves import (
    _cut_and_measure,
    _seeds,
    evaluate_model,
    keep_by_score,
    single_group_plan,
)
from cvtune.compress.graph import prepare, run_tensors
from cvtune.compress.plan import analyze_channels
from cvtune.errors import UsageError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Profiles and curves are cached on disk: each test gets its own cache folder."""
    monkeypatch.setenv("CVTUNE_CACHE_DIR", str(tmp_path / "cache"))


def conv(name: str, x: str, w: np.ndarray, out: str, **attrs) -> tuple[onnx.NodeProto, onnx.TensorProto]:
    k = w.shape[-1]
    return (helper.make_node("Conv", [x, f"{name}.w"], [out], name=name, kernel_shape=[k, k], pads=[k // 2] * 4,
                             **attrs), numpy_helper.from_array(w.astype(np.float32), f"{name}.w"))


def chain(specs: list[tuple[int, int]], *, size: int, seed: int = 0, head: int | None = None) -> onnx.ModelProto:
    """x(1,3,size,size) -> [Conv(k x k, c_out) -> Relu] per spec -> (optional GlobalAveragePool -> 1x1 Conv to
    `head` classes -> Flatten) -> y."""
    rng = np.random.default_rng(seed)
    nodes, inits, x, c_in = [], [], "x", 3
    for i, (c_out, k) in enumerate(specs):
        node, w = conv(f"conv{i}", x, rng.standard_normal((c_out, c_in, k, k)) / np.sqrt(c_in * k * k), f"c{i}")
        nodes += [node, helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        inits.append(w)
        x, c_in = f"r{i}", c_out
    if head:
        node, w = conv("fc", "pool", rng.standard_normal((head, c_in, 1, 1)) / np.sqrt(c_in), "logits4")
        nodes += [helper.make_node("GlobalAveragePool", [x], ["pool"], name="gap"), node,
                  helper.make_node("Flatten", ["logits4"], ["y"], name="flat")]
        inits.append(w)
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, head])
    else:
        out = helper.make_tensor_value_info(x, TensorProto.FLOAT, [None] * 4)
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                              [1, 3, size, size])], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random images (blurred noise): structured enough that channels differ in importance."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.standard_normal((size, size, 3)).astype(np.float32)
        x = cv2.GaussianBlur(x, (0, 0), 2.0) * 3
        out.append(np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32))
    return out


# ---- cost ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("runtime", ["ort", "opencv"])
def test_measured_cost_ranks_a_deliberately_expensive_layer_first(runtime):
    # x -> conv0 (3->32, 9x9: the expensive one) -> relu -> conv1 (32->16, 1x1) -> relu -> conv2 (16->16, 1x1)
    #   -> relu -> conv3 (16->8, 1x1) -> y.   Groups: conv0 (32 ch), conv1 (16), conv2 (16).
    model = chain([(32, 9), (16, 1), (16, 1), (8, 1)], size=96)
    costs = profile_cost(model, runtime, (1, 3, 96, 96))
    ranking = costs.ranking()
    assert ranking[0][0] == "conv0", ranking
    assert ranking[0][1] > 2 * ranking[1][1]  # it costs more than twice the next group
    # cutting the expensive group is predicted to save much more than cutting a cheap one
    assert costs.saving({"conv0": 0.5}) > 2 * costs.saving({"conv1": 0.5}) > 0
    again = profile_cost(model, runtime, (1, 3, 96, 96))  # measured once, then read from the cache
    assert again.ranking() == ranking


def test_cost_refuses_a_runtime_without_a_profiler():
    pytest.importorskip("openvino")
    with pytest.raises(UsageError, match="no per-layer profiler for runtime 'openvino'; measured costs exist for"):
        profile_cost(chain([(8, 3), (4, 1)], size=16), "openvino", (1, 3, 16, 16))


# ---- sensitivity curves --------------------------------------------------------------------------------------

def test_a_curve_point_from_cached_tensors_equals_cutting_and_running_the_whole_model():
    # The cheap path (refit from cached activations, run only the graph after the cut) must give the same outputs
    # as cutting, reconstructing and running the full model.
    model = prepare(chain([(16, 3), (16, 3), (24, 3), (8, 3)], size=24))
    calib = images(4, 24)
    analysis = analyze_channels(model, input_shape=(1, 3, 24, 24))
    group = next(g for g in analysis.groups if g.name == "conv1")
    keep = keep_by_score(np.arange(16.0), 16, 0.5, 8)
    plan = single_group_plan(analysis, group, keep, input_shape=(1, 3, 24, 24), importance="l1")
    tensors = sorted({v.name for v in model.graph.output} | {o for n in model.graph.node for o in n.output})
    cached = {t: [] for t in tensors}
    for values in run_tensors(model, tensors, calib):
        for t in tensors:
            cached[t].append(values[t])
    cached["x"] = calib
    reference = evaluate_model(model, calib)
    outputs = [o.name for o in model.graph.output]
    cheap = _cut_and_measure(model, plan, group, _seeds(analysis, "conv1"), cached, calib, outputs, reference,
                             1e-2, 4096)
    full, _ = reconstruct(model, cut_channels(model, plan, check=False), plan, calib, max_rows=4096)
    for a, b in zip(cheap, evaluate_model(full, calib), strict=True):
        assert np.abs(a[0] - b[0]).max() < 1e-4 * max(1.0, np.abs(b[0]).max())


def test_curves_are_measured_per_group_with_rounding_and_cached():
    model = chain([(16, 3), (32, 3), (6, 3), (8, 1)], size=24)
    calib = images(3, 24)
    curves = channel_curves(model, calib, levels=(0.25, 0.5, 0.75), round_to=8, importance="l1")
    names = [c.name for c in curves.curves]
    assert names == ["conv0", "conv1"]  # conv2's 6 channels cannot lose a multiple of 8
    assert curves.left_alone == (("conv2", "6 channels: no level cuts a whole multiple of 8"),)
    assert [p.ratio for p in curves.curve("conv0").points] == [0.5]  # 16 -> 8 only
    assert [p.ratio for p in curves.curve("conv1").points] == [0.25, 0.5, 0.75]
    nmse = [p.nmse for p in curves.curve("conv1").points]
    assert 0 < nmse[0] < nmse[-1]  # cutting more hurts more
    assert curves.measure == "cosine" and all(0 < p.agreement <= 1 for c in curves.curves for p in c.points)
    assert channel_curves(model, calib, levels=(0.25, 0.5, 0.75), round_to=8, importance="l1") == curves
    other = channel_curves(model, calib[:2], levels=(0.25, 0.5, 0.75), round_to=8, importance="l1")
    assert other.key != curves.key  # other calibration tensors: measured again


# ---- allocation ------------------------------------------------------------------------------------------------

def test_an_allocation_never_exceeds_its_predicted_drop_by_more_than_the_ci():
    # a tiny classifier: 4 conv groups, a pooled 1x1 head; agreement = top-1 agreement with the original
    max_drop = 0.1
    model = chain([(16, 3), (32, 3), (32, 3), (24, 3)], size=24, head=10, seed=3)
    calib = images(32, 24, seed=1)
    curves = channel_curves(model, calib, task="classify", round_to=8, importance="activation")
    assert curves.measure == "classify"
    costs = [profile_cost(model, "ort", (1, 3, 24, 24), round_to=8)]
    alloc = allocate_channels(curves, costs, max_drop=max_drop)
    assert alloc.ratios, "the budget allows some cut"
    assert alloc.drop <= max_drop + 1e-9 and alloc.saving["ort"] > 0
    pruned, _ = prune_channels(model, ChannelConfig(ratios=alloc.ratios, importance="activation", round_to=8),
                               calib=calib, input_shape=(1, 3, 24, 24))
    real = verify_allocation(model, pruned, calib, task="classify")
    half_ci = (real["ci95"][1] - real["ci95"][0]) / 2
    assert real["drop"] <= alloc.drop + half_ci + 1e-9, (real, alloc.to_dict())


def test_a_latency_target_is_met_in_prediction_with_the_least_damage_first():
    model = chain([(32, 9), (16, 3), (16, 3), (8, 1)], size=48)
    calib = images(2, 48)
    curves = channel_curves(model, calib, round_to=8, importance="l1")
    costs = [profile_cost(model, "ort", (1, 3, 48, 48), round_to=8)]
    small, large = (allocate_channels(curves, costs, target=t) for t in (0.1, 0.4))
    assert small.saving["ort"] >= 0.1 or small.notes
    assert large.saving["ort"] >= small.saving["ort"] and large.nmse >= small.nmse
    with pytest.raises(UsageError, match="exactly one of"):
        allocate_channels(curves, costs, target=0.2, max_drop=0.01)


# ---- the pass ----------------------------------------------------------------------------------------------------

def test_channel_allocate_pass_plans_deterministically_and_cuts_what_it_planned(tmp_path):
    from cvtune.data.calibration import CalibrationSet
    from cvtune.passes import BuildContext, ChannelAllocate, pass_choice

    model = chain([(32, 5), (16, 3), (16, 3), (8, 1)], size=32)
    tensors = tuple(images(8, 32))
    ctx = BuildContext((1, 3, 32, 32), tmp_path, lambda need: CalibrationSet("x", tensors[: need.count], "test"))
    p = pass_choice("prune-30", "prune")
    assert p == ChannelAllocate(target=0.3) and p.calibration().count == 8
    first, second = p.plan(model, ctx), p.plan(model, ctx)
    assert first == second and first.ratios
    out = p.apply(model, ctx, first)
    assert out.info["channels_pruned"] > 0
    info = out.info["allocation"]
    assert dict(first.ratios) == info["ratios"] and 0 < info["verified"]["agreement"] <= 1
    pruned = {n.name: numpy_helper.to_array(next(i for i in out.model.graph.initializer if i.name == n.input[1]))
              for n in out.model.graph.node if n.op_type == "Conv"}
    for name, ratio in first.ratios:
        channels = {"conv0": 32, "conv1": 16, "conv2": 16}[name]
        assert pruned[name].shape[0] == round(channels * (1 - ratio))
    assert p.label() == "prune -30% latency (ort+opencv)"
    with pytest.raises(UsageError):
        ChannelAllocate(target=1.5)
    with pytest.raises(UsageError, match="measures cost on"):
        ChannelAllocate(runtimes=("tflite",))


# ---- the command line --------------------------------------------------------------------------------------------

def test_prune_save_latency_allocates_from_measured_cost_and_refuses_bad_combinations(tmp_path, capsys):
    import json

    import cv2

    from cvtune.cli import run_cli

    model = tmp_path / "chain.onnx"
    onnx.save(chain([(32, 5), (16, 3), (16, 3), (8, 1)], size=32), str(model))
    folder = tmp_path / "images"
    folder.mkdir()
    for i, x in enumerate(images(4, 32)):
        cv2.imwrite(str(folder / f"img_{i}.png"), np.clip(x[0].transpose(1, 2, 0) * 40 + 128, 0, 255).astype(np.uint8))
    out = tmp_path / "pruned.onnx"
    capsys.readouterr()
    assert run_cli(["prune", str(model), "-o", str(out), "--method", "channel", "--save-latency", "0.3", "--calib",
                    str(folder), "--cost-runtimes", "ort", "--json"]) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    ratios = report["allocation"]["ratios"]
    assert ratios and report["allocation"]["predicted_saving"]["ort"] > 0
    kept = {g["name"]: g["kept"] for g in report["plan"]["groups"]}
    assert all(kept[name] % 8 == 0 and kept[name] < {"conv0": 32, "conv1": 16, "conv2": 16}[name]
               for name in ratios)
    for args, message in ((["--save-latency", "0.3"], "add --calib DIR"),
                          (["--save-latency", "0.3", "--ratio", "0.2", "--calib", str(folder)], "drop --ratio"),
                          (["--save-latency", "1.5", "--calib", str(folder)], "in (0, 1)")):
        capsys.readouterr()
        assert run_cli(["prune", str(model), "-o", str(tmp_path / "x.onnx"), "--method", "channel", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_sensitivity_cost_prices_groups_by_measured_latency(tmp_path, capsys):
    import json

    import cv2

    from cvtune.cli import run_cli

    model = tmp_path / "chain.onnx"
    onnx.save(chain([(32, 9), (16, 1), (16, 1), (8, 1)], size=32), str(model))
    folder = tmp_path / "images"
    folder.mkdir()
    for i, x in enumerate(images(3, 32)):
        cv2.imwrite(str(folder / f"img_{i}.png"), np.clip(x[0].transpose(1, 2, 0) * 40 + 128, 0, 255).astype(np.uint8))
    capsys.readouterr()
    assert run_cli(["sensitivity", str(model), "--data", str(folder), "--method", "channel", "--levels", "0.5",
                    "--cost", "ort", "--input-shape", "1x3x32x32", "-o", str(tmp_path / "s.json"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    costs = {c["name"]: c["cost"] for c in result["curves"]}
    assert max(costs, key=costs.get) == "conv0" and costs["conv0"] > 2 * costs["conv1"] > 0


# ---- real models (families the project is tested on) ----------------------------------------------------------

def test_yolo_detector_curves_and_allocated_cut_run_in_both_runtimes(real_models, tmp_path):
    from cvtune.compress import plan_channels
    from cvtune.model import load_onnx, save_onnx
    from cvtune.runtimes import make_runtime

    model = load_onnx(real_models["nudenet-320n"])  # the shared fixture (tests/real_models.py)
    plan = plan_channels(model, ratio=0.25, input_shape=(1, 3, 320, 320))
    assert len(plan.groups) > 10 and plan.skipped  # the detect head (Split/Reshape/Concat) is left alone ...
    assert all(s.reason for s in plan.skipped)  # ... with the reason
    calib = images(1, 320)
    first = [g.name for g in plan.groups[:2]]
    curves = channel_curves(model, calib, task="detect", levels=(0.5,), groups=first)
    assert [c.name for c in curves.curves] == first and curves.measure == "detect"
    pruned, _ = prune_channels(model, ChannelConfig(ratios=tuple((g, 0.5) for g in first), importance="activation",
                                                    round_to=8), calib=calib, input_shape=(1, 3, 320, 320))
    path = save_onnx(pruned, tmp_path / "yolo.onnx")
    for runtime in (make_runtime("ort"), make_runtime("opencv")):
        session = runtime.open(path)
        assert session.run(calib[0])[0].shape == evaluate_model(model, calib)[0][0].shape, runtime.label()
        session.close()


def test_ridge_search_keeps_the_ridge_with_the_smallest_held_out_error():
    model = chain([(16, 3), (32, 3), (8, 3)], size=24)
    calib = images(4, 24)
    plan = single_group_plan(analyze_channels(prepare(model), input_shape=(1, 3, 24, 24)),
                             analyze_channels(prepare(model), input_shape=(1, 3, 24, 24)).groups[1],
                             range(16), input_shape=(1, 3, 24, 24), importance="l1")
    cut = cut_channels(model, plan)
    _, fixed = reconstruct(model, cut, plan, calib)
    _, searched = reconstruct(model, cut, plan, calib, ridge_search=True)
    assert fixed.layers[0].mode == "least squares" and "ridge" in searched.layers[0].mode
    assert searched.layers[0].error_fit <= fixed.layers[0].error_fit + 1e-12  # the fixed ridge is one of the tried


def test_a_zero_drop_budget_cuts_nothing_and_the_pass_leaves_the_model_alone(tmp_path):
    from cvtune.data.calibration import CalibrationSet
    from cvtune.passes import BuildContext, ChannelAllocate

    model = chain([(32, 5), (16, 3), (8, 1)], size=32)
    tensors = tuple(images(4, 32))
    ctx = BuildContext((1, 3, 32, 32), tmp_path, lambda need: CalibrationSet("x", tensors[: need.count], "test"))
    out = ChannelAllocate(max_drop=0.0, runtimes=("ort",)).apply(model, ctx)
    assert out.info["channels_pruned"] == 0 and out.model is model
