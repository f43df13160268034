"""The one timing path (cvtune.timing): the loop's order and stopping rules on a recording session, one real ONNX
Runtime run over two shapes, latency statistics on known numbers, and bench/throughput reporting through them.
Nothing here asserts on how fast anything is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_models import conv_relu

from cvtune.bench import BenchResult, summarize
from cvtune.errors import TrialFailed, UsageError
from cvtune.runtimes import make_runtime
from cvtune.throughput import Layout, _summarize
from cvtune.timing import LatencyStats, latency_stats, time_model, time_session

A, B, C = (1, 3, 8, 8), (1, 3, 16, 16), (1, 3, 8, 24)


class Recorder:
    """A session that records the shape of every input it is run on (and optionally forwards to a real one)."""

    def __init__(self, inner=None, *, limit: int = 1000) -> None:
        self.inner = inner
        self.limit = limit  # a loop that ignores its stopping rules fails here instead of running on
        self.shapes: list[tuple[int, ...]] = []
        self.outputs: list[tuple[int, ...]] = []

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        assert len(self.shapes) < self.limit, "the timing loop ran past its limit"
        self.shapes.append(tuple(batch.shape))
        out = self.inner.run(batch) if self.inner is not None else [batch]
        self.outputs.append(tuple(out[0].shape))
        return out


def inputs_of(*shapes: tuple[int, ...]) -> list[np.ndarray]:
    return [np.zeros(s, np.float32) for s in shapes]


def test_warm_up_each_shape_once_then_time_whole_cycles_in_turn() -> None:
    session = Recorder()
    times = time_session(session, inputs_of(A, B, C), warmup=2, min_runs=5, min_time_s=0, max_runs=100)
    # warm-up: each shape once, then 2 runs cycling; timed: whole cycles A, B, C until >= 5 runs
    assert session.shapes == [A, B, C, A, B] + [A, B, C] * 2
    assert len(times) == 6 and all(t >= 0 for t in times)


def test_repeated_shapes_are_warmed_once_and_timed_as_often_as_given() -> None:
    session = Recorder()
    time_session(session, inputs_of(A, A, B), warmup=0, min_runs=3, min_time_s=0, max_runs=100)
    assert session.shapes == [A, B] + [A, A, B]


def test_min_runs_with_one_input_is_exact() -> None:
    session = Recorder()
    times = time_session(session, inputs_of(A), warmup=3, min_runs=7, min_time_s=0, max_runs=100)
    assert len(times) == 7 and len(session.shapes) == 1 + 3 + 7


def test_max_runs_caps_even_a_long_minimum_time() -> None:
    session = Recorder(limit=20)
    times = time_session(session, inputs_of(A, B), warmup=0, min_runs=50, min_time_s=3600, max_runs=5)
    assert len(times) == 5 and session.shapes[2:] == [A, B, A, B, A]


@pytest.mark.parametrize("kwargs, named", [({"min_runs": 0}, "min_runs 0"), ({"warmup": -1}, "warmup -1"),
                                           ({"min_time_s": -1.0}, "min_time -1.0"), ({"max_runs": 0}, "max_runs 0")])
def test_bad_loop_settings_are_usage_errors(kwargs: dict, named: str) -> None:
    settings = {"warmup": 0, "min_runs": 1, "min_time_s": 0.0, "max_runs": 10, **kwargs}
    with pytest.raises(UsageError, match=named):
        time_session(Recorder(), inputs_of(A), **settings)
    with pytest.raises(UsageError, match="at least one input"):
        time_session(Recorder(), [], warmup=0, min_runs=1, min_time_s=0, max_runs=1)


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("timing") / "conv_dynamic.onnx"
    conv_relu(path, dynamic=True)
    return path


def test_a_real_ort_session_runs_every_shape_in_turn(dynamic_model: Path) -> None:
    session = Recorder(make_runtime("ort", threads=1).open(dynamic_model))
    times = time_session(session, inputs_of(A, B), warmup=1, min_runs=4, min_time_s=0, max_runs=100)
    assert len(times) == 4 and all(t > 0 for t in times)
    assert session.shapes[-4:] == [A, B, A, B]
    assert session.outputs[-4:] == [(1, 4, 8, 8), (1, 4, 16, 16)] * 2  # conv_relu has 4 output channels


def test_time_model_returns_json_raw_numbers(dynamic_model: Path) -> None:
    raw = time_model(str(dynamic_model), make_runtime("ort", threads=1).to_dict(), [A, B, B], warmup=0, min_runs=2,
                     min_time_s=0)
    assert set(raw) == {"times_ms", "load_ms", "peak_rss_mb", "shapes"}
    assert raw["shapes"] == [list(A), list(B), list(B)]
    assert len(raw["times_ms"]) == 3 and raw["load_ms"] > 0 and raw["peak_rss_mb"] > 1
    assert json.loads(json.dumps(raw)) == raw
    with pytest.raises(UsageError, match="input shape"):
        time_model(str(dynamic_model), make_runtime("ort"), [], warmup=0, min_runs=1, min_time_s=0)


def test_latency_stats_on_known_numbers() -> None:
    stats = latency_stats([float(t) for t in range(10, 0, -1)], batch=2)  # 10, 9, ..., 1 ms: order must not matter
    assert stats.runs == 10
    assert (stats.p50_ms, stats.p90_ms, stats.p99_ms) == pytest.approx((5.5, 9.1, 9.91))
    assert stats.mean_ms == pytest.approx(5.5) and stats.min_ms == 1.0
    assert stats.std_ms == pytest.approx(8.25 ** 0.5)  # population std: mean of squared deviations is 8.25
    assert stats.throughput_ips == pytest.approx(2 * 1000 / 5.5)
    assert set(stats.to_dict()) == {"runs", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms",
                                    "throughput_ips"}
    single = latency_stats([4.0], batch=1)
    assert (single.p50_ms, single.p99_ms, single.std_ms, single.throughput_ips) == (4.0, 4.0, 0.0, 250.0)
    with pytest.raises(TrialFailed, match="no timed run"):
        latency_stats([], batch=1)


BENCH_KEYS = {"label", "runtime", "model", "input_shape", "runs", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms",
              "min_ms", "throughput_ips", "load_ms", "peak_rss_mb", "flops", "gflops_per_s"}
THROUGHPUT_KEYS = {"label", "runtime", "model", "input_shape", "layout", "duration_s", "images", "images_per_s",
                   "runs", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "per_instance_ips", "ms_per_image"}


def test_bench_summary_is_latency_stats_plus_load_memory_and_flops() -> None:
    raw = {"times_ms": [float(t) for t in range(1, 11)], "load_ms": 12.0, "peak_rss_mb": 80.0, "shapes": [[4, 3]]}
    result = summarize("x", make_runtime("ort"), "m.onnx", (4, 3, 8, 8), raw, flops=2_000_000)
    assert isinstance(result, BenchResult) and set(result.to_dict()) == BENCH_KEYS
    expected = latency_stats(raw["times_ms"], batch=4)
    assert {k: v for k, v in result.to_dict().items() if k in expected.to_dict()} == expected.to_dict()
    assert result.throughput_ips == pytest.approx(4 * 1000 / 5.5)
    assert result.gflops_per_s == pytest.approx(2e6 / 5.5e-3 / 1e9)
    assert (result.load_ms, result.peak_rss_mb, result.input_shape) == (12.0, 80.0, (4, 3, 8, 8))


def test_throughput_latencies_are_latency_stats_of_the_runs() -> None:
    # Window [100, 101]; runs of 200, 400 and 600 ms (their latency counts whether or not they end in the window).
    raws = [{"spans": [(100.0, 100.2), (100.2, 100.6)]}, {"spans": [(100.0, 100.6)]}]
    result = _summarize(raws, 100.0, 1.0, "x", make_runtime("ort"), "m.onnx", (1, 3, 8, 8), Layout(2, 1, 1))
    assert set(result.to_dict()) == THROUGHPUT_KEYS
    expected: LatencyStats = latency_stats([200.0, 400.0, 600.0], batch=1)
    assert result.runs == expected.runs == 3
    got = (result.p50_ms, result.p90_ms, result.p99_ms, result.mean_ms)
    assert got == pytest.approx((expected.p50_ms, expected.p90_ms, expected.p99_ms, expected.mean_ms))
    assert got == pytest.approx((400.0, 560.0, 596.0, 400.0))
    assert result.images_per_s == pytest.approx(3.0)  # counted in the window, not batch / mean latency
