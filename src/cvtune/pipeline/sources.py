"""Pipeline inputs: an image folder (or one image) keyed by relative path, or a video keyed by frame index.

A source yields (seq, key, payload) for the inputs not done yet: payload is a Path to decode later (images, so
several threads can decode at once) or an already decoded frame (videos decode in order).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.base import IMAGE_SUFFIXES
from ..errors import DatasetError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".gif")


@dataclass(frozen=True)
class ImageSource:
    """Every image under `root` (recursive, sorted by relative path); rows are keyed by 'file'."""

    root: Path
    files: tuple[Path, ...]
    key_field = "file"
    kind = "images"

    def key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    @property
    def total(self) -> int:
        return len(self.files)

    def pending(self, done: set[Any]) -> Iterator[tuple[int, str, Path]]:
        seq = 0
        for path in self.files:
            key = self.key(path)
            if key not in done:
                yield seq, key, path
                seq += 1

    def describe(self) -> str:
        return f"{self.total} images in {self.root}"


@dataclass(frozen=True)
class VideoSource:
    """The frames of one video, decoded in order with cv2.VideoCapture; rows are keyed by 'frame' (0-based)."""

    path: Path
    frame_count: int  # as the container reports it (may be 0 or approximate)
    key_field = "frame"
    kind = "video"

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def total(self) -> int | None:
        return self.frame_count or None

    def pending(self, done: set[Any]) -> Iterator[tuple[int, int, np.ndarray]]:
        capture = _capture(self.path)
        if not capture.isOpened():
            raise _cannot_open(self.path)
        try:
            seq, index = 0, 0
            while True:
                if index in done:  # skip without decoding the pixels
                    if not capture.grab():
                        return
                else:
                    ok, frame = capture.read()
                    if not ok or frame is None:
                        return
                    yield seq, index, frame
                    seq += 1
                index += 1
        finally:
            capture.release()

    def describe(self) -> str:
        return f"video {self.path} ({self.frame_count or 'unknown number of'} frames)"


def _capture(path: Path):
    """cv2.VideoCapture with FFmpeg's own console messages silenced (cvtune reports failures itself)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    return cv2.VideoCapture(str(path))


def _cannot_open(path: Path) -> DatasetError:
    return DatasetError(f"cannot open video {path}: OpenCV's video backends cannot read it (missing, corrupt, or a "
                        f"codec this OpenCV build lacks); convert it to MP4/H.264 or extract frames to a folder")


def open_video(path: Path) -> VideoSource:
    import cv2

    capture = _capture(path)
    try:
        if not capture.isOpened():
            raise _cannot_open(path)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, _ = capture.read()
        if not ok:
            raise _cannot_open(path)
    finally:
        capture.release()
    return VideoSource(path, max(count, 0))


def open_source(path: str | os.PathLike[str]) -> ImageSource | VideoSource:
    """A folder or an image file -> ImageSource; any other file -> VideoSource (if OpenCV can open it)."""
    from ..data.loaders import load_images

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"input not found: {path} (give a folder of images, an image, or a video file)")
    if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        return open_video(path)
    dataset = load_images(path)  # DatasetError when the folder holds no images
    root = dataset.root if path.is_dir() else path.parent
    return ImageSource(root, tuple(s.path for s in dataset.samples))
