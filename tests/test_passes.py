"""Techniques are registered passes: the built-in ones build real models, and a pass defined outside cvtune (here a
toy "scale weights by 1.0" pass in its own module) enters the search space, the build, the report's findings and
deploy.json without a change anywhere else."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

from cvtune.passes import PASSES, BuildContext, ChannelPrune, Simplify, apply_passes, pass_from_dict, slots

TOY_PASS = '''
"""A toy technique: multiply every float weight by `factor` (1.0 changes nothing, which makes it easy to check)."""
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from onnx import numpy_helper

from cvtune.passes import Pass, PassOutput


@dataclass(frozen=True)
class ScaleWeights(Pass):
    name: ClassVar[str] = "toy_scale"
    slot: ClassVar[str] = "toy"
    order: ClassVar[int] = 35
    off_label: ClassVar[str] = "weights as given"
    edits_weights: ClassVar[bool] = True

    factor: float = 1.0

    def apply(self, model, ctx, plan=None):
        for tensor in model.graph.initializer:
            array = numpy_helper.to_array(tensor)
            if array.dtype == np.float32 and array.ndim >= 2:
                tensor.CopyFrom(numpy_helper.from_array(array * np.float32(self.factor), tensor.name))
        return PassOutput(model, {"scaled": self.factor})

    def label(self):
        return f"weights x{self.factor:g}"

    def describe(self):
        return f"weights scaled by {self.factor:g}"


@dataclass(frozen=True)
class TruncateOutput(Pass):
    """A broken technique: the first output loses all but its first column (the search must rule it out)."""

    name: ClassVar[str] = "toy_truncate"
    slot: ClassVar[str] = "toy"
    order: ClassVar[int] = 35
    off_label: ClassVar[str] = "weights as given"

    def apply(self, model, ctx, plan=None):
        from onnx import helper

        out = model.graph.output[0]
        full = out.name + "_full"
        for node in model.graph.node:
            for i, name in enumerate(node.output):
                if name == out.name:
                    node.output[i] = full
        for name, value in (("toy_starts", [0]), ("toy_ends", [1]), ("toy_axes", [1])):
            model.graph.initializer.append(numpy_helper.from_array(np.array(value, np.int64), name))
        model.graph.node.append(helper.make_node("Slice", [full, "toy_starts", "toy_ends", "toy_axes"], [out.name]))
        out.type.tensor_type.shape.dim[1].dim_value = 1
        return PassOutput(model, {})

    def label(self):
        return "truncated output"
'''


@pytest.fixture
def toy_pass(tmp_path, monkeypatch):
    """The toy pass's module on sys.path and PYTHONPATH (the build child imports it by the module it records)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "toy_scale_pass.py").write_text(textwrap.dedent(TOY_PASS))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", f"{folder}:{__import__('os').environ.get('PYTHONPATH', '')}")
    import toy_scale_pass

    yield toy_scale_pass.ScaleWeights
    PASSES.pop("toy_scale", None)
    PASSES.pop("toy_truncate", None)
    sys.modules.pop("toy_scale_pass", None)


def test_builtin_passes_are_registered_with_their_slots():
    assert {"simplify", "channel_prune", "sparsify", "int8_static", "int8_dynamic", "fp16", "nncf_int8",
            "nncf_int8_ac"} <= set(PASSES)
    builtin = [c.name for c in slots()["precision"] if c.__module__.startswith("cvtune.passes.")]
    assert builtin == ["fp16", "int8_dynamic", "int8_static", "nncf_int8",
                                                      "nncf_int8_ac"]
    assert pass_from_dict(ChannelPrune(0.3, "bn").to_dict()) == ChannelPrune(0.3, "bn")


def test_passes_apply_in_build_order_and_report_what_they_did(tmp_path):
    from tiny_models import conv_chain

    model = conv_chain()
    out, info = apply_passes(model, [Simplify(), ChannelPrune(0.5, importance="l1", protect_tail=0,
                                                              reconstruct=False)],
                             BuildContext((1, 3, 16, 16), tmp_path))
    assert list(info) == ["channel_prune", "simplify"]  # pruning first, whatever order they were given in
    assert info["channel_prune"]["channels_pruned"] == 4
    onnx.checker.check_model(out)
    weights = {t.name: t for t in out.graph.initializer}
    assert [d for d in weights["w1"].dims][:2] == [4, 4]  # conv1 now reads 4 of conv0's 8 channels


