"""Property-based tests (hypothesis) for every parser of user input: whatever the text, a parser returns a valid
value or raises cvtune's own error (one line for the CLI), never anything else; and what it accepts, it reads
back exactly (shapes, runtime specs, budgets, durations, task options, sizes, deploy.json, results files)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvtune.budget import Budget, parse_duration
from cvtune.commands._options import parse_runtime_spec, parse_task_options
from cvtune.errors import CvtuneError
from cvtune.model import MAX_DIM, MAX_SHAPE_ELEMENTS, MAX_SHAPE_RANK, parse_shape
from cvtune.runtimes import RUNTIMES, runtime_from_dict
from cvtune.tasks.common import parse_size

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
SPEC_TEXT = st.text(alphabet="ortpencvix:=,.-_0123456789abcdefghklmsuwTF ", max_size=40)


def _never_crashes(parse, text):
    try:
        return parse(text)
    except CvtuneError as exc:
        assert " ".join(str(exc).split()), "an error says something (the CLI prints it on one line)"
        return None


# ---- input shapes -----------------------------------------------------------------------------------------------

@SETTINGS
@given(TEXT)
def test_any_text_is_a_valid_shape_or_a_usage_error(text: str) -> None:
    shape = _never_crashes(parse_shape, text)
    if shape is not None:
        assert 2 <= len(shape) <= MAX_SHAPE_RANK and all(1 <= d <= MAX_DIM for d in shape)
        assert math.prod(shape) <= MAX_SHAPE_ELEMENTS


@SETTINGS
@given(st.lists(st.integers(1, 200), min_size=2, max_size=4))
def test_a_written_shape_reads_back(dims: list[int]) -> None:
    assert parse_shape("x".join(map(str, dims))) == tuple(dims)
    assert parse_shape(",".join(map(str, dims))) == tuple(dims)


def test_shapes_beyond_the_limits_are_refused() -> None:
    for text in ("1x2x3x4x5x6x7", f"1x3x{MAX_DIM + 1}x8", "1x" + "9" * 20, "65536x65536x3"):
        with pytest.raises(CvtuneError):
            parse_shape(text)


# ---- runtime specs (--compare) -----------------------------------------------------------------------------------

@SETTINGS
@given(SPEC_TEXT)
def test_any_runtime_spec_is_a_runtime_or_a_usage_error(text: str) -> None:
    runtime = _never_crashes(parse_runtime_spec, text)
    if runtime is not None:
        assert runtime.name in RUNTIMES
        assert runtime_from_dict(runtime.to_dict()) == runtime


@SETTINGS
@given(st.sampled_from(["opencv", "ort"]), st.integers(1, 32), st.sampled_from([None, "1", "abc", "2.5", "-1", "true"]))
def test_runtime_spec_values_are_typed(name: str, threads: int, bad: str | None) -> None:
    assert parse_runtime_spec(f"{name}:threads={threads}").threads == threads
    if bad is not None:
        try:
            value = parse_runtime_spec(f"{name}:threads={bad}").threads
        except CvtuneError as exc:
            assert "threads" in str(exc)
        else:
            assert isinstance(value, int) and value >= 1


# ---- budgets and durations ------------------------------------------------------------------------------------------

@SETTINGS
@given(TEXT)
def test_any_budget_text_is_a_budget_or_a_usage_error(text: str) -> None:
    budget = _never_crashes(Budget.parse, text)
    if budget is not None:
        assert budget.value >= 0 and (budget.value < 1 or not budget.relative)


@SETTINGS
@given(st.floats(0, 99.99, allow_nan=False), st.floats(0, 1e6, allow_nan=False))
def test_budgets_read_back(percent: float, absolute: float) -> None:
    relative = Budget.parse(f"{percent:.4f}%")
    assert relative.relative and relative.value == pytest.approx(percent / 100, abs=1e-6)
    # describe() shows two decimals of a percent: it reads back within half of the last one
    assert Budget.parse(relative.describe().replace(" ", "")).value == pytest.approx(relative.value, abs=5.1e-5)
    assert Budget.parse(f"{absolute:.6f}abs").value == pytest.approx(absolute, abs=1e-6)


@SETTINGS
@given(TEXT)
def test_any_duration_text_is_seconds_or_a_usage_error(text: str) -> None:
    seconds = _never_crashes(parse_duration, text)
    if seconds is not None:
        assert seconds > 0


@SETTINGS
@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59))
def test_durations_read_back(hours: int, minutes: int, secs: int) -> None:
    parts = [f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v]
    total = hours * 3600 + minutes * 60 + secs
    if total:
        assert parse_duration("".join(parts)) == total
        assert parse_duration(str(total)) == total


# ---- task options and sizes ---------------------------------------------------------------------------------------

@SETTINGS
@given(st.lists(TEXT, max_size=4))
def test_any_task_options_are_a_dict_or_a_usage_error(items: list[str]) -> None:
    options = _never_crashes(parse_task_options, items)
    if options is not None:
        assert all(isinstance(k, str) and k == k.strip() and k for k in options)


@SETTINGS
@given(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
                       st.one_of(st.integers(-10**6, 10**6), st.booleans(),
                                 st.lists(st.sampled_from(["0", "180", "a"]), max_size=3),
                                 st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)), max_size=4))
def test_task_options_read_back(options: dict) -> None:
    items = [f"{k}={json.dumps(v) if not isinstance(v, bool) else str(v).lower()}" for k, v in options.items()]
    assert parse_task_options(items) == options


@SETTINGS
@given(st.one_of(TEXT, st.lists(st.integers(-5, 20000), max_size=3), st.integers(), st.none()))
def test_any_size_is_height_width_or_a_usage_error(value) -> None:
    size = _never_crashes(parse_size, value)
    if size is not None:
        assert len(size) == 2 and all(1 <= v <= 16384 for v in size)


# ---- files: deploy.json, results files, images ---------------------------------------------------------------------

JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=False) | TEXT,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                           max_leaves=8)
DEPLOY_FIELDS = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["model.onnx", "../model.onnx", "/model.onnx", "", 3]) | JSON_VALUES,
    "runtime": st.sampled_from([{"runtime": "ort"}, {"runtime": "opencv", "threads": 2}, {"runtime": "ort",
                                "threads": "abc"}, {"threads": 1}, "ort"]) | JSON_VALUES,
    "task": st.sampled_from(["raw", "classify", "nope"]) | JSON_VALUES,
    "task_options": JSON_VALUES, "input_size": JSON_VALUES, "batch": JSON_VALUES, "instances": JSON_VALUES,
    "preprocessing": JSON_VALUES, "expected": JSON_VALUES, "schema": JSON_VALUES,
})


@pytest.fixture(scope="module")
def deploy_folder(tmp_path_factory) -> Path:
    from tiny_models import conv_relu

    folder = tmp_path_factory.mktemp("deploy")
    conv_relu(folder / "model.onnx")
    return folder


@SETTINGS
@given(DEPLOY_FIELDS)
def test_any_deploy_json_loads_or_is_one_usage_error(deploy_folder: Path, fields: dict) -> None:
    from cvtune.deploy import load_deployed

    path = deploy_folder / "deploy.json"
    path.write_text(json.dumps(fields))
    deployed = _never_crashes(load_deployed, path)
    if deployed is not None:
        assert deployed.model_path.parent == deploy_folder.resolve()
        assert deployed.batch >= 1 and deployed.instances >= 1


@SETTINGS
@given(st.binary(max_size=200))
def test_any_results_file_is_resumed_or_refused_and_never_changed(tmp_path: Path, data: bytes) -> None:
    from cvtune.pipeline.jsonl import scan_results

    path = tmp_path / "results.jsonl"
    path.write_bytes(data)
    resume = _never_crashes(lambda p: scan_results(p, "file"), path)
    assert path.read_bytes() == data
    if resume is not None:
        assert resume.valid_bytes <= len(data) and all(isinstance(k, str | int) for k in resume.done)


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_decode_to_an_image_or_a_reason(data: bytes) -> None:
    from cvtune.data.base import decode_image

    image, why = decode_image(np.frombuffer(b"\x89PNG\r\n\x1a\n" + data, np.uint8))
    assert (image is None) == bool(why)
