"""OpenVINO fp32 and NNCF int8 as candidates of the search, with real OpenVINO and NNCF runs: NNCF's int8 writes an
OpenVINO IR (.xml + .bin) that only the openvino runtime runs, so the space pairs it with that runtime alone; it is
built, probed, measured, exported (best/model.xml + model.bin) and re-measured through deploy.json like any
candidate, and its build is cached for the next search."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_models import conv_chain

import cvtune
from cvtune.errors import UsageError
from cvtune.files import cache_root
from cvtune.passes import NncfInt8, pass_choice
from cvtune.runtimes import make_runtime
from cvtune.search import Candidate, SpaceConfig, build_space
from cvtune.search.space import ModelFacts, space_notes, space_preset
from cvtune.search.store import Store

pytestmark = pytest.mark.skipif(not NncfInt8.available(), reason="needs openvino and nncf installed")

FACTS = ModelFacts(representative_size=(32, 32), resizable=False, dynamic_batch=False)


def test_nncf_int8_goes_with_the_openvino_runtime_only():
    space = SpaceConfig(runtimes=("ort", "openvino"), threads=(1,), transforms=(("precision", (None, NncfInt8())),))
    candidates = build_space(space, FACTS)
    assert {c.runtime.name for c in candidates if c.passes} == {"openvino"}
    assert {c.runtime.name for c in candidates if not c.passes} == {"ort", "openvino"}  # OpenVINO fp32 too
    with pytest.raises(UsageError, match="only openvino"):
        Candidate((NncfInt8(),), make_runtime("ort"))
    assert space_notes(replace(space, runtimes=("ort",))) == [
        "nncf-int8 is left out of the search: only openvino runs its model, and the search's runtimes are ort"]
    default = space_preset("default")  # where OpenVINO and NNCF are installed, the default search tries both
    assert "openvino" in default.runtimes and NncfInt8() in default.slot_values("precision")


def test_qoperator_int8_is_not_paired_with_openvino_which_cannot_convert_it():
    """OpenVINO's ONNX frontend cannot convert QLinearConv / com.microsoft QLinear* (the demo wasted a probe on it);
    QDQ files run there."""
    from cvtune.passes import Int8Static

    space = SpaceConfig(runtimes=("ort", "openvino"), threads=(1,),
                        transforms=(("precision", (None, Int8Static("qoperator"), Int8Static("qdq"))),))
    paired = {(c.runtime.name, c.passes[0].format) for c in build_space(space, FACTS) if c.passes}
    assert paired == {("ort", "qoperator"), ("ort", "qdq"), ("openvino", "qdq")}


@pytest.fixture(scope="module")
def nncf_search(tmp_path_factory):
    """A search over ONNX Runtime and OpenVINO, fp32 and NNCF int8, on a tiny conv model with weights worth
    quantizing and 20 generated images, minimizing size (so int8 wins whatever the machine's load): (model, images,
    result)."""
    root = tmp_path_factory.mktemp("nncf_search")
    model = root / "chain.onnx"
    conv_chain(model, size=32, hidden=256)
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):  # 6 calibrate (NNCF holds some back to check its output), 14 evaluate
        cv2.imwrite(str(images / f"img_{i}.png"), cv2.GaussianBlur(rng.integers(0, 255, (32, 32, 3), np.uint8),
                                                                    (5, 5), 0))
    result = _search(model, images, root / "run")
    return model, images, result


def _search(model: Path, images: Path, out: Path):
    return cvtune.optimize(model, images, task="fidelity", out=out, runtimes="openvino,ort", objective="size",
                           max_drop="5%", time=None, threads=(1,), max_trials=1, final_min_time_s=0.3, eval_images=6,
                           preprocess=cvtune.Preprocessing(input_size=(32, 32), scale=1 / 255, rgb=True),
                           transforms=(("precision", (None, pass_choice("nncf-int8"))),))


def test_nncf_int8_is_measured_exported_as_an_openvino_ir_and_its_deploy_json_runs(nncf_search):
    _, images, result = nncf_search
    with Store.open(result.out, create=False) as store:
        nncf = [t for t in store.trials() if t.candidate.passes and t.rung == "result"]
    assert len(nncf) == 1 and nncf[0].ok and nncf[0].timing.p50_ms > 0 and nncf[0].candidate.runtime.name == "openvino"
    assert result.improved and result.claim["holds"]  # re-measured through deploy.json, on OpenVINO
    best = result.out / "best"
    assert sorted(p.name for p in best.glob("model.*")) == ["model.bin", "model.xml"]
    deploy = json.loads((best / "deploy.json").read_text())
    assert deploy["model"] == "model.xml" and deploy["runtime"]["runtime"] == "openvino"
    assert [t["pass"] for t in deploy["transforms"]] == ["nncf_int8"]
    deployed = cvtune.load_deployed(best)
    try:
        prediction = deployed.predict(cv2.imread(str(images / "img_0.png")))
    finally:
        deployed.close()
    assert prediction["cosine"] > 0.99  # against the original model, on an image int8 was not calibrated on


def test_the_nncf_build_is_cached_for_the_next_search(nncf_search, tmp_path):
    model, images, first = nncf_search
    again = _search(model, images, tmp_path / "again")  # the same model, passes and images: nothing to build
    with Store.open(again.out, create=False) as store:
        key = next(t.model_key for t in store.trials() if t.candidate.passes)
        built = store.model(key)
    cached = Path(built.info["cached_from"])
    assert built.ok and cached.parent == cache_root() / "builds" and cached.suffix == ".xml"
    assert cached.with_suffix(".bin").is_file() and Path(built.path).with_suffix(".bin").is_file()
    assert built.info["file_bytes"] == sum(p.stat().st_size for p in (first.out / "best").glob("model.*"))
    assert (again.out / "best" / "model.bin").read_bytes() == (first.out / "best" / "model.bin").read_bytes()
