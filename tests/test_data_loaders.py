"""Dataset loaders: every layout's happy path, and every bad input named by file and line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvtune.cli import run_cli
from cvtune.data.base import Dataset, read_image
from cvtune.data.loaders import (
    LOADERS,
    detect_kind,
    iter_images,
    load_classification,
    load_coco,
    load_dataset,
    load_icdar,
    load_images,
    load_ocr_lines,
)
from cvtune.errors import DatasetError, UsageError


def write_image(path: Path, image: np.ndarray | None = None) -> Path:
    """Encode with OpenCV and write via numpy, so non-ASCII file names work on every OS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image is None:
        image = np.full((16, 24, 3), 200, np.uint8)
    ok, buf = cv2.imencode(path.suffix, image)
    assert ok
    buf.tofile(str(path))
    return path


def write_lines(path: Path, *lines: str, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\ufeff" if bom else "").encode() + "\n".join(lines).encode("utf-8") + b"\n")
    return path


# ------------------------------------------------------------------------------------------------ images


def test_image_folder_is_recursive_sorted_and_skips_other_files(tmp_path: Path) -> None:
    for rel in ("b.png", "a.jpg", "sub/c.JPEG", ".hidden/d.png"):
        write_image(tmp_path / rel)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = load_images(tmp_path)
    assert ds.kind == "images"
    assert [s.path.relative_to(tmp_path).as_posix() for s in ds.samples] == ["a.jpg", "b.png", "sub/c.JPEG"]


def test_empty_folder_says_what_it_looked_for(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(DatasetError, match=r"no images found in .*looked for \.jpg, \.jpeg, \.png"):
        load_images(tmp_path)


def test_missing_folder_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_images(tmp_path / "nope")


def test_non_ascii_file_names_load_and_decode(tmp_path: Path) -> None:
    write_image(tmp_path / "Ünïcødé" / "图像 été.png", np.full((8, 8, 3), 77, np.uint8))
    ds = load_dataset(tmp_path)
    assert ds.kind == "images" and len(ds) == 1
    (sample, image), = list(iter_images(ds))
    assert sample.path.name == "图像 été.png" and int(image[0, 0, 0]) == 77


def test_unreadable_images_are_skipped_with_a_warning_and_recorded(tmp_path: Path) -> None:
    write_image(tmp_path / "good.png")
    good_jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
    (tmp_path / "corrupt.jpg").write_bytes(good_jpeg[:20])  # truncated JPEG header
    (tmp_path / "fake.png").write_text("this is text, not a PNG")
    ds = load_images(tmp_path)
    assert len(ds) == 3  # loading does not decode
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        read = [s.path.name for s, _ in iter_images(ds)]
    assert read == ["good.png"]
    assert sorted(p.name for p, _ in ds.skipped) == ["corrupt.jpg", "fake.png"]


def test_zero_readable_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_text("text")
    (tmp_path / "empty.jpg").write_bytes(b"")
    ds = load_images(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DatasetError, match="none of the 2 images"):
            list(iter_images(ds))


def test_16bit_rgba_and_gray_pngs_become_8bit_bgr(tmp_path: Path) -> None:
    deep = np.zeros((4, 5, 3), np.uint16)
    deep[..., 2] = 65535  # pure red at 16 bits
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[..., 3] = 128
    gray = np.full((4, 5), 90, np.uint8)
    for name, img in (("deep.png", deep), ("rgba.png", rgba), ("gray.png", gray)):
        write_image(tmp_path / name, img)
    images = {s.path.name: im for s, im in iter_images(load_images(tmp_path))}
    for im in images.values():
        assert im.dtype == np.uint8 and im.shape == (4, 5, 3)
    assert images["deep.png"][0, 0].tolist() == [0, 0, 255]
    assert images["rgba.png"][0, 0].tolist() == [0, 255, 0]
    assert images["gray.png"][0, 0].tolist() == [90, 90, 90]


# ------------------------------------------------------------------------------------------------ classification


def make_class_folders(root: Path) -> Path:
    for cls, n in (("dog", 2), ("cat", 3)):
        for i in range(n):
            write_image(root / cls / f"{cls}{i}.png")
    return root


def test_imagenet_style_folders_sort_classes(tmp_path: Path) -> None:
    ds = load_dataset(make_class_folders(tmp_path))
    assert ds.kind == "classification" and ds.classes == ["cat", "dog"]
    assert [s.target for s in ds.samples] == [0, 0, 0, 1, 1]


def test_given_classes_fix_the_index_and_reject_unknown_folders(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path)
    ds = load_classification(root, classes=["dog", "cat", "bird"])
    assert {s.path.parent.name: s.target for s in ds.samples} == {"cat": 1, "dog": 0}
    write_image(root / "horse" / "h.png")
    with pytest.raises(DatasetError, match="class folder 'horse'"):
        load_classification(root, classes=["dog", "cat"])


def test_labels_csv_and_tab_separated_txt(tmp_path: Path) -> None:
    for name in ("x/1.png", "x/2.png", "3.png"):
        write_image(tmp_path / name)
    write_lines(tmp_path / "labels.csv", "path,label", "x/1.png,cat", "x/2.png,dog", '"3.png",cat')
    ds = load_dataset(tmp_path)
    assert ds.kind == "classification" and ds.classes == ["cat", "dog"]
    assert [s.target for s in ds.samples] == [0, 1, 0]
    txt = write_lines(tmp_path / "other" / "labels.txt", "../x/1.png\tcat", "../3.png\tcat", bom=True)
    assert [s.target for s in load_classification(txt, classes=["dog", "cat"]).samples] == [1, 1]


def test_labels_file_errors_name_file_and_line(tmp_path: Path) -> None:
    write_image(tmp_path / "1.png")
    bad = write_lines(tmp_path / "labels.txt", "1.png,cat", "just-a-path.png")
    with pytest.raises(DatasetError, match=r"labels\.txt:2: expected"):
        load_classification(tmp_path)
    write_lines(bad, "1.png,cat", "", "missing.png,cat")
    with pytest.raises(DatasetError, match=r"labels\.txt:3: image 'missing\.png' not found"):
        load_classification(tmp_path)
    write_lines(bad, "1.png,bird")
    with pytest.raises(DatasetError, match=r"labels\.txt:1: class 'bird'"):
        load_classification(tmp_path, classes=["cat"])


# ------------------------------------------------------------------------------------------------ COCO


def coco_json(file_names: list[str]) -> dict:
    return {
        "images": [{"id": i + 1, "file_name": f, "width": 24, "height": 16} for i, f in enumerate(file_names)],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 5, 6], "area": 30,
                         "iscrowd": 0}],
        "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}],
    }


