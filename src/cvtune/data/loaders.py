"""Loaders for the dataset layouts users have: a plain image folder, ImageNet-style classes or a labels file,
COCO JSON, ICDAR-2015 text boxes, OCR line labels, segmentation masks. `load_dataset(path)` detects the layout.

Loaders validate the layout and name the exact file and line that is wrong, but never decode images (cheap on
large folders): `iter_images(dataset)` decodes, skipping unreadable files with a warning recorded in
`dataset.skipped`.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, UsageError
from ..files import display_path
from .base import IMAGE_SUFFIXES, Dataset, Sample, TextBox, read_image_or_warn

__all__ = [
    "LOADERS",
    "detect_kind",
    "iter_images",
    "load_classification",
    "load_coco",
    "load_dataset",
    "load_icdar",
    "load_images",
    "load_ocr_lines",
    "load_segmentation",
    "read_mask",
]

LABEL_FILES = ("labels.txt", "labels.csv")
DONT_CARE = "###"
SYNTH_MARKER = "cvtune synth-text"  # meta.json "generator" of a `cvtune data synth-text` output folder


# ---------------------------------------------------------------------------------------------- helpers


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _visible(path: Path, root: Path) -> bool:
    """False for files under hidden folders (.git, .ipynb_checkpoints) or hidden files."""
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _find_images(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Image files under `folder`, sorted by their relative path so the order is the same on every machine."""
    walk = folder.rglob("*") if recursive else folder.iterdir()
    found = [p for p in walk if _is_image(p) and _visible(p, folder)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _no_images(folder: Path) -> DatasetError:
    return DatasetError(f"no images found in {folder} (looked for {', '.join(IMAGE_SUFFIXES)}); "
                        f"point cvtune at the folder that holds the images")


def _require_dir(path: str | os.PathLike[str], what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{what} folder not found: {path}")
    if not path.is_dir():
        raise DatasetError(f"{path} is a file; a {what} dataset is a folder")
    return path


def _read_text(path: Path) -> str:
    """A text file as str; UTF-8 with or without BOM, universal newlines. Bad encoding is a DatasetError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not valid UTF-8 text; save the file as UTF-8") from exc


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) for every non-blank line, without the line ending."""
    for number, line in enumerate(io.StringIO(_read_text(path), newline=None), start=1):
        line = line.rstrip("\n")
        if line.strip():
            yield number, line


def _resolve_listed(base: Path, rel: str, where: str) -> Path:
    """An image path listed in a labels file, relative to the file's folder; it must exist."""
    rel = rel.strip()
    path = (base / rel) if not Path(rel).is_absolute() else Path(rel)
    if not path.is_file():
        raise DatasetError(f"{where}: image '{rel}' not found (paths are relative to {base})")
    return path


def _empty_check(samples: list[Sample], root: Path) -> None:
    if not samples:
        raise _no_images(root)


# ---------------------------------------------------------------------------------------------- images


def load_images(path: str | os.PathLike[str]) -> Dataset:
    """A plain folder of images (searched recursively, sorted) or a single image file; no labels."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DatasetError(f"{path} is not an image (expected one of {', '.join(IMAGE_SUFFIXES)})")
        return Dataset("images", path.parent, [Sample(path)])
    root = _require_dir(path, "image")
    samples = [Sample(p) for p in _find_images(root)]
    _empty_check(samples, root)
    return Dataset("images", root, samples)


# ---------------------------------------------------------------------------------------------- classification


def load_classification(path: str | os.PathLike[str], *, classes: list[str] | None = None) -> Dataset:
    """ImageNet-style folders (one subfolder per class, classes sorted) or a labels.txt / labels.csv file
    (`relative/path.jpg,class` or `path<TAB>class`). With `classes` given, targets index into that list and an
    unknown class is an error."""
    path = Path(path)
    if path.is_file():
        return _classification_from_file(path, classes)
    root = _require_dir(path, "classification")
    for name in LABEL_FILES:
        if (root / name).is_file():
            return _classification_from_file(root / name, classes)
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise DatasetError(f"{root} has no class subfolders and no {' or '.join(LABEL_FILES)}; "
                           f"put each class's images in its own subfolder (ImageNet style)")
    names = [d.name for d in folders]
    if classes is not None:
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise DatasetError(f"class folder '{unknown[0]}' in {root} is not one of the given classes "
                               f"({', '.join(classes)}); rename or remove it, or add it to the class list")
    class_list = list(classes) if classes is not None else names
    index = {name: i for i, name in enumerate(class_list)}
    samples = [Sample(p, index[d.name]) for d in folders for p in _find_images(d)]
    stray = [p for p in root.iterdir() if _is_image(p)]
    if stray:
        raise DatasetError(f"image {stray[0].name} lies in {root} outside any class folder; "
                           f"move it into its class's subfolder")
    _empty_check(samples, root)
    return Dataset("classification", root, samples, classes=class_list)


def _split_label_line(line: str, where: str, *, csv_file: bool) -> tuple[str, str]:
    if csv_file:
        fields = next(csv.reader([line]))
    elif "\t" in line:
        fields = line.split("\t")
    else:
        fields = line.rsplit(",", 1)
    if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
        raise DatasetError(f"{where}: expected 'relative/path.jpg,class' or 'path<TAB>class', got {line[:80]!r}")
    return fields[0].strip(), fields[1].strip()


def _classification_from_file(file: Path, classes: list[str] | None) -> Dataset:
    rows: list[tuple[str, str, str]] = []
    for number, line in _lines(file):
        where = f"{file}:{number}"
        rel, label = _split_label_line(line, where, csv_file=file.suffix.lower() == ".csv")
        if not rows and rel.lower() in {"path", "file", "filename", "image", "img"}:
            continue  # a header row such as "path,label"
        rows.append((rel, label, where))
    class_list = list(classes) if classes is not None else sorted({label for _, label, _ in rows})
    index = {name: i for i, name in enumerate(class_list)}
    samples = []
    for rel, label, where in rows:
        if label not in index:
            raise DatasetError(f"{where}: class '{label}' is not one of the given classes "
                               f"({', '.join(class_list)}); fix the label or the class list")
        samples.append(Sample(_resolve_listed(file.parent, rel, where), index[label]))
    if not samples:
        raise DatasetError(f"{file} lists no images; add 'relative/path.jpg,class' lines")
    return Dataset("classification", file.parent, samples, classes=class_list, extra={"labels_file": str(file)})


# ---------------------------------------------------------------------------------------------- COCO


def _find_coco_json(folder: Path) -> Path:
    candidates = sorted(folder.glob("*.json")) + sorted((folder / "annotations").glob("*.json"))
    candidates = [c for c in candidates if c.name != "meta.json" and c.is_file()]
    instances = [c for c in candidates if c.name.startswith("instances_")]
    if len(instances) == 1:
        return instances[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(f"no COCO annotation .json in {folder} or {folder / 'annotations'}; "
                           f"pass the annotation file itself")
    raise DatasetError(f"several .json files in {folder} ({', '.join(c.name for c in candidates[:5])}); "
                       f"pass the COCO annotation file itself")


def _coco_images_dir(json_path: Path, first_file: str) -> Path:
    """Where the images of a COCO file live: next to it, images/, or COCO's own annotations/../val2017 layout."""
    stem = json_path.stem.removeprefix("instances_")
    bases = [json_path.parent, json_path.parent.parent]
    candidates = [d for b in bases for d in (b, b / "images", b / stem, b / "images" / stem)]
    for folder in candidates:
        if (folder / first_file).is_file():
            return folder
    raise DatasetError(f"cannot find image '{first_file}' of {json_path} (looked in "
                       f"{', '.join(str(c) for c in dict.fromkeys(candidates))}); pass images_dir")


def _require(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise DatasetError(f"{where}: {what}")


def load_coco(path_or_json: str | os.PathLike[str], images_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """COCO detection JSON. Sample.target = tuple of the image's annotation dicts, Sample.image_id set,
    classes = category names by id, extra["coco"] = the parsed JSON (pycocotools reads it)."""
    path = Path(path_or_json)
    if path.is_dir():
        path = _find_coco_json(path)
    if not path.is_file():
        raise DatasetError(f"COCO annotation file not found: {path}")
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{display_path(path)}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise DatasetError(f"{display_path(path)}: JSON nested too deeply to be a COCO file") from None
    where = display_path(path)
    _require(isinstance(data, dict) and isinstance(data.get("images"), list), where,
             "not a COCO file: needs an 'images' list (and 'annotations', 'categories')")
    from ..schemas import CocoFile, parse  # pydantic: imported only for COCO files

    doc = parse(CocoFile, data, source=path, error=DatasetError)  # types: ids, file names, boxes
    cat_ids = {cat.id: cat.name for cat in doc.categories}
    images: dict[Any, dict] = {}
    for i, img in enumerate(doc.images):
        _require(img.id not in images, where, f"images.{i}: duplicate image id {img.id!r}")
        images[img.id] = data["images"][i]
    per_image: dict[Any, list[dict]] = {img_id: [] for img_id in images}
    for i, ann in enumerate(doc.annotations):
        _require(ann.image_id in images, where, f"annotations.{i} refers to unknown image id {ann.image_id!r}")
        _require(ann.category_id in cat_ids, where,
                 f"annotations.{i} refers to unknown category id {ann.category_id!r}")
        per_image[ann.image_id].append(data["annotations"][i])
    if not images:
        raise DatasetError(f"{path} lists no images")
    ordered = sorted(images.values(), key=lambda im: (str(type(im["id"])), im["id"]))
    root = Path(images_dir) if images_dir is not None else _coco_images_dir(path, ordered[0]["file_name"])
    samples = []
    for img in ordered:
        file = root / img["file_name"]
        if not file.is_file():
            raise DatasetError(f"{path}: image '{img['file_name']}' (id {img['id']}) not found in {root}; "
                               f"pass the right images_dir or remove it from the JSON")
        samples.append(Sample(file, tuple(per_image[img["id"]]), image_id=img["id"]))
    classes = [cat_ids[k] for k in sorted(cat_ids)]
    return Dataset("coco", root, samples, classes=classes,
                   extra={"coco": data, "annotation_file": str(path), "category_ids": sorted(cat_ids)})


# ---------------------------------------------------------------------------------------------- ICDAR


def _parse_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def parse_icdar_line(line: str, where: str) -> TextBox:
    """One ICDAR-2015 gt line `x1,y1,x2,y2,x3,y3,x4,y4,transcription` (the text may contain commas)."""
    fields = line.split(",")
    coords: list[float] = []
    for field in fields[:8]:
        value = _parse_number(field.strip())
        if value is None:
            break
        coords.append(value)
    if len(coords) < 8:
        if len(coords) >= 2 and len(coords) % 2 == 0:
            raise DatasetError(f"{where}: polygon has {len(coords) // 2} points, needs 4 "
                               f"(x1,y1,x2,y2,x3,y3,x4,y4,transcription)")
        raise DatasetError(f"{where}: malformed line {line[:80]!r}; expected x1,y1,x2,y2,x3,y3,x4,y4,transcription")
    text = ",".join(fields[8:]).strip()
    points = tuple((coords[i], coords[i + 1]) for i in range(0, 8, 2))
    return TextBox(points, text, ignore=text == DONT_CARE)


def read_icdar_gt(file: Path) -> tuple[TextBox, ...]:
    """All boxes of one gt_img_N.txt; an empty file means an image without text."""
    return tuple(parse_icdar_line(line, f"{file}:{number}") for number, line in _lines(file))


def _icdar_dirs(root: Path) -> tuple[Path, Path]:
    for images, gt in ((root / "images", root / "gt"), (root / "imgs", root / "gts")):
        if images.is_dir() and gt.is_dir():
            return images, gt
    return root, root


def load_icdar(path: str | os.PathLike[str]) -> Dataset:
    """ICDAR-2015 style: img_N.jpg + gt_img_N.txt in the same folder, or in images/ + gt/ subfolders.
    Sample.target = tuple of TextBox; `###` marks don't-care regions (TextBox.ignore)."""
    root = _require_dir(path, "ICDAR")
    image_dir, gt_dir = _icdar_dirs(root)
    images = _find_images(image_dir, recursive=False)
    if not images:
        raise _no_images(image_dir)
    samples = []
    for image in images:
        gt = gt_dir / f"gt_{image.stem}.txt"
        if not gt.is_file():
            raise DatasetError(f"missing ground truth {gt} for image {image.name}; ICDAR layout is img_N.jpg "
                               f"+ gt_img_N.txt (same folder or images/ + gt/)")
        samples.append(Sample(image, read_icdar_gt(gt)))
    return Dataset("icdar", root, samples, extra={"gt_dir": str(gt_dir)})


# ---------------------------------------------------------------------------------------------- OCR lines


def load_ocr_lines(path: str | os.PathLike[str]) -> Dataset:
    """Text-line crops listed in labels.txt (or the given file) as `relative/path<TAB>text`; target = text."""
    path = Path(path)
    if path.is_dir():
        file = path / "labels.txt"
        if not file.is_file():
            raise DatasetError(f"no labels.txt in {path}; OCR line sets list 'relative/path<TAB>text' lines")
    elif path.is_file():
        file = path
    else:
        raise DatasetError(f"OCR labels file or folder not found: {path}")
    samples = []
    for number, line in _lines(file):
        where = f"{file}:{number}"
        if "\t" not in line:
            raise DatasetError(f"{where}: expected 'relative/path<TAB>text', found no TAB in {line[:80]!r}")
        rel, text = line.split("\t", 1)
        if not text.strip():
            raise DatasetError(f"{where}: empty transcription for '{rel}'; remove the line or add the text")
        samples.append(Sample(_resolve_listed(file.parent, rel, where), text))
    if not samples:
        raise DatasetError(f"{file} lists no images; add 'relative/path<TAB>text' lines")
    return Dataset("ocr_lines", file.parent, samples, extra={"labels_file": str(file)})


# ---------------------------------------------------------------------------------------------- segmentation

SEGMENTATION_DIRS = ("images", "masks")
CLASSES_FILE = "classes.txt"


def load_segmentation(path: str | os.PathLike[str]) -> Dataset:
    """Semantic segmentation labels:

        root/images/<name>.jpg|png|...   the photos (searched recursively)
        root/masks/<name>.png            one single-channel PNG per image, same relative path and stem, same size:
                                         pixel value = class index, 255 = ignore (not scored)
        root/classes.txt                 optional: class names, one per line, line N = class index N

    Target = the mask's Path (decoded when scored). A photo without its mask is an error naming both files."""
    root = _require_dir(path, "segmentation")
    images_dir, masks_dir = (root / name for name in SEGMENTATION_DIRS)
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise DatasetError(f"{root} is not a segmentation dataset: it needs images/ (the photos) and masks/ "
                           f"(one class-index PNG per photo, same name)")
    samples = []
    for image in _find_images(images_dir):
        rel = image.relative_to(images_dir).with_suffix(".png")
        mask = masks_dir / rel
        if not mask.is_file():
            raise DatasetError(f"missing mask {mask} for image {image}; masks/ holds one PNG per image with the "
                               f"same relative path and name")
        samples.append(Sample(image, mask))
    _empty_check(samples, images_dir)
    classes = [line.strip() for _, line in _lines(root / CLASSES_FILE)] if (root / CLASSES_FILE).is_file() else []
    return Dataset("segmentation", root, samples, classes=classes)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """A label mask as (H, W) uint8 class indices; color or 16-bit masks are an error that says what to save."""
    import cv2

    raw = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else np.zeros(0, np.uint8)
    mask = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if mask is None:
        raise DatasetError(f"cannot read mask {path}; save it as a single-channel PNG of class indices")
    if mask.ndim == 3:
        if mask.shape[2] >= 3 and np.array_equal(mask[..., 0], mask[..., 1]) and np.array_equal(mask[..., 0],
                                                                                                 mask[..., 2]):
            mask = mask[..., 0]
        else:
            raise DatasetError(f"mask {path} has colors; save it as a single-channel PNG whose pixel values are "
                               f"class indices (0, 1, ..., 255 = ignore)")
    if mask.dtype != np.uint8:
        raise DatasetError(f"mask {path} is {mask.dtype}; save it as an 8-bit PNG of class indices")
    return mask


# ---------------------------------------------------------------------------------------------- registry


LOADERS: dict[str, Callable[..., Dataset]] = {
    "images": load_images,
    "classification": load_classification,
    "coco": load_coco,
    "icdar": load_icdar,
    "ocr_lines": load_ocr_lines,
    "segmentation": load_segmentation,
}


def _looks_like_classification(file: Path) -> bool:
    """A labels file whose labels repeat and hold no spaces is a class list; otherwise it is OCR text."""
    if file.suffix.lower() == ".csv":
        return True
    labels = []
    for _, line in _lines(file):
        if "\t" not in line:
            return "," in line  # `path,class` lines are classification; anything else will fail to load anyway
        labels.append(line.split("\t", 1)[1].strip())
    return bool(labels) and all(" " not in x for x in labels) and len(set(labels)) <= max(1, len(labels) // 2)


def _is_coco_json(file: Path) -> bool:
    try:
        with open(file, "rb") as fh:
            head = fh.read(1 << 20)
    except OSError:
        return False
    return b'"images"' in head


def _is_synth_root(folder: Path) -> bool:
    meta = folder / "meta.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("generator") == SYNTH_MARKER
    except (OSError, ValueError, AttributeError):
        return False


def detect_kind(path: str | os.PathLike[str]) -> str:
    """Guess the layout of `path` (see LOADERS); `kind=` on load_dataset overrides the guess."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            return "coco"
        if suffix in (".txt", ".tsv", ".csv"):
            return "classification" if _looks_like_classification(path) else "ocr_lines"
        if suffix in IMAGE_SUFFIXES:
            return "images"
        raise DatasetError(f"cannot tell what kind of dataset {path} is; pass a folder or say the kind "
                           f"({', '.join(LOADERS)})")
    if _is_synth_root(path):
        raise DatasetError(f"{path} is a synth-text output; use {path / 'textdet'} (text detection, icdar) "
                           f"or {path / 'ocr'} (recognition, ocr_lines)")
    if all((path / name).is_dir() for name in SEGMENTATION_DIRS):
        return "segmentation"
    image_dir, gt_dir = _icdar_dirs(path)
    if any(gt_dir.glob("gt_*.txt")):
        return "icdar"
    for name in LABEL_FILES:
        if (path / name).is_file():
            return "classification" if _looks_like_classification(path / name) else "ocr_lines"
    jsons = [j for j in list(path.glob("*.json")) + list((path / "annotations").glob("*.json"))
             if j.name != "meta.json" and j.is_file()]
    if any(_is_coco_json(j) for j in jsons):
        return "coco"
    top_images = [p for p in path.iterdir() if _is_image(p)]
    class_dirs = [d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")
                  and any(_is_image(p) for p in d.iterdir())]
    if not top_images and len(class_dirs) >= 2:
        return "classification"
    return "images"


def load_dataset(path: str | os.PathLike[str], kind: str | None = None, **options: Any) -> Dataset:
    """Load `path` with the loader for `kind` (detected when None). `options` go to that loader
    (classes= for classification, images_dir= for coco)."""
    if kind is None:
        kind = detect_kind(path)
    if kind not in LOADERS:
        raise UsageError(f"unknown dataset kind '{kind}'; choose one of: {', '.join(LOADERS)}")
    loader = LOADERS[kind]
    accepted = list(inspect.signature(loader).parameters)[1:]
    unknown = sorted(k for k, v in options.items() if k not in accepted and v is not None)
    if unknown:
        takes = ", ".join(accepted) or "no options"
        raise UsageError(f"the {kind} loader has no option {', '.join(unknown)}; it takes: {takes}")
    return loader(path, **{k: v for k, v in options.items() if v is not None})


def iter_images(dataset: Dataset) -> Iterator[tuple[Sample, np.ndarray]]:
    """Decode each sample's image (8-bit BGR). Unreadable files are warned about, recorded in dataset.skipped
    and skipped; a dataset where no image at all can be read is a DatasetError."""
    read = 0
    for sample in dataset.samples:
        image = read_image_or_warn(sample.path, dataset.skipped)
        if image is None:
            continue
        read += 1
        yield sample, image
    if dataset.samples and read == 0:
        raise DatasetError(f"none of the {len(dataset.samples)} images in {dataset.root} could be read "
                           f"(corrupt or not images); check the files")
