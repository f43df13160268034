"""Where the time goes: per-op-type latency from each runtime's own profiler, measured in a child process."""

from __future__ import annotations

import pytest
from tiny_models import conv_chain

from cvtune.errors import TrialFailed, UsageError
from cvtune.profiling import PROFILERS, profile_model
from cvtune.runtimes import RUNTIMES, make_runtime


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    path = tmp_path_factory.mktemp("profiling") / "chain.onnx"
    conv_chain(path, size=32)  # x -> Conv -> Relu -> Conv -> y
    return path


def test_onnx_runtime_reports_time_per_onnx_op_type(chain):
    ms = profile_model(chain, make_runtime("ort", threads=1), (1, 3, 32, 32), runs=3)
    assert ms and all(v > 0 for v in ms.values())
    # ORT's own op names: it may fuse Conv+Relu (FusedConv) and add NCHWc layout reorders
    assert {"Conv", "FusedConv"} & set(ms) and set(ms) <= {"Conv", "Relu", "FusedConv", "ReorderInput",
                                                           "ReorderOutput"}
    assert list(ms.values()) == sorted(ms.values(), reverse=True)  # slowest first


@pytest.mark.parametrize("runtime", [r for r in PROFILERS if r != "ort" and r in RUNTIMES])
def test_opencv_and_openvino_report_time_per_layer_type(chain, runtime):
    ms = profile_model(chain, make_runtime(runtime, threads=1), [1, 3, 32, 32], runs=3)
    assert ms and all(v > 0 for v in ms.values())


def test_a_runtime_without_a_profiler_or_a_model_that_does_not_load_is_one_clear_error(tmp_path, chain):
    class Unprofiled(type(make_runtime("ort"))):
        name = "elsewhere"

    with pytest.raises(UsageError, match="no profiler for runtime 'elsewhere'; cvtune profiles: opencv, ort"):
        profile_model(chain, Unprofiled(), (1, 3, 32, 32))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(TrialFailed):
        profile_model(broken, make_runtime("ort"), (1, 3, 32, 32))
