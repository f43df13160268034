"""Candidates, budgets, objectives, the search space and the Pareto front: pure logic, no model runs."""

from __future__ import annotations

import pytest

from cvtune.errors import UsageError
from cvtune.runtimes import make_runtime
from cvtune.search import Budget, Candidate, SpaceConfig, Transforms, build_space, pareto_front, parse_duration
from cvtune.search.space import TEST_HOOKS_ENV, ModelFacts, input_sizes, scaled_task_options

FACTS = ModelFacts(representative_size=(736, 992), resizable=True, size_multiple=32, dynamic_batch=True)
ALL = {"simplify": True, "prune": True, "sparsify": True, "quantize": True, "input_size": True}


def test_candidate_round_trips_through_json_with_a_stable_key():
    cand = Candidate(Transforms(simplify=True, prune_ratio=0.25, input_size=(544, 736)),
                     make_runtime("ort", threads=2))
    again = Candidate.from_dict(cand.to_dict())
    assert again == cand and hash(again) == hash(cand) and again.key() == cand.key()
    assert Candidate(cand.transforms, make_runtime("ort", threads=1)).key() != cand.key()


def test_threads_share_a_metric_but_runtimes_do_not():
    t = Transforms(input_scale=0.75)
    ort1, ort2 = Candidate(t, make_runtime("ort", threads=1)), Candidate(t, make_runtime("ort", threads=2))
    cv = Candidate(t, make_runtime("opencv", engine="new", threads=1))
    assert ort1.metric_key("src") == ort2.metric_key("src")
    assert cv.metric_key("src") != ort1.metric_key("src")
    assert Candidate(Transforms(), make_runtime("ort", threads=1)).metric_key("src") != ort1.metric_key("src")


def test_input_size_names_a_new_model_only_when_shapes_are_made_static():
    assert Transforms(input_size=(320, 320)).model_key("s") == Transforms().model_key("s")
    static = Transforms(simplify=True, input_size=(320, 320))
    assert static.static and static.model_key("s") != Transforms(simplify=True).model_key("s")
    assert Transforms(prune_ratio=0.0, prune_importance="bn") == Transforms()  # importance is moot without pruning


@pytest.mark.parametrize("bad", [dict(prune_ratio=1.0), dict(quant="int4"), dict(sparsity=-0.1),
                                 dict(input_scale=0.01), dict(input_size=(320, 320), input_scale=0.5)])
def test_transforms_refuse_impossible_values(bad):
    with pytest.raises(UsageError):
        Transforms(**bad)


@pytest.mark.parametrize("text,value,relative", [("1%", 0.01, True), ("0.5 %", 0.005, True),
                                                 ("0.01abs", 0.01, False), ("0.02", 0.02, True)])
def test_budget_parses_relative_and_absolute_drops(text, value, relative):
    budget = Budget.parse(text)
    assert budget.value == pytest.approx(value) and budget.relative is relative


@pytest.mark.parametrize("text", ["lots", "2", "100%", "-1%", "1%%"])
def test_budget_refuses_unreadable_or_impossible_values(text):
    with pytest.raises(UsageError):
        Budget.parse(text)


def test_budget_drop_is_relative_to_the_baseline_or_absolute():
    assert Budget.parse("1%").drop(0.80, 0.792) == pytest.approx(0.01)
    assert Budget.parse("1%").allows(0.80, 0.7925) and not Budget.parse("1%").allows(0.80, 0.79)
    assert Budget.parse("0.01abs").drop(0.80, 0.79) == pytest.approx(0.01)


@pytest.mark.parametrize("text,seconds", [("3m", 180), ("90s", 90), ("1m30s", 90), ("120", 120), ("1h", 3600),
                                          (None, None)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "0s", "3 parsecs", "m3"])
def test_bad_durations(text):
    with pytest.raises(UsageError):
        parse_duration(text)


def test_space_leaves_out_techniques_whose_module_is_missing():
    config = SpaceConfig(runtimes=("ort",), threads=(1,), input_scales=(1.0,), simplify=(False,),
                         prune_ratios=(0.0, 0.25), quant=("none", "int8-qdq"))
    with_all = build_space(config, FACTS, techniques=ALL)
    without = build_space(config, FACTS, techniques={**ALL, "prune": False, "quantize": False})
    assert len(with_all) == 2 * 2 * 2  # (task resize, 736x992 fixed) x prune x quant
    assert all(c.transforms.prune_ratio == 0 and c.transforms.quant == "none" for c in without)
    assert len({c.key() for c in with_all}) == len(with_all)


