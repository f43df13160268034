"""LiteRT, a .tflite's own interpreter, as a runtime: it agrees with OpenCV on real MediaPipe models (outputs in
cvtune's NCHW convention), refuses what it cannot run with one clear error, and is the baseline a search on a
.tflite counts its speed-ups from."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cvtune.errors import ModelError
from cvtune.runtimes import RUNTIMES, make_runtime
from cvtune.runtimes.opencv import reference_engine

pytestmark = pytest.mark.skipif("litert" not in RUNTIMES, reason="ai-edge-litert has no wheel for this platform")

TFLITE = ("palm-detection-lite", "face-detection-short-range", "selfie-segmentation")


@pytest.mark.parametrize("name", TFLITE)
def test_litert_computes_what_opencv_computes_on_real_tflite_models(name, real_models):
    model = real_models[name]
    litert = make_runtime("litert", threads=1).open(model)
    opencv = make_runtime("opencv", engine=reference_engine()).open(model)  # every output, in the file's order
    x = np.random.default_rng(0).random(litert.shape, dtype=np.float32)  # NHWC, as the file declares
    ours, theirs = litert.run(x), opencv.run(x)
    assert [o.shape for o in ours] == [o.shape for o in theirs]  # 4-D outputs NCHW, like every cvtune runtime
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)
    again = litert.run(x.transpose(0, 3, 1, 2))  # an NCHW batch of the same image is the same input
    assert all(np.array_equal(a, b) for a, b in zip(ours, again, strict=True))


def test_litert_refuses_what_it_cannot_run_with_one_clear_error(real_models, det_model):
    session = make_runtime("litert").open(real_models["face-detection-short-range"])
    with pytest.raises(ModelError, match="fixes its input shape"):
        session.run(np.zeros((2, 128, 128, 3), np.float32))  # MediaPipe's detector has a batch of 1
    with pytest.raises(ModelError, match="runs .tflite files only"):
        make_runtime("litert").open(det_model)


def test_a_search_on_a_tflite_counts_from_litert_and_exports_a_model_it_runs(tmp_path, real_models, real_photos):
    import cvtune

    result = cvtune.optimize(real_models["face-detection-short-range"], real_photos[0].parent,
                             task="fidelity", task_options={"decoder": "blazeface"},
                             preprocess="letterbox=128x128,pad=0,scale=1/127.5,mean=1,rgb,nhwc", time=90,
                             out=tmp_path / "opt", preset="quick", runtimes=("ort", "litert"), threads=(1,),
                             transforms=(), max_trials=2)
    assert result.baseline.candidate.runtime.name == "litert"
    assert any("file's own runtime" in note for note in result.notes)
    assert result.baseline.metric.value == 1.0  # LiteRT is the reference fidelity compares with
    deploy = json.loads((tmp_path / "opt" / "best" / "deploy.json").read_text())
    deployed = cvtune.load_deployed(tmp_path / "opt" / "best" / "deploy.json")
    try:
        assert deployed.runtime.name == deploy["runtime"]["runtime"]
        agreement = deployed.predict(cv2.imread(str(real_photos[0])))  # fidelity: the row against the original
        right, n_pred, found, n_faces = agreement["row"]  # the astronaut's face, found by the deployed answer
        assert n_faces >= 1 and agreement["reference_row"] == [n_faces] * 4 and found == n_faces
    finally:
        deployed.close()
