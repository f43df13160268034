"""The trial store: one transaction per trial, refusal of folders that are not a cvtune run, resume identity."""

from __future__ import annotations

import sqlite3

import pytest

from cvtune.errors import UsageError
from cvtune.search.store import STORE_NAME, Store, check_out_dir


def _row(key: str, rung: str = "screen", **extra) -> dict:
    return {"key": key, "rung": rung, "candidate": {"transforms": {}, "runtime": {"runtime": "ort"}},
            "label": f"cand {key}", "status": "ok", "p50_ms": 12.5, "metric": 0.9, "metric_name": "hmean",
            "n_images": 4, "details": {"metric_key": f"m-{key}"}, "started": 1.0, **extra}


def test_trials_are_committed_and_read_back(tmp_path):
    with Store.open(tmp_path / "out") as store:
        store.record_trial(_row("a"))
        store.record_trial(_row("a", "full", p50_ms=11.0))
    with Store.open(tmp_path / "out", create=False) as store:
        rows = store.trials()
        assert [(r["key"], r["rung"]) for r in rows] == [("a", "screen"), ("a", "full")]
        assert store.trial("a", "full")["p50_ms"] == 11.0
        assert rows[0]["candidate"]["runtime"] == {"runtime": "ort"} and rows[0]["details"]["metric_key"] == "m-a"
        assert store.metric_for("m-a", "screen")["key"] == "a" and store.metric_for("m-b", "screen") is None


def test_a_candidate_is_never_recorded_twice_at_one_rung(tmp_path):
    with Store.open(tmp_path) as store:
        store.record_trial(_row("a"))
        with pytest.raises(sqlite3.IntegrityError):
            store.record_trial(_row("a", p50_ms=1.0))
        assert store.count() == 1 and store.trial("a", "screen")["p50_ms"] == 12.5


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
        store.record_model("k1", {"quant": "fp16"}, str(tmp_path / "m.onnx"), "failed", "build failed: boom")
        store.record_probe("k1", '{"runtime":"ort"}', False, "cannot load")
        assert store.model("k1")["error"] == "build failed: boom"
        assert store.models()[0]["transforms"] == {"quant": "fp16"}
        assert store.probe("k1", '{"runtime":"ort"}') == (False, "cannot load") and store.probe("k2", "x") is None