def test_coco_in_standard_layout(tmp_path: Path) -> None:
    for f in ("a.jpg", "b.jpg"):
        write_image(tmp_path / "val2017" / f)
    ann = tmp_path / "annotations" / "instances_val2017.json"
    ann.parent.mkdir()
    ann.write_text(json.dumps(coco_json(["a.jpg", "b.jpg"])))
    assert detect_kind(tmp_path) == "coco"
    ds = load_dataset(tmp_path)
    assert ds.kind == "coco" and ds.root == tmp_path / "val2017"
    assert [s.image_id for s in ds.samples] == [1, 2]
    assert ds.samples[0].target[0]["bbox"] == [1, 2, 5, 6] and ds.samples[1].target == ()
    assert ds.classes == ["person", "car"] and ds.extra["coco"]["categories"][0]["name"] == "car"


def test_coco_errors(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg")
    ann = tmp_path / "ann.json"
    ann.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DatasetError, match=r"ann\.json:2: invalid JSON"):
        load_coco(ann)
    data = coco_json(["a.jpg"])
    data["annotations"][0]["image_id"] = 9
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="unknown image id 9"):
        load_coco(ann)
    data = coco_json(["a.jpg", "gone.jpg"])
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="image 'gone.jpg'"):
        load_coco(ann, images_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ ICDAR


def test_icdar_same_folder_with_bom_commas_and_dont_care(tmp_path: Path) -> None:
    write_image(tmp_path / "img_1.jpg")
    write_image(tmp_path / "img_2.jpg")
    write_lines(tmp_path / "gt_img_1.txt", "1,2,30,2,30,12,1,12,Hello, world", "5,5,9,5,9,9,5,9,###", bom=True)
    write_lines(tmp_path / "gt_img_2.txt", "")
    assert detect_kind(tmp_path) == "icdar"
    ds = load_dataset(tmp_path)
    boxes = ds.samples[0].target
    assert ds.kind == "icdar" and len(ds) == 2
    assert boxes[0].text == "Hello, world" and boxes[0].points[2] == (30.0, 12.0) and not boxes[0].ignore
    assert boxes[1].ignore and ds.samples[1].target == ()


def test_icdar_images_and_gt_subfolders(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "img_7.png")
    write_lines(tmp_path / "gt" / "gt_img_7.txt", "1.5,2,30,2,30,12,1,12,2024")
    ds = load_icdar(tmp_path)
    assert ds.samples[0].target[0].text == "2024" and ds.samples[0].target[0].points[0] == (1.5, 2.0)


def test_icdar_bad_inputs_name_file_and_line(tmp_path: Path) -> None:
    write_image(tmp_path / "img_1.jpg")
    with pytest.raises(DatasetError, match=r"missing ground truth .*gt_img_1\.txt"):
        load_icdar(tmp_path)
    gt = write_lines(tmp_path / "gt_img_1.txt", "1,2,3,4,5,6,7,8,ok", "1,2,3,4,5,6,seven,8,x")
    with pytest.raises(DatasetError, match=r"gt_img_1\.txt:2: polygon has 3 points, needs 4"):
        load_icdar(tmp_path)
    write_lines(gt, "hello world")
    with pytest.raises(DatasetError, match=r"gt_img_1\.txt:1: malformed line"):
        load_icdar(tmp_path)


# ------------------------------------------------------------------------------------------------ OCR lines


def test_ocr_lines_keep_spaces_and_tabs_in_text(tmp_path: Path) -> None:
    write_image(tmp_path / "crops" / "l1.png")
    write_image(tmp_path / "crops" / "l2.png")
    write_lines(tmp_path / "labels.txt", "crops/l1.png\tTotal: $12.99", "crops/l2.png\tHello world")
    assert detect_kind(tmp_path) == "ocr_lines"
    ds = load_dataset(tmp_path)
    assert ds.kind == "ocr_lines" and [s.target for s in ds.samples] == ["Total: $12.99", "Hello world"]


def test_ocr_lines_errors(tmp_path: Path) -> None:
    write_image(tmp_path / "l1.png")
    write_lines(tmp_path / "labels.txt", "l1.png\tok", "l1.png no tab here")
    with pytest.raises(DatasetError, match=r"labels\.txt:2: expected 'relative/path<TAB>text'"):
        load_ocr_lines(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no labels.txt"):
        load_ocr_lines(tmp_path / "empty")


# ------------------------------------------------------------------------------------------------ registry, split


def test_unknown_kind_and_option_list_the_valid_ones(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    with pytest.raises(UsageError, match="choose one of: " + ", ".join(LOADERS)):
        load_dataset(tmp_path, kind="voc")
    with pytest.raises(UsageError, match="no option classes"):
        load_dataset(tmp_path, kind="images", classes=["a"])


def test_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    for i in range(20):
        write_image(tmp_path / f"{i:02d}.png")
    ds = load_images(tmp_path)
    calib, evaluation = ds.split(0.25, seed=3)
    again, _ = ds.split(0.25, seed=3)
    other, _ = ds.split(0.25, seed=4)
    names = lambda d: [s.path.name for s in d.samples]  # noqa: E731
    assert names(calib) == names(again) and names(calib) != names(other)
    assert len(calib) == 5 and len(evaluation) == 15
    assert not set(names(calib)) & set(names(evaluation))
    assert isinstance(calib, Dataset) and read_image(calib.samples[0].path) is not None


def test_cli_data_info_reports_kind_and_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_class_folders(tmp_path / "ds")
    assert run_cli(["data", "info", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "classification" and info["samples"] == 5 and info["classes"] == ["cat", "dog"]
    assert run_cli(["data", "info", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
