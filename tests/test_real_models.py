"""The real-model cache: pinned files, checked by hash, fetched once, and a clear skip reason when offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cvtune.testing import real_models as rm


def test_fixtures_give_the_pinned_files(real_models, real_photos):
    assert set(real_models) >= {"nudenet-320n", "palm-detection-lite", "selfie-segmentation", "mtcnn-onet"}
    pinned = {a.name: a.sha256 for a in rm.ASSETS}
    for name, path in real_models.items():
        assert rm.sha256(path) == pinned[name], name
    assert [p.stem for p in real_photos] == sorted(a.name for a in rm.ASSETS if a.kind == "photo")


def _copy_cache(tmp_path: Path, real_models) -> Path:
    source = next(iter(real_models.values())).parents[1]
    cache = tmp_path / "cache"
    shutil.copytree(source, cache)
    return cache


def test_fetch_is_idempotent_and_needs_no_network_when_files_are_there(tmp_path, real_models, monkeypatch):
    cache = _copy_cache(tmp_path, real_models)
    (cache / rm.MANIFEST).unlink()

    def no_network(source, into):
        raise AssertionError(f"{source.requirement} downloaded although its files are present")

    monkeypatch.setattr(rm, "_download", no_network)
    manifest = rm.fetch(cache)
    assert rm.load_manifest(cache) == manifest


def test_a_damaged_file_is_not_trusted(tmp_path, real_models):
    cache = _copy_cache(tmp_path, real_models)
    target = cache / "models" / "pnet.onnx"
    target.write_bytes(target.read_bytes()[:100])
    assert rm.load_manifest(cache) is None


def test_offline_fetch_records_the_reason_and_does_not_fail_setup(tmp_path, monkeypatch, capsys):
    def offline(source, into):
        raise rm.FetchUnavailable(f"pip download {source.requirement} failed: no route to host")

    monkeypatch.setattr(rm, "_download", offline)
    cache = tmp_path / "empty"
    assert rm.main(["--cache", str(cache)]) == 0
    assert "no route to host" in capsys.readouterr().err
    assert rm.load_manifest(cache) is None
    assert "no route to host" in rm.missing_reason(cache)
    assert rm.main(["--cache", str(cache), "--strict"]) == 1


def test_a_file_that_differs_from_the_pin_is_an_error(tmp_path, monkeypatch):
    import zipfile

    def fake_index(source, into):  # a package whose file was swapped on the index
        archive = into / "nudenet-3.4.2-py3-none-any.whl"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("nudenet/320n.onnx", b"not the pinned model")
        return archive

    monkeypatch.setattr(rm, "_download", fake_index)
    monkeypatch.setattr(rm, "ASSETS", tuple(a for a in rm.ASSETS if a.source == "nudenet==3.4.2"))
    with pytest.raises(rm.FetchError, match="differs from the pinned one"):
        rm.fetch(tmp_path / "cache")
    assert not (tmp_path / "cache" / "models" / "320n.onnx").exists()
