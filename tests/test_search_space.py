"""Candidates, budgets, objectives, the search space and the Pareto front: pure logic, no model runs."""

from __future__ import annotations

import pytest

from cvtune.errors import UsageError
from cvtune.passes import ChannelPrune, Int8Static, Simplify, Sparsify, pass_choice
from cvtune.runtimes import make_runtime
from cvtune.search import Budget, Candidate, SpaceConfig, build_space, pareto_front, parse_duration
from cvtune.search.space import TEST_HOOKS_ENV, ModelFacts, input_sizes, scaled_task_options, slot_choices

FACTS = ModelFacts(representative_size=(736, 992), resizable=True, size_multiple=32, dynamic_batch=True)


def space(**fields) -> SpaceConfig:
    """A small space on ONNX Runtime with one thread; `fields` replace the rest."""
    return SpaceConfig(**{"runtimes": ("ort",), "threads": (1,), "input_scales": (1.0,), "transforms": (),
                          **fields})


def test_candidate_round_trips_through_json_with_a_stable_key():
    cand = Candidate((Simplify(), ChannelPrune(0.25)), make_runtime("ort", threads=2), input_size=(544, 736))
    again = Candidate.from_dict(cand.to_dict())
    assert again == cand and hash(again) == hash(cand) and again.key() == cand.key()
    assert Candidate(cand.passes, make_runtime("ort", threads=1), input_size=(544, 736)).key() != cand.key()
    assert [p.name for p in cand.passes] == ["channel_prune", "simplify"]  # build order, whatever the given order


def test_threads_share_a_metric_but_runtimes_do_not():
    ort1 = Candidate(runtime=make_runtime("ort", threads=1), input_scale=0.75)
    ort2 = Candidate(runtime=make_runtime("ort", threads=2), input_scale=0.75)
    cv = Candidate(runtime=make_runtime("opencv", engine="new", threads=1), input_scale=0.75)
    assert ort1.metric_key("src") == ort2.metric_key("src")
    assert cv.metric_key("src") != ort1.metric_key("src")
    assert Candidate(runtime=make_runtime("ort", threads=1)).metric_key("src") != ort1.metric_key("src")


def test_input_size_names_a_new_model_only_when_shapes_are_made_static():
    assert Candidate(input_size=(320, 320)).model_key("s") == Candidate().model_key("s")
    static = Candidate((Simplify(),), input_size=(320, 320))
    assert static.static and static.model_key("s") != Candidate((Simplify(),)).model_key("s")


@pytest.mark.parametrize("make", [lambda: ChannelPrune(1.0), lambda: ChannelPrune(0.3, importance="luck"),
                                  lambda: Sparsify(-0.1), lambda: Int8Static(format="int4"),
                                  lambda: Candidate(input_scale=0.01),
                                  lambda: Candidate(input_size=(320, 320), input_scale=0.5),
                                  lambda: Candidate((Int8Static(), pass_choice("fp16")))])
def test_passes_and_candidates_refuse_impossible_values(make):
    with pytest.raises(UsageError):
        make()


def test_cli_names_choose_registered_passes():
    assert pass_choice("int8-qdq") == Int8Static(format="qdq")
    assert pass_choice("none") is None
    assert pass_choice("channel_prune:ratio=0.4,importance=bn") == ChannelPrune(0.4, importance="bn")
    assert slot_choices("prune", "0,0.3", like=ChannelPrune(0.2, "activation")) == \
        (None, ChannelPrune(0.3, "activation"))
    with pytest.raises(UsageError, match="choose one of"):
        pass_choice("int4")


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


def test_space_is_the_product_of_the_slots_it_lists():
    config = space(transforms=(("prune", (None, ChannelPrune(0.25))), ("precision", (None, Int8Static("qdq")))))
    candidates = build_space(config, FACTS)
    assert len(candidates) == 2 * 2 * 2  # (task resize, 736x992 fixed) x prune x precision
    assert len({c.key() for c in candidates}) == len(candidates)
    assert {len(c.passes) for c in candidates} == {0, 1, 2}


def test_sparsity_only_enters_for_the_size_objective():
    config = space(transforms=(("sparsify", (None, Sparsify(0.5))),))
    assert {c.pass_in("sparsify") for c in build_space(config, FACTS)} == {None}
    assert {c.pass_in("sparsify") for c in build_space(config, FACTS, objective="size")} == {None, Sparsify(0.5)}


def test_static_models_never_get_a_bigger_batch():
    config = space(transforms=(("simplify", (None, Simplify())),), batches=(1, 4), keep_task_resize=False)
    candidates = build_space(config, FACTS)
    assert any(c.static for c in candidates) and not any(c.static and c.batch > 1 for c in candidates)


def test_fixed_sizes_are_multiples_of_the_model_stride_and_scales_keep_aspect():
    sizes = input_sizes(SpaceConfig(input_scales=(1.0, 0.75, 0.5)), FACTS)
    assert sizes[0] is None and all(h % 32 == 0 and w % 32 == 0 for h, w in sizes[1:])
    scalable = ModelFacts((736, 992), True, 32, True, scalable=True)
    candidates = build_space(space(input_scales=(1.0, 0.5)), scalable)
    assert {c.input_scale for c in candidates} == {1.0, 0.5} and all(c.input_size is None for c in candidates)
    assert scaled_task_options("textdet", {}, 736, 0.5) == {"limit_side_len": 368}
    assert scaled_task_options("classify", {"x": 1}, None, 0.5) == {"x": 1}


def test_debug_hooks_need_the_test_environment(monkeypatch):
    monkeypatch.delenv(TEST_HOOKS_ENV, raising=False)
    with pytest.raises(UsageError, match=TEST_HOOKS_ENV):
        SpaceConfig(debug=("abort",))
    monkeypatch.setenv(TEST_HOOKS_ENV, "1")
    assert any(c.debug == "abort" for c in build_space(space(debug=("abort",)), FACTS))


def test_space_config_round_trips_through_json():
    config = SpaceConfig()
    assert SpaceConfig.from_dict(config.to_dict()) == config


def test_unknown_runtime_in_the_space_lists_the_valid_ones():
    with pytest.raises(UsageError, match="choose from"):
        SpaceConfig(runtimes=("tensorflow",))


def test_pareto_front_keeps_only_undominated_points():
    points = [(10, 0.90), (20, 0.95), (15, 0.89), (30, 0.95), (5, 0.80), (40, 0.99)]
    front = pareto_front(points, cost=lambda p: p[0], score=lambda p: p[1])
    assert front == [(5, 0.80), (10, 0.90), (20, 0.95), (40, 0.99)]
