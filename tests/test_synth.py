"""The synthetic text set: layout, exact labels the loaders read, determinism, and never overwriting user files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvtune import zoo
from cvtune.cli import run_cli
from cvtune.data.base import read_image
from cvtune.data.loaders import detect_kind, load_dataset
from cvtune.data.synth import SynthConfig, generate_text_set, render_image
from cvtune.errors import DatasetError, UsageError
from cvtune.model import load_onnx
from cvtune.runtimes import make_runtime

N = 6


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    assert run_cli(["data", "synth-text", "-o", str(out), "--n", str(N), "--seed", "0"]) == 0
    return out


def polygon_mask(shape: tuple[int, ...], points) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(points)).astype(np.int32)], 1)
    return mask.astype(bool)


def test_layout_matches_the_documented_one(synth_dir: Path) -> None:
    textdet = synth_dir / "textdet"
    assert sorted(p.name for p in textdet.glob("img_*.jpg")) == sorted(f"img_{i}.jpg" for i in range(1, N + 1))
    assert all((textdet / f"gt_img_{i}.txt").is_file() for i in range(1, N + 1))
    meta = json.loads((synth_dir / "meta.json").read_text())
    assert meta["generator"] == "cvtune synth-text" and meta["seed"] == 0 and meta["n"] == N
    assert len((synth_dir / "words.jsonl").read_text().splitlines()) == N
    labels = (synth_dir / "ocr" / "labels.txt").read_text().splitlines()
    assert len(labels) == meta["lines"] == len(list((synth_dir / "ocr" / "crops").glob("line_*_*.png")))
    assert not [p for p in synth_dir.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_loaders_read_both_halves(synth_dir: Path) -> None:
    det = load_dataset(synth_dir / "textdet")
    lines = load_dataset(synth_dir / "ocr")
    assert det.kind == "icdar" and len(det) == N
    assert lines.kind == "ocr_lines" and all(isinstance(s.target, str) and s.target for s in lines.samples)
    n_lines = [sum(not b.ignore for b in s.target) for s in det.samples]
    assert all(2 <= n <= 8 for n in n_lines) and sum(n_lines) == len(lines)
    with pytest.raises(DatasetError, match="synth-text output; use .*textdet"):
        detect_kind(synth_dir)


def test_images_vary_in_size_and_boxes_hold_contrasting_ink(synth_dir: Path) -> None:
    det = load_dataset(synth_dir / "textdet")
    sizes = set()
    for sample in det.samples:
        image = read_image(sample.path)
        h, w = image.shape[:2]
        sizes.add((h, w))
        assert 480 <= h <= 720 and 640 <= w <= 960
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        for box in sample.target:
            xs, ys = zip(*box.points, strict=True)
            assert 0 <= min(xs) and max(xs) <= w and 0 <= min(ys) and max(ys) <= h
            if box.ignore:
                continue
            inside = gray[polygon_mask(image.shape, box.points)]
            assert np.percentile(inside, 95) - np.percentile(inside, 5) > 60, (sample.path.name, box.text)
    assert len(sizes) > 1


def test_word_polygons_lie_inside_their_line(synth_dir: Path) -> None:
    record = json.loads((synth_dir / "words.jsonl").read_text().splitlines()[0])
    for line in record["lines"]:
        if line["ignore"]:
            continue
        assert " ".join(w["text"] for w in line["words"]) == line["text"]
        xs = [p[0] for p in line["points"]]
        for word in line["words"]:
            assert min(xs) - 1 <= min(p[0] for p in word["points"]) <= max(p[0] for p in word["points"]) <= max(xs) + 1


def test_labels_only_use_characters_the_recognizer_can_output(synth_dir: Path) -> None:
    meta = {p.key: p.value for p in load_onnx(zoo.path("ppocr-rec")).metadata_props}
    charset = set(meta["character"].split("\n")) | {" "}
    text = "".join(line.split("\t", 1)[1] for line in (synth_dir / "ocr" / "labels.txt").read_text().splitlines())
    assert set(text) <= charset


def test_same_seed_same_images_and_prefix_stable(tmp_path: Path, synth_dir: Path) -> None:
    generate_text_set(tmp_path / "again", SynthConfig(n=2, seed=0))
    for name in ("textdet/img_1.jpg", "textdet/gt_img_2.txt", "ocr/labels.txt"):
        again = (tmp_path / "again" / name).read_bytes()
        original = (synth_dir / name).read_bytes()
        assert again == original if name != "ocr/labels.txt" else original.startswith(again)
    other = render_image(SynthConfig(n=1, seed=1), 0)
    assert other.image.shape != render_image(SynthConfig(n=1, seed=0), 0).image.shape or \
        [ln.text for ln in other.lines] != [ln.text for ln in render_image(SynthConfig(seed=0), 0).lines]


def test_refuses_to_write_into_a_folder_of_user_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = tmp_path / "photos"
    user.mkdir()
    (user / "holiday.jpg").write_bytes(b"precious")
    assert run_cli(["data", "synth-text", "-o", str(user), "--n", "1"]) == 2
    assert "not empty and is not a previous synth-text output" in capsys.readouterr().err
    assert [p.name for p in user.iterdir()] == ["holiday.jpg"] and (user / "holiday.jpg").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        generate_text_set(tmp_path / "file", SynthConfig(n=1))


def test_replaces_a_previous_synth_output_and_fills_an_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    generate_text_set(out, SynthConfig(n=2, seed=3))
    generate_text_set(out, SynthConfig(n=1, seed=4))
    assert json.loads((out / "meta.json").read_text())["seed"] == 4
    assert [p.name for p in (out / "textdet").glob("*.jpg")] == ["img_1.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_bad_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="number of images must be at least 1"):
        SynthConfig(n=0)
    with pytest.raises(UsageError, match="choose one of: all, bundled"):
        SynthConfig(fonts="comic")
    assert run_cli(["data", "synth-text", "--help"]) == 0


def _ppocr_input(image: np.ndarray, height: int, width: int) -> np.ndarray:
    resized = cv2.resize(image, (width, height)).astype(np.float32)
    return ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]


def test_real_detector_fires_on_the_labelled_lines(synth_dir: Path) -> None:
    """The zoo's PP-OCRv4 detector sees text inside the line boxes and little elsewhere."""
    session = make_runtime("ort", threads=1).open(zoo.path("ppocr-det"))
    hits = total = 0
    for sample in load_dataset(synth_dir / "textdet").limit(2).samples:
        image = read_image(sample.path)
        h, w = image.shape[:2]
        nh, nw = (round(h / 32) * 32, round(w / 32) * 32)
        prob = cv2.resize(session.run(_ppocr_input(image, nh, nw))[0][0, 0], (w, h))
        text_area = np.zeros((h, w), bool)
        for box in sample.target:
            text_area |= polygon_mask(image.shape, box.points)
            if not box.ignore:
                total += 1
                hits += float(prob[polygon_mask(image.shape, box.points)].mean()) > 0.3
        grown = cv2.dilate(text_area.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
        assert float((prob[~grown] > 0.3).mean()) < 0.01
    session.close()
    assert hits >= 0.9 * total


def test_real_recognizer_reads_the_crops(synth_dir: Path) -> None:
    """CTC greedy decoding of the zoo's PP-OCRv4 recognizer matches most labels (spaces ignored, as PaddleOCR)."""
    model = load_onnx(zoo.path("ppocr-rec"))
    chars = ["<blank>", *{p.key: p.value for p in model.metadata_props}["character"].split("\n"), " "]
    session = make_runtime("ort", threads=1).open(zoo.path("ppocr-rec"))
    lines = load_dataset(synth_dir / "ocr").limit(8)
    correct = 0
    for sample in lines.samples:
        crop = read_image(sample.path)
        best = session.run(_ppocr_input(crop, 48, max(8, math.ceil(48 * crop.shape[1] / crop.shape[0]))))[0][0]
        ids = best.argmax(1)
        text = "".join(chars[i] for k, i in enumerate(ids) if i != 0 and (k == 0 or i != ids[k - 1]))
        correct += text.replace(" ", "") == sample.target.replace(" ", "")
    session.close()
    assert correct >= 0.75 * len(lines)
