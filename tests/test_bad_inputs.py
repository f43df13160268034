"""The bad-input catalogue: every command, fed what a hostile (or unlucky) user would feed it, must end with exactly
one `Error:` line and exit code 2: no traceback, no signal, the inputs byte-identical and no output, partial or not.

Each case is a command line built over one shared folder of inputs (`world`, made once: tiny models built in code,
the zoo's classifier, a few images, corrupt files generated here) and a fresh output folder. The CLI runs
in-process (`cvtune.cli.run_cli`), so the whole catalogue takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto
from tiny_models import conv_chain, conv_relu, no_input, unary, with_external_data

from cvtune.cli import run_cli

# ---- the world: inputs shared by every case (never modified: each case checks) -------------------------------

def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, followed by a few bytes of nothing (no real pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + \
        chunk(b"IEND", b"")


def _image(seed: int) -> np.ndarray:
    image = np.full((48, 192, 3), 220 - 20 * seed, np.uint8)
    cv2.putText(image, f"text {seed}", (8, 34), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (20, 20, 20), 2)
    return image


def _coco(folder: Path, images: list, categories: list, annotations: list | None = None) -> Path:
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), _image(0))
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": images, "categories": categories, "annotations": annotations or []}))
    return path


def _deploy(folder: Path, tiny: Path, **fields) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(tiny, folder / "model.onnx")
    doc = {"model": "model.onnx", "runtime": {"runtime": "opencv"}, "task": "raw", **fields}
    (folder / "deploy.json").write_text(json.dumps(doc))
    return folder / "deploy.json"


@pytest.fixture(scope="session")
def world(tmp_path_factory, cls_model: Path) -> Path:
    w = tmp_path_factory.mktemp("world")
    conv_relu(w / "tiny.onnx")
    conv_chain(w / "chain.onnx")
    shutil.copy(cls_model, w / "cls.onnx")
    (w / "images").mkdir()
    for i in range(3):
        cv2.imwrite(str(w / "images" / f"line_{i}.png"), _image(i))
    (w / "empty").mkdir()
    (w / "unreadable").mkdir()
    (w / "unreadable" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (w / "unreadable" / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    (w / "unreadable" / "huge.png").write_bytes(_png_claiming(100_000, 100_000))
    (w / "unreadable" / "empty.png").write_bytes(b"")
    # models
    data = (w / "tiny.onnx").read_bytes()
    (w / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (w / "garbage.onnx").write_bytes(os.urandom(4096))
    (w / "empty.onnx").write_bytes(b"")
    no_input(w / "noinput.onnx")
    unary(w / "five_d.onnx", dims=[1, 3, 2, 8, 8])
    unary(w / "uint8.onnx", dims=[1, 3, 8, 8], elem_type=TensorProto.UINT8)
    broken = conv_relu()
    broken.graph.node[1].input[0] = "nowhere"  # reads a value nothing produces: onnx.checker says so
    onnx.save(broken, str(w / "checker.onnx"))
    (w / "garbage.pb").write_bytes(b"garbage\n" * 10)
    (w / "garbage.tflite").write_bytes(b"garbage\n" * 10)
    (w / "truncated.tflite").write_bytes(struct.pack("<I", 28) + b"TFL3" + bytes(range(256))[:120])  # header only
    (w / "model_dir.onnx").mkdir()
    with_external_data(w / "ext_up" / "m", "../w.bin")
    outside = w / "outside.bin"
    with_external_data(w / "ext_abs", str(outside), data_path=outside)
    with_external_data(w / "ext_symlink", "weights.bin")
    (w / "ext_symlink" / "weights.bin").replace(w / "elsewhere.bin")
    (w / "ext_symlink" / "weights.bin").symlink_to(w / "elsewhere.bin")
    with_external_data(w / "ext_hardlink", "weights.bin")
    os.link(w / "ext_hardlink" / "weights.bin", w / "hardlinked.bin")
    with_external_data(w / "ext_missing", "weights.bin")
    (w / "ext_missing" / "weights.bin").unlink()
    # video
    writer = cv2.VideoWriter(str(w / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for i in range(6):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    clip = (w / "clip.mp4").read_bytes()
    (w / "truncated.mp4").write_bytes(clip[: len(clip) // 3])
    (w / "garbage.mp4").write_bytes(os.urandom(2048))
    # datasets
    _coco(w / "coco_id_list", [{"id": [1], "file_name": "a.png"}], [{"id": 1, "name": "x"}])
    _coco(w / "coco_null_name", [{"id": 1, "file_name": None}], [{"id": 1, "name": "x"}])
    _coco(w / "coco_mixed_ids", [{"id": 1, "file_name": "a.png"}], [{"id": 1, "name": "x"}, {"id": "2", "name": "y"}])
    _coco(w / "coco_bad_bbox", [{"id": 1, "file_name": "a.png"}], [{"id": 1, "name": "x"}],
          [{"image_id": 1, "category_id": 1, "bbox": [0, 0, "wide", 3]}])
    _coco(w / "coco_unknown_image", [{"id": 1, "file_name": "a.png"}], [{"id": 1, "name": "x"}],
          [{"image_id": 7, "category_id": 1, "bbox": [0, 0, 2, 3]}])
    (w / "coco_not_json").mkdir()
    (w / "coco_not_json" / "instances.json").write_text('{"images": [')
    (w / "x.json").mkdir()  # a folder with a .json name
    (w / "x.json" / "y.json").mkdir()
    (w / "icdar_bad").mkdir()
    cv2.imwrite(str(w / "icdar_bad" / "img_1.png"), _image(0))
    (w / "icdar_bad" / "gt_img_1.txt").write_text("1,2,3,oops\n")
    (w / "labels_nul").mkdir()
    cv2.imwrite(str(w / "labels_nul" / "a.png"), _image(0))
    (w / "labels_nul" / "labels.txt").write_bytes(b"a.png\tcat\x00dog\nb\x00.png\tcat\n")
    (w / "ocr_missing").mkdir()
    (w / "ocr_missing" / "labels.txt").write_text("crops/none.png\thello\n")
    (w / "latin1").mkdir()
    cv2.imwrite(str(w / "latin1" / "a.png"), _image(0))
    (w / "latin1" / "labels.txt").write_bytes("a.png\tcaf\xe9\n".encode("latin-1"))
    # deploy.json variants (each in its own folder, next to a copy of the tiny model)
    tiny = w / "tiny.onnx"
    _deploy(w / "deploy_pre_str", tiny, preprocessing="imagenet")
    _deploy(w / "deploy_opts_list", tiny, task_options=["a", "b"])
    _deploy(w / "deploy_expected_int", tiny, expected=3)
    _deploy(w / "deploy_up", tiny, model="../tiny.onnx")
    _deploy(w / "deploy_abs", tiny, model=str(tiny))
    _deploy(w / "deploy_threads", tiny, runtime={"runtime": "ort", "threads": "abc"})
    _deploy(w / "deploy_batch0", tiny, batch=0)
    _deploy(w / "deploy_future", tiny, schema="cvtune-deploy/99")
    _deploy(w / "deploy_no_runtime", tiny, runtime={"threads": 2})
    (w / "deploy_not_json").mkdir()
    (w / "deploy_not_json" / "deploy.json").write_text("{model: tiny}")
    (w / "sens_not_json").write_text("a,b\n")
    # optimize folders: a run to resume with other settings, a store with a malformed meta, a fake store
    from cvtune.budget import Budget
    from cvtune.search import OptimizeConfig, SpaceConfig
    from cvtune.search.context import SearchContext
    from cvtune.search.store import Store

    config = OptimizeConfig(model=w / "cls.onnx", task="fidelity", data=w / "images", out=w / "opt_resume",
                            budget=Budget.parse("1%"), space=SpaceConfig(runtimes=("ort",), threads=(1,)),
                            eval_images=4)
    with Store.open(config.out) as store:
        store.check_identity(SearchContext.load(config).identity())
    with Store.open(w / "opt_bad_meta") as store:
        store.set_meta("config", [1, 2, 3])
    (w / "opt_fake").mkdir()
    (w / "opt_fake" / "trials.sqlite").write_bytes(b"not sqlite at all" * 10)
    (w / "user_files").mkdir()
    (w / "user_files" / "holiday.jpg").write_bytes(b"precious")
    return w


def _digest(root: Path) -> dict[str, str]:
    """Every entry under `root`: file bytes hashed, links by target, folders by name."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


