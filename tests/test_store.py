"""The trial store: one transaction per trial, refusal of folders that are not a cvtune run, resume identity."""

from __future__ import annotations

import sqlite3

import pytest

from cvtune.errors import UsageError
from cvtune.runtimes import make_runtime
from cvtune.search import BuiltModel, Candidate, Measurement, MetricResult, Trial
from cvtune.search.store import STORE_NAME, Store, check_out_dir


def _trial(threads: int, rung: str = "screen", p50: float = 12.5) -> Trial:
    return Trial(Candidate(runtime=make_runtime("ort", threads=threads)), rung, "ok",
                 timing=Measurement(p50, p50, p50, 1000 / p50), metric=MetricResult("hmean", 0.9, n_images=4),
                 metric_key=f"m-{threads}", started=1.0)


def test_trials_are_committed_and_read_back_typed(tmp_path):
    with Store.open(tmp_path / "out") as store:
        store.record_trial(_trial(1))
        store.record_trial(_trial(1, "full", p50=11.0))
    with Store.open(tmp_path / "out", create=False) as store:
        trials = store.trials()
        key = _trial(1).key
        assert [(t.key, t.rung) for t in trials] == [(key, "screen"), (key, "full")]
        assert store.trial(key, "full").timing.p50_ms == 11.0
        assert trials[0] == _trial(1).with_(finished=trials[0].finished) or trials[0].candidate == _trial(1).candidate
        assert store.metric_for("m-1", "screen").key == key and store.metric_for("m-2", "screen") is None


def test_a_candidate_is_never_recorded_twice_at_one_rung(tmp_path):
    with Store.open(tmp_path) as store:
        store.record_trial(_trial(1))
        with pytest.raises(sqlite3.IntegrityError):
            store.record_trial(_trial(1, p50=1.0))
        assert store.count() == 1 and store.trial(_trial(1).key, "screen").timing.p50_ms == 12.5


def test_a_store_of_another_format_is_refused_with_the_reason(tmp_path):
    with Store.open(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / STORE_NAME)
    conn.execute("UPDATE meta SET value='\"cvtune-optimize/1\"' WHERE key='format'")
    conn.commit()
    conn.close()
    with pytest.raises(UsageError, match="cvtune-optimize/1 .*choose a new -o folder"):
        Store.open(tmp_path)


def test_out_folder_must_be_new_empty_or_a_previous_run(tmp_path):
    check_out_dir(tmp_path / "new")
    check_out_dir(tmp_path)  # empty
    (tmp_path / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(UsageError, match="not a cvtune optimize run"):
        Store.open(tmp_path)
    assert not (tmp_path / STORE_NAME).exists()
    with pytest.raises(UsageError, match="is a file"):
        check_out_dir(tmp_path / "holiday.jpg")


def test_an_sqlite_file_that_is_not_a_store_or_is_corrupt_is_refused(tmp_path):
    foreign = tmp_path / "a"
    foreign.mkdir()
    conn = sqlite3.connect(foreign / STORE_NAME)
    conn.execute("CREATE TABLE photos (x)")
    conn.commit()
    conn.close()
    with pytest.raises(UsageError, match="not a cvtune trial store"):
        Store.open(foreign)
    corrupt = tmp_path / "b"
    corrupt.mkdir()
    (corrupt / STORE_NAME).write_bytes(b"garbage" * 100)
    with pytest.raises(UsageError, match="not a readable trial store"):
        Store.open(corrupt)


def test_identity_decides_between_resume_and_refusal(tmp_path):
    identity = {"model_sha256": "abc", "task": "textdet", "seed": 0}
    with Store.open(tmp_path) as store:
        assert store.check_identity(identity) is False
        assert store.check_identity(dict(identity)) is True
        with pytest.raises(UsageError, match="different model_sha256"):
            store.check_identity({**identity, "model_sha256": "def"})


def test_models_and_probes_are_cached(tmp_path):
    with Store.open(tmp_path) as store:
        store.record_model(BuiltModel("k1", ({"pass": "fp16"},), str(tmp_path / "m.onnx"), "failed",
                                      "build failed: boom"))
        store.record_probe("k1", '{"runtime":"ort"}', False, "cannot load")
        assert store.model("k1").error == "build failed: boom" and not store.model("k1").ok
        assert store.models()[0].passes == ({"pass": "fp16"},)
        assert store.probe("k1", '{"runtime":"ort"}') == (False, "cannot load") and store.probe("k2", "x") is None
