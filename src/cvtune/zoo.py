"""Bundled real models: PP-OCRv4 text detection, orientation and recognition from the rapidocr-onnxruntime wheel.

The wheel (Apache-2.0) is installed with --no-deps by the Makefile: its own dependency on opencv-python would
put a second cv2 build next to opencv-python-headless. We only read its model files, never import it.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelError, UsageError
from .preprocess import Preprocessing  # noqa: F401 - zoo.Preprocessing: where it lived before preprocess.py

ZOO_PACKAGE = "rapidocr_onnxruntime"
INSTALL_HINT = "pip install --no-deps 'rapidocr-onnxruntime==1.4.4' (make setup does this)"


@dataclass(frozen=True)
class ZooModel:
    name: str
    file: str
    task: str
    description: str
    preprocessing: Preprocessing
    default_shape: tuple[int, int, int, int]
    extra: dict = field(default_factory=dict)
    output_names: tuple[str, ...] = ()  # graph outputs: survive renames, pruning and quantization


# PP-OCR preprocessing: BGR image, x/255, (x-0.5)/0.5 (see rapidocr's config.yaml and PaddleOCR's docs).
_PPOCR = dict(scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), channels="bgr", source="zoo")

ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel(
            "ppocr-det",
            "ch_PP-OCRv4_det_infer.onnx",
            "textdet",
            "PP-OCRv4 DB text detector (mobile), 4.7 MB, fully convolutional",
            Preprocessing(resize="keep_ratio", limit_side=960, size_multiple=32, **_PPOCR),
            (1, 3, 640, 640),
            {"thresh": 0.3, "box_thresh": 0.5, "unclip_ratio": 1.6},
            ("sigmoid_0.tmp_0",),
        ),
        ZooModel(
            "ppocr-cls",
            "ch_ppocr_mobile_v2.0_cls_infer.onnx",
            "classify",
            "PP-OCR text-line orientation classifier (0 / 180 degrees), 0.6 MB",
            Preprocessing(input_size=(48, 192), **_PPOCR),
            (1, 3, 48, 192),
            {"labels": ["0", "180"]},
            ("save_infer_model/scale_0.tmp_1",),
        ),
        ZooModel(
            "ppocr-rec",
            "ch_PP-OCRv4_rec_infer.onnx",
            "ocr",
            "PP-OCRv4 CRNN/SVTR text recognizer (Chinese + English charset in metadata), 10.9 MB",
            Preprocessing(input_size=(48, 320), **_PPOCR),
            (1, 3, 48, 320),
            {},
            ("softmax_11.tmp_0",),
        ),
    ]
}


def models_dir() -> Path:
    spec = importlib.util.find_spec(ZOO_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the model zoo package '{ZOO_PACKAGE}' is not installed; run: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def get(name: str) -> ZooModel:
    if name not in ZOO:
        raise UsageError(f"unknown zoo model '{name}'; choose one of: {', '.join(ZOO)}")
    return ZOO[name]


def path(name: str) -> Path:
    """Absolute path of a zoo model's ONNX file (read-only: never write to it)."""
    file = models_dir() / get(name).file
    if not file.is_file():
        raise ModelError(f"zoo model file {file} is missing; reinstall with: {INSTALL_HINT}")
    return file


ZOO_METADATA_KEY = "cvtune.zoo"


def find_by_path(model_path: str | Path) -> ZooModel | None:
    """The zoo entry a model file derives from, so renamed, pruned or quantized copies of zoo models keep their
    preprocessing: by file name, else by a `cvtune.zoo` metadata entry, else by the graph's output names."""
    path = Path(model_path)
    by_name = next((m for m in ZOO.values() if m.file == path.name), None)
    if by_name is not None or path.suffix.lower() != ".onnx" or not path.is_file():
        return by_name
    stat = path.stat()
    return _find_by_graph(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _find_by_graph(path: str, _mtime_ns: int, _size: int) -> ZooModel | None:
    import onnx

    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - not our job to report a bad model here; Model.load does
        return None
    tagged = next((p.value for p in proto.metadata_props if p.key == ZOO_METADATA_KEY), None)
    if tagged in ZOO:
        return ZOO[tagged]
    outputs = tuple(o.name for o in proto.graph.output)
    return next((m for m in ZOO.values() if m.output_names and m.output_names == outputs), None)


def check_zoo() -> None:
    """Fail loudly (used by `make setup`) when a zoo model cannot be found."""
    for name in ZOO:
        path(name)