def test_sparsity_only_enters_for_the_size_objective():
    config = SpaceConfig(runtimes=("ort",), threads=(1,), input_scales=(1.0,), simplify=(False,),
                         prune_ratios=(0.0,), quant=("none",), sparsity=(0.0, 0.5))
    assert {c.transforms.sparsity for c in build_space(config, FACTS, techniques=ALL)} == {0.0}
    assert {c.transforms.sparsity for c in build_space(config, FACTS, techniques=ALL, objective="size")} == {0.0, 0.5}


def test_static_models_never_get_a_bigger_batch():
    config = SpaceConfig(runtimes=("ort",), threads=(1,), input_scales=(1.0,), simplify=(False, True),
                         prune_ratios=(0.0,), quant=("none",), batches=(1, 4), keep_task_resize=False)
    space = build_space(config, FACTS, techniques=ALL)
    assert space and not any(c.transforms.static and c.batch > 1 for c in space)


def test_fixed_sizes_are_multiples_of_the_model_stride_and_scales_keep_aspect():
    sizes = input_sizes(SpaceConfig(input_scales=(1.0, 0.75, 0.5)), FACTS)
    assert sizes[0] is None and all(h % 32 == 0 and w % 32 == 0 for h, w in sizes[1:])
    scalable = ModelFacts((736, 992), True, 32, True, scalable=True)
    space = build_space(SpaceConfig(runtimes=("ort",), threads=(1,), input_scales=(1.0, 0.5), simplify=(False,),
                                    prune_ratios=(0.0,), quant=("none",)), scalable, techniques=ALL)
    assert {c.transforms.input_scale for c in space} == {1.0, 0.5} and all(c.transforms.input_size is None
                                                                           for c in space)
    assert scaled_task_options("textdet", {}, 736, 0.5) == {"limit_side_len": 368}
    assert scaled_task_options("classify", {"x": 1}, None, 0.5) == {"x": 1}


def test_debug_hooks_need_the_test_environment(monkeypatch):
    monkeypatch.delenv(TEST_HOOKS_ENV, raising=False)
    with pytest.raises(UsageError, match=TEST_HOOKS_ENV):
        SpaceConfig(debug=("abort",))
    monkeypatch.setenv(TEST_HOOKS_ENV, "1")
    space = build_space(SpaceConfig(runtimes=("ort",), threads=(1,), debug=("abort",)), FACTS, techniques=ALL)
    assert any(c.transforms.debug == "abort" for c in space)


def test_unknown_runtime_in_the_space_lists_the_valid_ones():
    with pytest.raises(UsageError, match="choose from"):
        SpaceConfig(runtimes=("tensorflow",))


def test_pareto_front_keeps_only_undominated_points():
    points = [(10, 0.90), (20, 0.95), (15, 0.89), (30, 0.95), (5, 0.80), (40, 0.99)]
    front = pareto_front(points, cost=lambda p: p[0], score=lambda p: p[1])
    assert front == [(5, 0.80), (10, 0.90), (20, 0.95), (40, 0.99)]


def test_promotion_always_keeps_the_cheapest_candidate_strictly_within_budget(tmp_path) -> None:
    """Screening allows twice the budget; fast over-budget candidates must not crowd out the feasible one."""
    from tiny_models import conv_relu

    from cvtune.search import Budget, OptimizeConfig
    from cvtune.search.strategy import promote
    from cvtune.search.trials import Search

    conv_relu(tmp_path / "m.onnx")
    config = OptimizeConfig(model=tmp_path / "m.onnx", task="textdet", data=tmp_path, out=tmp_path / "out",
                            budget=Budget.parse("1%"))
    search = Search(config)
    baseline = {"key": "base", "status": "ok", "metric": 0.95, "p50_ms": 170.0, "throughput_ips": 5.9,
                "size_bytes": 100}

    def row(key: str, p50: float, metric: float) -> dict:
        return {"key": key, "status": "ok", "metric": metric, "p50_ms": p50, "throughput_ips": 1000 / p50,
                "size_bytes": 100}

    screened = [baseline, row("fast-1.8%-a", 70, 0.933), row("fast-1.8%-b", 75, 0.933),
                row("fast-1.8%-c", 80, 0.933), row("within", 90, 0.95), row("slow-within", 160, 0.95)]
    keys = [r["key"] for r in promote(search, screened, baseline)]
    assert "within" in keys and "slow-within" not in keys