def test_a_pass_from_outside_cvtune_needs_no_other_change(toy_pass, tmp_path, cls_model, tiny_image_dir):
    from conftest import small_search_config

    from cvtune.report import write_report
    from cvtune.report.data import load_run
    from cvtune.report.findings import compute_findings
    from cvtune.runtimes import make_runtime
    from cvtune.search import SpaceConfig, Store, build_space, optimize
    from cvtune.search.clock import Clock
    from cvtune.search.context import SearchContext
    from cvtune.search.export import deploy_dict
    from cvtune.search.space import ModelFacts
    from cvtune.search.trials import Search

    toy = toy_pass(1.0)
    broken = PASSES["toy_truncate"]()
    space = SpaceConfig(runtimes=("ort",), threads=(1,), transforms=(("toy", (None, toy, broken)),))
    # the space: one candidate with each toy pass, one without
    facts = ModelFacts((48, 192), False)
    assert sorted(str(c.pass_in("toy")) for c in build_space(space, facts)) == sorted(["None", str(toy), str(broken)])

    config = small_search_config(tmp_path / "run", cls_model, tiny_image_dir, space=space)
    result = optimize(config)
    # the build: the toy model was built in a child (which imported the pass by its module) and computes the same
    with Store.open(config.out, create=False) as store:
        built = [m for m in store.models() if m.passes and m.passes[0]["pass"] == "toy_scale"]
        assert len(built) == 1 and built[0].ok and built[0].info["passes"]["toy_scale"]["scaled"] == 1.0
        toy_trials = [t for t in store.trials("result") if t.candidate.pass_in("toy") == toy]
        assert toy_trials and toy_trials[0].ok
        # a candidate whose outputs differ from the original's is ruled out, with the reason, never measured
        cut = [t for t in store.trials("result") if t.candidate.pass_in("toy") == broken]
        assert cut[0].status == "ruled_out" and "outputs differ from the original's" in cut[0].error
        assert "(1, 2)" in cut[0].error or "1x2" in cut[0].error
    # the report: a finding names the pass in its own words
    write_report(config.out)
    texts = [f.text for f in compute_findings(load_run(config.out).best_rows())]
    assert any(t.startswith("weights scaled by 1 was") and "than weights as given" in t for t in texts), texts
    assert "weights x1" in (config.out / "report.html").read_text()
    # deploy.json: the pass with its description and settings
    ctx = SearchContext.load(config)
    with Store.open(config.out, create=False) as store:
        search = Search(ctx, store, Clock(None, 60.0))
        trial = toy_trials[0]
        deploy = deploy_dict(search, trial.candidate, timing=trial, accuracy=trial)
    assert deploy["transforms"] == [{"pass": "toy_scale", "description": "weights scaled by 1",
                                     "settings": {"factor": 1.0}}]
    assert trial.candidate.runtime == make_runtime("ort", threads=1)
    assert json.loads(json.dumps(deploy)) == deploy
    assert Path(config.out / "best" / "deploy.json").is_file() and result.best is not None


def test_each_pass_calibrates_with_what_it_declares_so_prune_then_int8_calibrates_at_full_resolution(tmp_path):
    """Pruning asks for a few downscaled images, int8 for more at the task's resolution, and int8 runs on the
    pruned model: the build hands each pass its own calibration, never the other's."""
    from tiny_models import conv_chain

    from cvtune.data.calibration import CalibrationSet
    from cvtune.passes import CalibrationNeed, Int8Static

    rng = np.random.default_rng(0)
    asked: list[CalibrationNeed] = []

    def calibration(need: CalibrationNeed) -> CalibrationSet:
        asked.append(need)
        tensors = tuple(rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(need.count))
        return CalibrationSet("x", tensors, "random test tensors")

    prune = ChannelPrune(0.5, importance="activation", protect_tail=0)
    int8 = Int8Static(format="qdq")
    out, info = apply_passes(conv_chain(), [int8, prune], BuildContext((1, 3, 16, 16), tmp_path, calibration))
    assert asked == [prune.calibration(), int8.calibration()]
    assert asked[0].count < asked[1].count and asked[0].max_side and asked[1].max_side is None
    assert info["channel_prune"]["reconstructed"] and info["int8_static"]["quantized_nodes"]
    ops = {n.op_type for n in out.graph.node}
    kernels = sorted(list(t.dims) for t in out.graph.initializer if len(t.dims) == 4)
    assert "QuantizeLinear" in ops and kernels == [[4, 3, 3, 3], [4, 4, 3, 3]]  # conv0 cut to 4, conv1 reads 4
