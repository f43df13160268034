"""A labelled synthetic text set, so text detection and OCR can be measured without anyone's private images.

Lines and small paragraphs are drawn with Pillow on natural-looking backgrounds (synth_backgrounds), in mixed
fonts (synth_fonts) and sizes, with good contrast, small rotations and mild noise/blur/JPEG. Every polygon is
exact: it is the ink bounding box of the rendered glyphs, moved by the same affine transform as the pixels.

Output layout of `generate_text_set(DIR)` (`cvtune data synth-text -o DIR`):

    DIR/textdet/img_N.jpg, DIR/textdet/gt_img_N.txt   ICDAR-2015: one `x1,y1,...,x4,y4,text` line per text LINE
                                                      (clockwise from top-left; `###` = don't care: tiny or
                                                      heavily blurred text). N = 1..n.
    DIR/ocr/crops/line_N_K.png, DIR/ocr/labels.txt    upright crops of line K of image N with a few pixels of
                                                      margin; labels.txt lines are `crops/line_N_K.png<TAB>text`
    DIR/words.jsonl                                   per image: its lines with word-level polygons
    DIR/meta.json                                     generator, version, seed, n, config, fonts, counts

Image i depends only on (seed, i) and the fonts found, so `--n 6` gives the first 6 images of `--n 200`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import UsageError
from ..files import atomic_dir
from .loaders import SYNTH_MARKER
from .synth_backgrounds import random_background
from .synth_content import random_line
from .synth_fonts import FONT_SETS, FontInfo, find_fonts

__all__ = ["GENERATOR_VERSION", "SynthConfig", "SynthImage", "SynthLine", "generate_text_set", "line_crop",
           "render_image"]

GENERATOR_VERSION = 1
Point = tuple[float, float]


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Sizes are (height, width) in pixels; font sizes in pixels (em size)."""

    n: int = 200
    seed: int = 0
    min_size: tuple[int, int] = (480, 640)
    max_size: tuple[int, int] = (720, 960)
    min_lines: int = 2
    max_lines: int = 8
    font_px: tuple[int, int] = (18, 56)
    max_angle: float = 5.0  # degrees; most blocks stay within 1 degree
    dont_care_rate: float = 0.3  # chance an image also gets a tiny or blurred '###' line
    fonts: str = "all"  # see synth_fonts.FONT_SETS

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UsageError(f"the number of images must be at least 1 (got {self.n})")
        if not 1 <= self.min_lines <= self.max_lines:
            raise UsageError(f"need 1 <= min_lines <= max_lines (got {self.min_lines}, {self.max_lines})")
        if min(self.min_size) < 128 or any(a > b for a, b in zip(self.min_size, self.max_size, strict=True)):
            raise UsageError(f"image sizes must be >= 128 px and min <= max (got {self.min_size}, {self.max_size})")
        if not 8 <= self.font_px[0] <= self.font_px[1]:
            raise UsageError(f"font sizes must be >= 8 px and min <= max (got {self.font_px})")
        if not 0 <= self.max_angle <= 45:
            raise UsageError(f"max_angle must be in [0, 45] degrees (got {self.max_angle})")
        if not 0 <= self.dont_care_rate <= 1:
            raise UsageError(f"dont_care_rate must be in [0, 1] (got {self.dont_care_rate})")
        if self.fonts not in FONT_SETS:
            raise UsageError(f"unknown font set '{self.fonts}'; choose one of: {', '.join(FONT_SETS)}")


@dataclass(frozen=True)
class SynthLine:
    """One text line: 4 corners (clockwise from top-left, image pixels), its text, and its words' polygons."""

    points: tuple[Point, ...]
    text: str
    ignore: bool = False
    words: tuple[tuple[tuple[Point, ...], str], ...] = ()
    font: str = ""
    size: int = 0


@dataclass(frozen=True)
class SynthImage:
    image: np.ndarray  # (H, W, 3) uint8 BGR, before JPEG compression
    lines: tuple[SynthLine, ...]
    background: str
    jpeg_quality: int


# ---------------------------------------------------------------------------------------------- rendering


@dataclass
class _Block:
    """Lines drawn on one canvas (block coordinates) before they are rotated into the image."""

    mask: np.ndarray  # (h, w) float32 coverage 0..1
    lines: list[tuple[tuple[Point, ...], str, list[tuple[tuple[Point, ...], str]]]]
    size: int
    font: str