# ---- the catalogue ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """argv(world, out) is the command line; setup(world, out) puts what it needs in the (fresh) output folder;
    `says` is a fragment the error line must hold."""

    id: str
    argv: Callable[[Path, Path], list[str]]
    says: str = ""
    setup: Callable[[Path, Path], None] | None = None


def _write(name: str, content: bytes = b"mine, not cvtune's\n") -> Callable[[Path, Path], None]:
    def setup(w: Path, o: Path) -> None:
        (o / name).write_bytes(content)
    return setup


def _synth_output(w: Path, o: Path) -> None:
    from cvtune.data.synth import SynthConfig, generate_text_set

    generate_text_set(o / "text", SynthConfig(n=1, seed=0, fonts="bundled"))


def _readonly_target() -> str:
    return "/proc/cvtune-cannot-write-here/out.onnx"


COCO_JSON = '{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [], "categories": []}'  # one line, no \n

CASES = [
    # ---- the command line itself
    Case("no-such-command", lambda w, o: ["frobnicate"], "No such command"),
    Case("missing-argument", lambda w, o: ["prune"], "Missing argument"),
    Case("int-option-not-a-number", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/images", "-o",
                                                  f"{o}/r.jsonl", "--batch", "abc"], "--batch"),
    Case("run-batch-0", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/images", "-o", f"{o}/r.jsonl",
                                      "--batch", "0"], "--batch"),
    Case("bench-min-runs-0", lambda w, o: ["bench", f"{w}/tiny.onnx", "--min-runs", "0"], "--min-runs"),
    Case("limit-0", lambda w, o: ["eval", f"{w}/cls.onnx", "--task", "fidelity", "--data", f"{w}/images",
                                  "--reference", f"{w}/cls.onnx", "--limit", "0"], "--limit"),
    # ---- models
    Case("model-missing", lambda w, o: ["inspect", f"{w}/nope.onnx"], "not found"),
    Case("model-is-a-folder", lambda w, o: ["inspect", f"{w}/model_dir.onnx"], "not a file"),
    Case("model-truncated", lambda w, o: ["inspect", f"{w}/truncated.onnx", "--no-probe"], "truncated"),
    Case("model-garbage", lambda w, o: ["inspect", f"{w}/garbage.onnx", "--no-probe"], "ONNX"),
    Case("model-empty", lambda w, o: ["inspect", f"{w}/empty.onnx", "--no-probe"], "ONNX"),
    Case("model-no-input-inspect", lambda w, o: ["inspect", f"{w}/noinput.onnx", "--no-probe"], "no inputs"),
    Case("model-no-input-bench", lambda w, o: ["bench", f"{w}/noinput.onnx", "--min-runs", "1"], "no inputs"),
    Case("model-no-input-prepare", lambda w, o: ["prepare", f"{w}/noinput.onnx", "-o", f"{o}/p.onnx"], "no inputs"),
    Case("model-no-input-optimize", lambda w, o: ["optimize", f"{w}/noinput.onnx", "--task", "fidelity", "--data",
                                                  f"{w}/images", "-o", f"{o}/opt"], "no inputs"),
    Case("model-5d-eval", lambda w, o: ["eval", f"{w}/five_d.onnx", "--task", "fidelity", "--data", f"{w}/images",
                                        "--reference", f"{w}/five_d.onnx"], "5 dims"),
    Case("model-5d-inspect", lambda w, o: ["inspect", f"{w}/five_d.onnx", "--no-probe"], "5 dims"),
    Case("model-uint8-prepare", lambda w, o: ["prepare", f"{w}/uint8.onnx", "-o", f"{o}/p.onnx"], "uint8"),
    Case("model-uint8-run", lambda w, o: ["run", f"{w}/uint8.onnx", "-i", f"{w}/images", "-o", f"{o}/r.jsonl"],
         "uint8"),
    Case("model-fails-checker", lambda w, o: ["inspect", f"{w}/checker.onnx", "--no-probe"], "onnx.checker"),
    Case("model-garbage-pb", lambda w, o: ["inspect", f"{w}/garbage.pb"], "GraphDef"),
    Case("model-garbage-tflite", lambda w, o: ["inspect", f"{w}/garbage.tflite"], "TFLite"),
    Case("model-garbage-tflite-bench", lambda w, o: ["bench", f"{w}/garbage.tflite", "--input-shape",
                                                     "1x3x8x8"], "TFLite"),
    Case("model-truncated-tflite-bench", lambda w, o: ["bench", f"{w}/truncated.tflite", "--input-shape",
                                                       "1x3x8x8", "--min-runs", "1"], "truncated.tflite"),
    Case("pb-garbage-for-prune", lambda w, o: ["prune", f"{w}/garbage.pb", "-o", f"{o}/p.onnx", "--sparsity",
                                               "0.5"], "not a TensorFlow GraphDef"),
    Case("external-data-dotdot", lambda w, o: ["inspect", f"{w}/ext_up/m/m.onnx", "--no-probe"], "outside"),
    Case("external-data-absolute", lambda w, o: ["inspect", f"{w}/ext_abs/m.onnx", "--no-probe"], "absolute"),
    Case("external-data-symlink", lambda w, o: ["inspect", f"{w}/ext_symlink/m.onnx", "--no-probe"], "outside"),
    Case("external-data-hardlink", lambda w, o: ["inspect", f"{w}/ext_hardlink/m.onnx", "--no-probe"],
         "hard link"),
    Case("external-data-missing", lambda w, o: ["inspect", f"{w}/ext_missing/m.onnx", "--no-probe"], "missing"),
    Case("external-data-dotdot-prune", lambda w, o: ["prune", f"{w}/ext_up/m/m.onnx", "-o", f"{o}/p.onnx",
                                                     "--sparsity", "0.5"], "outside"),
    Case("shape-9d-20-digits", lambda w, o: ["inspect", f"{w}/tiny.onnx", "--no-probe", "--input-shape",
                                             "1x2x3x4x5x6x7x8x" + "9" * 20], "input shape"),
    Case("shape-not-numbers", lambda w, o: ["bench", f"{w}/tiny.onnx", "--input-shape", "big"], "input shape"),
    Case("shape-zero", lambda w, o: ["prepare", f"{w}/tiny.onnx", "-o", f"{o}/p.onnx", "--input-shape",
                                     "1x3x0x8"], "input shape"),
    Case("shape-wrong-rank-prepare", lambda w, o: ["prepare", f"{w}/tiny.onnx", "-o", f"{o}/p.onnx",
                                                   "--input-shape", "1x3x8"], "dims"),
    # ---- runtimes
    Case("compare-threads-abc", lambda w, o: ["bench", f"{w}/tiny.onnx", "--compare", "ort:threads=abc"], "threads"),
    Case("compare-unknown-runtime", lambda w, o: ["bench", f"{w}/tiny.onnx", "--compare", "tensorflow"],
         "unknown runtime"),
    Case("compare-unknown-setting", lambda w, o: ["bench", f"{w}/tiny.onnx", "--compare", "ort:turbo=1"], "turbo"),
    Case("compare-no-equals", lambda w, o: ["bench", f"{w}/tiny.onnx", "--compare", "ort:threads"], "runtime spec"),
    Case("threads-100000", lambda w, o: ["bench", f"{w}/tiny.onnx", "--threads", "100000"], "at most"),
    Case("threads-0", lambda w, o: ["bench", f"{w}/tiny.onnx", "--threads", "0"], "--threads"),
    Case("engine-unknown", lambda w, o: ["bench", f"{w}/tiny.onnx", "--engine", "turbo"], "engine"),
    Case("target-missing", lambda w, o: ["bench", f"{w}/tiny.onnx", "--target", "cuda"], "cuda"),
    Case("engine-with-ort", lambda w, o: ["bench", f"{w}/tiny.onnx", "--runtime", "ort", "--engine", "new"],
         "OpenCV options"),
    # ---- datasets
    Case("data-missing", lambda w, o: ["eval", f"{w}/cls.onnx", "--task", "classify", "--data", f"{w}/nope"],
         "not found"),
    Case("data-empty-folder", lambda w, o: ["eval", f"{w}/cls.onnx", "--task", "fidelity", "--data", f"{w}/empty",
                                            "--reference", f"{w}/cls.onnx"], "no images"),
    Case("data-all-unreadable", lambda w, o: ["eval", f"{w}/cls.onnx", "--task", "fidelity", "--data",
                                              f"{w}/unreadable", "--reference", f"{w}/cls.onnx"], "could be read"),
    Case("task-unknown", lambda w, o: ["eval", f"{w}/cls.onnx", "--task", "segment", "--data", f"{w}/images"],
         "segment"),
    Case("task-option-unknown-eval", lambda w, o: ["eval", f"{w}/cls.onnx", "--task", "fidelity", "--data",
                                                   f"{w}/images", "--reference", f"{w}/cls.onnx", "-O",
                                                   "colour=1"], "colour"),
    Case("task-option-no-equals", lambda w, o: ["eval", f"{w}/cls.onnx", "--task", "fidelity", "--data",
                                                f"{w}/images", "-O", "colour"], "KEY=VALUE"),
    Case("input-size-3-parts", lambda w, o: ["eval", f"{w}/cls.onnx", "--task", "classify", "--data",
                                             f"{w}/images", "--input-size", "48x192x3"], "input_size"),
    Case("input-size-huge", lambda w, o: ["eval", f"{w}/cls.onnx", "--task", "classify", "--data", f"{w}/images",
                                          "--input-size", "100000x100000"], "input_size"),
    Case("coco-image-id-list", lambda w, o: ["eval", f"{w}/cls.onnx", "--task", "detect", "--data",
                                             f"{w}/coco_id_list/instances.json"], "images.0.id"),
    Case("coco-file-name-null", lambda w, o: ["eval", f"{w}/cls.onnx", "--task", "detect", "--data",
                                              f"{w}/coco_null_name/instances.json"], "file_name"),
    Case("coco-mixed-category-ids", lambda w, o: ["data", "info", f"{w}/coco_mixed_ids/instances.json"],
         "category ids"),
    Case("coco-bad-bbox", lambda w, o: ["data", "info", f"{w}/coco_bad_bbox/instances.json"], "bbox"),
    Case("coco-unknown-image", lambda w, o: ["data", "info", f"{w}/coco_unknown_image/instances.json"],
         "unknown image id"),
    Case("coco-not-json", lambda w, o: ["data", "info", f"{w}/coco_not_json/instances.json"], "invalid JSON"),
    Case("coco-folder-named-json", lambda w, o: ["data", "info", f"{w}/x.json", "--kind", "coco"], "COCO"),
    Case("icdar-bad-line", lambda w, o: ["data", "info", f"{w}/icdar_bad"], "gt_img_1.txt:1"),
    Case("labels-with-nul", lambda w, o: ["data", "info", f"{w}/labels_nul", "--kind", "classification"],
         "labels.txt"),
    Case("labels-not-utf8", lambda w, o: ["data", "info", f"{w}/latin1", "--kind", "ocr_lines"], "UTF-8"),
    Case("ocr-image-missing", lambda w, o: ["data", "info", f"{w}/ocr_missing"], "not found"),
    Case("kind-unknown", lambda w, o: ["data", "info", f"{w}/images", "--kind", "voc"], "voc"),
    # ---- run: inputs and its results file
    Case("run-input-missing", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/nope", "-o", f"{o}/r.jsonl"],
         "not found"),
    Case("run-input-empty", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/empty", "-o", f"{o}/r.jsonl"],
         "no images"),
    Case("run-video-garbage", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/garbage.mp4", "-o",
                                            f"{o}/r.jsonl"], "video"),
    Case("run-video-truncated", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/truncated.mp4", "-o",
                                              f"{o}/r.jsonl"], "video"),
    Case("run-model-garbage", lambda w, o: ["run", f"{w}/garbage.onnx", "-i", f"{w}/images", "-o",
                                            f"{o}/r.jsonl", "--task", "raw"], "garbage.onnx"),
    Case("run-out-one-line-json", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/images", "-o",
                                                f"{o}/annotations.json"], "annotations.json",
         _write("annotations.json", COCO_JSON.encode())),
    Case("run-out-notes", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/images", "-o", f"{o}/notes.txt"],
         "not a JSON line", _write("notes.txt", b"my notes\nmore notes\n")),
    Case("run-out-frames-for-images", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/images", "-o",
                                                    f"{o}/r.jsonl"], "keyed by",
         _write("r.jsonl", b'{"frame":0,"prediction":1}\n')),
    Case("run-out-key-is-a-list", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/images", "-o",
                                                f"{o}/r.jsonl"], "not a file name",
         _write("r.jsonl", b'{"file":[1],"prediction":1}\n')),
    Case("run-out-is-a-folder", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/images", "-o", str(o)],
         "folder"),
    Case("run-out-is-the-model", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/images", "-o",
                                               f"{w}/tiny.onnx"], "same file"),
    Case("run-task-option-unknown", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/images", "-o",
                                                  f"{o}/r.jsonl", "-O", "nonsense=1"], "nonsense"),
    Case("run-workers-0", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/images", "-o", f"{o}/r.jsonl",
                                        "--workers", "0"], "--workers"),
    Case("run-batch-on-fixed-model", lambda w, o: ["run", f"{w}/tiny.onnx", "-i", f"{w}/images", "-o",
                                                   f"{o}/r.jsonl", "--batch", "2"], "fixed"),
    Case("deploy-preprocessing-string", lambda w, o: ["run", f"{w}/deploy_pre_str/deploy.json", "-i",
                                                      f"{w}/images", "-o", f"{o}/r.jsonl"], "preprocessing"),
    Case("deploy-task-options-list", lambda w, o: ["run", f"{w}/deploy_opts_list/deploy.json", "-i",
                                                   f"{w}/images", "-o", f"{o}/r.jsonl"], "task_options"),
    Case("deploy-expected-int", lambda w, o: ["run", f"{w}/deploy_expected_int/deploy.json", "-i", f"{w}/images",
                                              "-o", f"{o}/r.jsonl"], "expected"),
    Case("deploy-model-dotdot", lambda w, o: ["run", f"{w}/deploy_up/deploy.json", "-i", f"{w}/images", "-o",
                                              f"{o}/r.jsonl"], "inside the deploy.json folder"),
    Case("deploy-model-absolute", lambda w, o: ["run", f"{w}/deploy_abs/deploy.json", "-i", f"{w}/images", "-o",
                                                f"{o}/r.jsonl"], "relative"),
    Case("deploy-threads-abc", lambda w, o: ["run", f"{w}/deploy_threads/deploy.json", "-i", f"{w}/images", "-o",
                                             f"{o}/r.jsonl"], "threads"),
    Case("deploy-batch-0", lambda w, o: ["run", f"{w}/deploy_batch0/deploy.json", "-i", f"{w}/images", "-o",
                                         f"{o}/r.jsonl"], "batch"),
    Case("deploy-from-the-future", lambda w, o: ["run", f"{w}/deploy_future/deploy.json", "-i", f"{w}/images",
                                                 "-o", f"{o}/r.jsonl"], "upgrade"),
    Case("deploy-runtime-unnamed", lambda w, o: ["run", f"{w}/deploy_no_runtime/deploy.json", "-i",
                                                 f"{w}/images", "-o", f"{o}/r.jsonl"], "runtime"),
    Case("deploy-not-json", lambda w, o: ["run", f"{w}/deploy_not_json/deploy.json", "-i", f"{w}/images", "-o",
                                          f"{o}/r.jsonl"], "not valid JSON"),
    # ---- the -o policy of single-file outputs
    Case("prune-out-exists", lambda w, o: ["prune", f"{w}/tiny.onnx", "-o", f"{o}/p.onnx", "--sparsity", "0.5"],
         "--force", _write("p.onnx")),
    Case("prune-sidecar-exists", lambda w, o: ["prune", f"{w}/tiny.onnx", "-o", f"{o}/p.onnx", "--sparsity",
                                               "0.5"], "p.prune.json", _write("p.prune.json")),
    Case("prune-out-txt", lambda w, o: ["prune", f"{w}/tiny.onnx", "-o", f"{o}/x.txt", "--sparsity", "0.5"],
         ".onnx"),
    Case("prune-out-folder", lambda w, o: ["prune", f"{w}/tiny.onnx", "-o", str(o), "--sparsity", "0.5"], "folder"),
    Case("prune-out-is-input", lambda w, o: ["prune", f"{w}/tiny.onnx", "-o", f"{w}/tiny.onnx", "--sparsity", "0.5",
                                             "--force"], "same file"),
    Case("prune-out-unwritable", lambda w, o: ["prune", f"{w}/chain.onnx", "-o", _readonly_target(), "--sparsity",
                                               "0.5", "--no-skip-first"], "cannot write"),
    Case("prune-out-under-a-file", lambda w, o: ["prune", f"{w}/tiny.onnx", "-o", f"{w}/tiny.onnx/p.onnx",
                                                 "--sparsity", "0.5"], "is a file"),
    Case("prune-sparsity-1.5", lambda w, o: ["prune", f"{w}/tiny.onnx", "-o", f"{o}/p.onnx", "--sparsity", "1.5"],
         "sparsity"),
    Case("prune-channel-no-ratio", lambda w, o: ["prune", f"{w}/chain.onnx", "-o", f"{o}/p.onnx", "--method",
                                                 "channel"], "--ratio"),
    Case("prune-allocation-not-json", lambda w, o: ["prune", f"{w}/tiny.onnx", "-o", f"{o}/p.onnx",
                                                    "--allocation", f"{w}/sens_not_json"], "sensitivity"),
    Case("prepare-out-exists", lambda w, o: ["prepare", f"{w}/tiny.onnx", "-o", f"{o}/p.onnx"], "--force",
         _write("p.onnx")),
    Case("quantize-out-exists", lambda w, o: ["quantize", f"{w}/tiny.onnx", "-o", f"{o}/q.onnx", "--calib",
                                              f"{w}/images"], "--force", _write("q.onnx")),
    Case("quantize-sidecar-exists", lambda w, o: ["quantize", f"{w}/tiny.onnx", "-o", f"{o}/q.onnx", "--calib",
                                                  f"{w}/images"], "q.quant.json", _write("q.quant.json")),
    Case("quantize-no-calib", lambda w, o: ["quantize", f"{w}/tiny.onnx", "-o", f"{o}/q.onnx"], "--calib"),
    Case("quantize-calib-empty", lambda w, o: ["quantize", f"{w}/tiny.onnx", "-o", f"{o}/q.onnx", "--calib",
                                               f"{w}/empty"], "no images"),
    Case("quantize-dynamic-and-fp16", lambda w, o: ["quantize", f"{w}/tiny.onnx", "-o", f"{o}/q.onnx",
                                                    "--dynamic", "--fp16"], "--dynamic"),
    Case("quantize-max-drop-150", lambda w, o: ["quantize", f"{w}/tiny.onnx", "-o", f"{o}/q.onnx", "--max-drop",
                                                "150%", "--data", f"{w}/images"], "max drop"),
    Case("quantize-max-drop-words", lambda w, o: ["quantize", f"{w}/tiny.onnx", "-o", f"{o}/q.onnx", "--max-drop",
                                                  "a little", "--data", f"{w}/images"], "max drop"),
    Case("sensitivity-out-foreign", lambda w, o: ["sensitivity", f"{w}/tiny.onnx", "--data", f"{w}/images", "-o",
                                                  f"{o}/s.json"], "not a cvtune sensitivity file",
         _write("s.json", COCO_JSON.encode())),
    Case("sensitivity-out-txt", lambda w, o: ["sensitivity", f"{w}/tiny.onnx", "--data", f"{w}/images", "-o",
                                              f"{o}/s.txt"], ".json"),
    Case("sensitivity-levels-words", lambda w, o: ["sensitivity", f"{w}/tiny.onnx", "--data", f"{w}/images", "-o",
                                                   f"{o}/s.json", "--levels", "half"], "--levels"),
    Case("synth-into-user-files", lambda w, o: ["data", "synth-text", "-o", f"{w}/user_files", "--n", "1"],
         "not a previous synth-text output"),
    Case("synth-over-previous-output", lambda w, o: ["data", "synth-text", "-o", f"{o}/text", "--n", "1"],
         "--force", _synth_output),
    Case("synth-n-0", lambda w, o: ["data", "synth-text", "-o", f"{o}/text", "--n", "0"], "--n"),
    # ---- optimize and report
    Case("optimize-prune-1.5", lambda w, o: ["optimize", f"{w}/cls.onnx", "--task", "fidelity", "--data",
                                             f"{w}/images", "-o", f"{o}/opt", "--prune", "1.5"], "ratio"),
    Case("optimize-out-is-a-file", lambda w, o: ["optimize", f"{w}/cls.onnx", "--task", "fidelity", "--data",
                                                 f"{w}/images", "-o", f"{w}/tiny.onnx"], "is a file"),
    Case("optimize-out-user-files", lambda w, o: ["optimize", f"{w}/cls.onnx", "--task", "fidelity", "--data",
                                                  f"{w}/images", "-o", f"{w}/user_files"], "holiday.jpg"),
    Case("optimize-out-unwritable", lambda w, o: ["optimize", f"{w}/cls.onnx", "--task", "fidelity", "--data",
                                                  f"{w}/images", "-o", "/proc/cvtune-opt"], "cannot write"),
    Case("optimize-resume-other-max-drop", lambda w, o: ["optimize", f"{w}/cls.onnx", "--task", "fidelity",
                                                         "--data", f"{w}/images", "-o", f"{w}/opt_resume",
                                                         "--max-drop", "2%", "--eval-images", "4"], "max_drop"),
    Case("optimize-max-drop-words", lambda w, o: ["optimize", f"{w}/cls.onnx", "--task", "fidelity", "--data",
                                                  f"{w}/images", "-o", f"{o}/opt", "--max-drop", "lots"],
         "max drop"),
    Case("optimize-time-negative", lambda w, o: ["optimize", f"{w}/cls.onnx", "--task", "fidelity", "--data",
                                                 f"{w}/images", "-o", f"{o}/opt", "--time", "-3m"], "duration"),
    Case("optimize-threads-words", lambda w, o: ["optimize", f"{w}/cls.onnx", "--task", "fidelity", "--data",
                                                 f"{w}/images", "-o", f"{o}/opt", "--threads", "1,many"],
         "--threads"),
    Case("optimize-task-unknown", lambda w, o: ["optimize", f"{w}/cls.onnx", "--task", "segment", "--data",
                                                f"{w}/images", "-o", f"{o}/opt"], "segment"),
    Case("optimize-task-option-unknown", lambda w, o: ["optimize", f"{w}/cls.onnx", "--task", "fidelity", "--data",
                                                       f"{w}/images", "-o", f"{o}/opt", "-O", "colour=1"],
         "colour"),
    Case("report-no-store", lambda w, o: ["report", f"{w}/images"], "trials.sqlite"),
    Case("report-bad-meta", lambda w, o: ["report", f"{w}/opt_bad_meta"], "config"),
    Case("report-not-sqlite", lambda w, o: ["report", f"{w}/opt_fake"], "trial store"),
    Case("zoo-unknown", lambda w, o: ["zoo", "path", "yolo"], "yolo"),
    Case("schema-unknown", lambda w, o: ["schema", "coffee"], "coffee"),
]


def test_the_catalogue_is_large_and_its_ids_unique() -> None:
    assert len(CASES) >= 80
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    if case.setup is not None:
        case.setup(world, out)
    inputs, outputs = _digest(world), _digest(out)
    capsys.readouterr()
    code = run_cli(case.argv(world, out))
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "Error:" in line]
    assert code == 2, f"exit {code}; stderr:\n{captured.err[-2000:]}"
    assert "Traceback" not in captured.err + captured.out
    assert len(errors) == 1, captured.err
    assert case.says.lower() in errors[0].lower(), errors[0]
    assert _digest(world) == inputs, "an input changed"
    assert _digest(out) == outputs, "something was written (or changed) in the output folder"