def _ink_box(mask: np.ndarray, x0: int = 0, x1: int | None = None, *, band: tuple[int, int] | None = None
             ) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the pixels drawn in columns [x0, x1), right/bottom exclusive; with `band`
    (top, bottom) the box spans at least those rows."""
    sub = mask[:, x0:x1] > 0.25
    rows, cols = np.flatnonzero(sub.any(1)), np.flatnonzero(sub.any(0))
    if rows.size == 0:
        return None
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    if band is not None:
        top, bottom = min(top, band[0]), max(bottom, band[1])
    return x0 + int(cols[0]), top, x0 + int(cols[-1]) + 1, bottom


def _corners(box: tuple[float, float, float, float]) -> tuple[Point, ...]:
    left, top, right, bottom = box
    return ((left, top), (right, top), (right, bottom), (left, bottom))


def _render_block(texts: list[str], font_info: FontInfo, size: int, rng: np.random.Generator) -> _Block | None:
    """Draw lines left-aligned (or centred) with a gap of 0.7-1.2x the font size between them. A line's box is
    its ink box, stretched vertically to at least the font's cap-height..baseline band, so that 'cover' and
    'Cover' get boxes of the same height, as a detector (and a human annotator) would draw them."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_info.path), size)
    ascent, descent = font.getmetrics()
    cap_height = -font.getbbox("H", anchor="ls")[1]
    pitch = ascent + descent + int(round(size * rng.uniform(0.7, 1.2)))
    pad = size
    widths = [int(np.ceil(font.getlength(t))) for t in texts]
    width, height = max(widths) + 2 * pad, (len(texts) - 1) * pitch + ascent + descent + 2 * pad
    centred = len(texts) > 1 and rng.random() < 0.25
    mask = np.zeros((height, width), np.float32)
    lines = []
    for i, (text, text_width) in enumerate(zip(texts, widths, strict=True)):
        canvas = Image.new("L", (width, height), 0)
        x = pad + ((max(widths) - text_width) // 2 if centred else 0)
        y = pad + i * pitch
        ImageDraw.Draw(canvas).text((x, y), text, font=font, fill=255)
        line_mask = np.asarray(canvas, np.float32) / 255.0
        band = (y + ascent - cap_height, y + ascent)  # cap top, baseline
        box = _ink_box(line_mask, band=band)
        if box is None:
            return None
        words = []
        start = 0
        for word in text.split(" "):
            if word:
                wx0 = x + int(np.floor(font.getlength(text[:start])))
                wx1 = x + int(np.ceil(font.getlength(text[: start + len(word)])))
                wbox = _ink_box(line_mask, max(0, wx0 - 1), min(width, wx1 + 1), band=band)
                if wbox is not None:
                    words.append((_corners(wbox), word))
            start += len(word) + 1
        lines.append((_corners(box), text, words))
        mask = np.maximum(mask, line_mask)
    return _Block(mask, lines, size, font_info.name)


def _fit_texts(rng: np.random.Generator, n_lines: int, font_info: FontInfo, size: int, max_width: float
               ) -> list[str] | None:
    """n_lines random lines that fit in max_width pixels at this font size (fewer words when too long)."""
    from PIL import ImageFont

    font = ImageFont.truetype(str(font_info.path), size)
    texts = []
    for _ in range(n_lines):
        for max_words in (5, 4, 3, 2, 1, 1, 1):
            text = random_line(rng, max_words=max_words)
            if font.getlength(text) <= max_width:
                texts.append(text)
                break
        else:
            return None
    return texts


def _affine(block_shape: tuple[int, int], angle: float, centre: Point) -> np.ndarray:
    """2x3 matrix rotating the block about its own centre by `angle` degrees and moving it to `centre`."""
    h, w = block_shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    matrix[:, 2] += (centre[0] - w / 2, centre[1] - h / 2)
    return matrix


def _transform(points: tuple[Point, ...], matrix: np.ndarray) -> tuple[Point, ...]:
    pts = np.hstack([np.asarray(points, np.float64), np.ones((len(points), 1))]) @ matrix.T
    return tuple((round(float(x), 2), round(float(y), 2)) for x, y in pts)


def _colour_with_luminance(rng: np.random.Generator, luminance: float) -> np.ndarray:
    """A BGR colour of the given luminance (0..255), from grey to fairly saturated."""
    saturation = rng.uniform(0, 0.8)
    hue = (1 - saturation) + saturation * rng.uniform(0, 1, 3)
    weights = np.array([0.114, 0.587, 0.299])
    colour = hue * luminance / max(float(hue @ weights), 1e-3)
    return np.clip(colour, 0, 255).astype(np.float32)


def _luminance(image: np.ndarray) -> np.ndarray:
    return image @ np.array([0.114, 0.587, 0.299], np.float32)


def _text_colour(rng: np.random.Generator, ground: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(text colour, plate colour or None) giving a luminance gap of >= 80 against every ground pixel under
    the text. When the ground spans light and dark, the text gets a plate (a label or sticker) of its own."""
    lum = _luminance(ground)
    low, high = float(np.percentile(lum, 2)), float(np.percentile(lum, 98))
    options = []
    if low - 80 >= 0:
        options.append(("dark", low))
    if high + 80 <= 255:
        options.append(("light", high))
    if not options:
        plate_dark = rng.random() < 0.3
        plate_lum = rng.uniform(25, 70) if plate_dark else rng.uniform(200, 245)
        plate = _colour_with_luminance(rng, plate_lum)
        target = rng.uniform(225, 255) if plate_dark else rng.uniform(0, 60)
        return _colour_with_luminance(rng, target), plate
    side, edge = options[int(rng.integers(len(options)))]
    target = rng.uniform(0, min(edge - 80, 90)) if side == "dark" else rng.uniform(max(edge + 80, 190), 255)
    return _colour_with_luminance(rng, target), None


def _paste(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    a = alpha[..., None]
    image *= 1 - a
    image += a * colour[None, None]


class _Occupancy:
    """Axis-aligned boxes already used (with margins), so blocks never touch or merge."""

    def __init__(self) -> None:
        self.boxes: list[tuple[float, float, float, float]] = []

    def free(self, box: tuple[float, float, float, float]) -> bool:
        x0, y0, x1, y1 = box
        return all(x1 <= a0 or x0 >= a1 or y1 <= b0 or y0 >= b1 for a0, b0, a1, b1 in self.boxes)

    def add(self, box: tuple[float, float, float, float]) -> None:
        self.boxes.append(box)


def _extent(block: _Block, grow: float = 0.0) -> tuple[float, float, float, float]:
    """The union of the block's line boxes (block coordinates), grown by `grow` pixels."""
    pts = np.asarray([p for points, _, _ in block.lines for p in points], np.float64)
    (left, top), (right, bottom) = pts.min(0), pts.max(0)
    return left - grow, top - grow, right + grow, bottom + grow


def _place(block: _Block, angle: float, image_shape: tuple[int, int], occupied: _Occupancy,
           rng: np.random.Generator, *, grow: float = 0.0) -> np.ndarray | None:
    """An affine matrix putting the block's boxes (grown by `grow`) inside the image away from other blocks."""
    h, w = image_shape
    corners = np.asarray(_corners(_extent(block, grow)), np.float64)
    margin = 0.9 * block.size
    for _ in range(40):
        centre = (rng.uniform(0, w), rng.uniform(0, h))
        matrix = _affine(block.mask.shape, angle, centre)
        pts = np.hstack([corners, np.ones((4, 1))]) @ matrix.T
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        if x0 < 6 or y0 < 6 or x1 > w - 6 or y1 > h - 6:
            continue
        box = (x0 - margin, y0 - margin, x1 + margin, y1 + margin)
        if occupied.free(box):
            occupied.add(box)
            return matrix
    return None


def _random_angle(rng: np.random.Generator, max_angle: float) -> float:
    if rng.random() < 0.6:
        return float(rng.uniform(-min(1.0, max_angle), min(1.0, max_angle)))
    return float(rng.uniform(-max_angle, max_angle))


def _font_size(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))


def _draw_block(image: np.ndarray, block: _Block, matrix: np.ndarray, rng: np.random.Generator, *,
                blur: float = 0.0) -> None:
    h, w = image.shape[:2]
    alpha = cv2.warpAffine(block.mask, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    if blur > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), blur)
    footprint = cv2.dilate((alpha > 0.05).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    colour, plate = _text_colour(rng, image[footprint])
    if plate is not None:
        quad = np.asarray(_transform(_corners(_extent(block, 0.5 * block.size)), matrix))
        plate_mask = np.zeros((h, w), np.float32)
        cv2.fillConvexPoly(plate_mask, np.round(quad * 16).astype(np.int32), 1.0, cv2.LINE_AA, shift=4)
        _paste(image, cv2.GaussianBlur(plate_mask, (0, 0), 1.0), plate)
    _paste(image, alpha * rng.uniform(0.9, 1.0), colour)


def _add_lines(image: np.ndarray, config: SynthConfig, fonts: tuple[FontInfo, ...], occupied: _Occupancy,
               rng: np.random.Generator, *, n_lines: int) -> list[SynthLine]:
    h, w = image.shape[:2]
    lines: list[SynthLine] = []
    attempts = 0
    while len(lines) < n_lines and attempts < 3 * n_lines + 6:
        attempts += 1
        left = n_lines - len(lines)
        block_lines = int(rng.integers(2, min(4, left) + 1)) if left >= 2 and rng.random() < 0.4 else 1
        font = fonts[int(rng.integers(len(fonts)))]
        size = _font_size(rng, *config.font_px)
        texts = _fit_texts(rng, block_lines, font, size, 0.85 * w)
        block = _render_block(texts, font, size, rng) if texts else None
        if block is None:
            continue
        angle = _random_angle(rng, config.max_angle)
        matrix = _place(block, angle, (h, w), occupied, rng)
        if matrix is None:
            continue
        _draw_block(image, block, matrix, rng)
        for points, text, words in block.lines:
            lines.append(SynthLine(_transform(points, matrix), text, False,
                                   tuple((_transform(p, matrix), t) for p, t in words), block.font, size))
    return lines


def _add_dont_care(image: np.ndarray, config: SynthConfig, fonts: tuple[FontInfo, ...], occupied: _Occupancy,
                   rng: np.random.Generator) -> list[SynthLine]:
    """One tiny (7-10 px) or heavily blurred line, labelled '###' so no detector is judged on it."""
    h, w = image.shape[:2]
    tiny = rng.random() < 0.5
    size = int(rng.integers(7, 11)) if tiny else int(rng.integers(18, 32))
    font = fonts[int(rng.integers(len(fonts)))]
    texts = _fit_texts(rng, 1, font, size, 0.6 * w)
    block = _render_block(texts, font, size, rng) if texts else None
    if block is None:
        return []
    blur = 0.0 if tiny else float(rng.uniform(2.5, 4.0))
    (left, top), _, (right, bottom), _ = block.lines[0][0]
    grow = 0.5 * (bottom - top) + 2 * blur  # don't-care regions are generous: they cover the blur too
    matrix = _place(block, _random_angle(rng, config.max_angle), (h, w), occupied, rng, grow=grow)
    if matrix is None:
        return []
    _draw_block(image, block, matrix, rng, blur=blur)
    points = _corners((left - grow, top - grow, right + grow, bottom + grow))
    return [SynthLine(_transform(points, matrix), block.lines[0][1], True, (), block.font, size)]


def _degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild sensor noise and, sometimes, a slight blur."""
    image = image + rng.normal(0, rng.uniform(0, 5), image.shape).astype(np.float32)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.4, 0.9)))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def render_image(config: SynthConfig, index: int, *, fonts: tuple[FontInfo, ...] | None = None) -> SynthImage:
    """Render image number `index` (0-based) of the set: it depends only on (config.seed, index) and fonts."""
    fonts = fonts or find_fonts(config.fonts)
    rng = np.random.default_rng([config.seed, index, GENERATOR_VERSION])
    h = int(rng.integers(config.min_size[0], config.max_size[0] + 1))
    w = int(rng.integers(config.min_size[1], config.max_size[1] + 1))
    image, background = random_background(rng, h, w)
    occupied = _Occupancy()
    n_lines = int(rng.integers(config.min_lines, config.max_lines + 1))
    lines = _add_lines(image, config, fonts, occupied, rng, n_lines=n_lines)
    if rng.random() < config.dont_care_rate:
        lines += _add_dont_care(image, config, fonts, occupied, rng)
    quality = int(rng.integers(60, 96))
    return SynthImage(_degrade(image, rng), tuple(lines), background, quality)


def line_crop(image: np.ndarray, points: tuple[Point, ...], *, margin: float | None = None) -> np.ndarray:
    """The line's quadrilateral, widened by `margin` pixels (default: 15% of its height, >= 2), warped upright."""
    quad = np.asarray(points, np.float32)
    width = float(max(np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[2] - quad[3])))
    height = float(max(np.linalg.norm(quad[3] - quad[0]), np.linalg.norm(quad[2] - quad[1])))
    m = max(2.0, 0.15 * height) if margin is None else margin
    x_axis = (quad[1] - quad[0]) / max(np.linalg.norm(quad[1] - quad[0]), 1e-6)
    y_axis = (quad[3] - quad[0]) / max(np.linalg.norm(quad[3] - quad[0]), 1e-6)
    grown = quad + np.stack([-x_axis - y_axis, x_axis - y_axis, x_axis + y_axis, -x_axis + y_axis]) * m
    out_w, out_h = int(round(width + 2 * m)), int(round(height + 2 * m))
    target = np.float32([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]])
    matrix = cv2.getPerspectiveTransform(grown.astype(np.float32), target)
    return cv2.warpPerspective(image, matrix, (out_w, out_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


# ---------------------------------------------------------------------------------------------- writing


def _is_synth_output(folder: Path) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("generator") == SYNTH_MARKER


def _check_output_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is a file; give a folder for the synthetic text set")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _is_synth_output(out_dir):
        raise UsageError(f"{out_dir} is not empty and is not a previous synth-text output; "
                         f"choose a new or empty folder (your files are left untouched)")


def _gt_line(line: SynthLine) -> str:
    coords = ",".join(str(int(round(v))) for p in line.points for v in p)
    return f"{coords},{'###' if line.ignore else line.text}"


def _write_image_files(root: Path, number: int, synth: SynthImage, labels: list[str]) -> dict[str, Any]:
    ok, jpeg = cv2.imencode(".jpg", synth.image, [cv2.IMWRITE_JPEG_QUALITY, synth.jpeg_quality])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
        raise UsageError("OpenCV could not encode a JPEG")
    name = f"img_{number}.jpg"
    (root / "textdet" / name).write_bytes(jpeg.tobytes())
    (root / "textdet" / f"gt_img_{number}.txt").write_text(
        "".join(_gt_line(line) + "\n" for line in synth.lines), encoding="utf-8")
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)  # crop what the detector will see
    k = 0
    for line in synth.lines:
        if line.ignore:
            continue
        k += 1
        crop_name = f"crops/line_{number}_{k}.png"
        ok, png = cv2.imencode(".png", line_crop(decoded, line.points))
        (root / "ocr" / crop_name).write_bytes(png.tobytes())
        labels.append(f"{crop_name}\t{line.text}")
    return {
        "image": f"textdet/{name}", "height": synth.image.shape[0], "width": synth.image.shape[1],
        "background": synth.background, "jpeg_quality": synth.jpeg_quality,
        "lines": [{"text": line.text, "ignore": line.ignore, "font": line.font, "size": line.size,
                   "points": [list(p) for p in line.points],
                   "words": [{"text": t, "points": [list(p) for p in pts]} for pts, t in line.words]}
                  for line in synth.lines],
    }


def generate_text_set(out_dir: str | os.PathLike[str], config: SynthConfig | None = None, *,
                      on_image: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Render config.n images into out_dir (layout in the module docstring) and return a summary dict.
    Everything is written to a temporary folder next to out_dir and renamed into place at the end; an existing
    out_dir is replaced only when it is empty or a previous synth-text output."""
    config = config or SynthConfig()
    out_dir = Path(out_dir).resolve()
    _check_output_dir(out_dir)
    fonts = find_fonts(config.fonts)
    with atomic_dir(out_dir) as tmp:  # files.atomic_dir: permissions from the umask, swapped in at the end
        (tmp / "textdet").mkdir()
        (tmp / "ocr" / "crops").mkdir(parents=True)
        labels: list[str] = []
        records = []
        for i in range(config.n):
            records.append(_write_image_files(tmp, i + 1, render_image(config, i, fonts=fonts), labels))
            if on_image is not None:
                on_image(i)
        (tmp / "ocr" / "labels.txt").write_text("".join(x + "\n" for x in labels), encoding="utf-8")
        (tmp / "words.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        n_lines = sum(len(r["lines"]) for r in records)
        n_ignore = sum(line["ignore"] for r in records for line in r["lines"])
        summary = {"generator": SYNTH_MARKER, "version": GENERATOR_VERSION, "seed": config.seed, "n": config.n,
                   "images": len(records), "lines": n_lines - n_ignore, "dont_care": n_ignore,
                   "config": dataclasses.asdict(config), "fonts": [f.name for f in fonts],
                   "layout": {"textdet": "ICDAR-2015 img_N.jpg + gt_img_N.txt, one box per line",
                              "ocr": "labels.txt: crops/line_N_K.png<TAB>text", "words": "words.jsonl"}}
        (tmp / "meta.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        _check_output_dir(out_dir)  # again: the folder may have changed while we rendered
    return summary
