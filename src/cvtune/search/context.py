"""What one search knows about its model, task and data, resolved once at the entry: the source file and its
hash, the task (preprocessing, zoo defaults, charset: tasks.spec), the calibration/evaluation splits and the
input shapes the task really feeds. Trials, builds and children read it; nothing looks the model up again."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import DatasetError, UsageError
from ..tasks.spec import TaskSpec, resolve_task
from .config import OptimizeConfig
from .runner import eval_split
from .space import TASK_SCALE_OPTIONS, Candidate, ModelFacts, scaled_task_options

TIMING_SHAPES = 8  # evaluation images whose input shapes the latency is timed over


@dataclass(frozen=True)
class Rung:
    """One measuring stage: its name in the store, how many evaluation images, and how long the timing runs."""

    name: str
    images: int | None  # None = the whole evaluation split
    warmup: int = 2
    min_runs: int = 5
    min_time_s: float = 0.3


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class SearchContext:
    """The model, task and data of one optimize run. Build with `SearchContext.load(config)`."""

    def __init__(self, config: OptimizeConfig) -> None:
        self.config = config
        self.source = Path(config.model).resolve()
        self.source_hash = file_sha256(self.source)
        self._shapes: dict[float, list[tuple[int, int]]] = {}

    @classmethod
    def load(cls, config: OptimizeConfig) -> SearchContext:
        """Load and check the model, task and data (before anything is written to OUT)."""
        from ..model import Model
        from ..tasks import TASKS

        ctx = cls(config)
        if config.task not in TASKS:
            raise UsageError(f"unknown task '{config.task}'; choose one of: {', '.join(TASKS) or '(none installed)'}")
        model = Model.load(ctx.source)
        options = dict(config.task_options)
        if config.task == "fidelity":
            options.setdefault("reference_model", str(ctx.source))
        ctx.task = resolve_task(config.task, ctx.source, preprocess=config.preprocess, allow_guess=False, **options)
        calib, evaluation = eval_split(str(config.data), config.data_kind, config.calib_fraction, config.seed)
        kinds = TASKS[config.task].dataset_kinds
        if kinds and evaluation.kind not in kinds and "images" not in kinds:
            raise DatasetError(f"task '{config.task}' needs {' or '.join(kinds)} data, but {config.data} is laid "
                               f"out as '{evaluation.kind}'; point --data at the right folder or pass --kind")
        ctx.calib, ctx.evaluation = calib, evaluation
        ctx.n_eval = len(evaluation) if config.eval_images is None else min(config.eval_images, len(evaluation))
        ctx.facts = ctx._model_facts(model)
        return ctx

    # ---- the task ------------------------------------------------------------------------------------
    task: TaskSpec

    def _model_facts(self, model) -> ModelFacts:
        """The input size the task feeds for typical images (most common over a few), and whether other sizes
        are allowed (dynamic H, W in the model and no fixed size in its preprocessing)."""
        info = model.inputs[0]
        dynamic = set(info.dynamic_dims)
        task = self.task.build()
        option = TASK_SCALE_OPTIONS.get(self.config.task)
        self.scale_default = getattr(task, option, None) if option else None
        preprocessing = task.preprocessing
        self.preprocessing = preprocessing
        if self.nhwc:  # H and W sit at dims 1 and 2
            dynamic = {{1: 2, 2: 3}.get(d, d) for d in dynamic}
        representative = self.task_shape(1.0, task)
        # Fidelity feeds the reference the same tensor, so a smaller input would cost nothing there: keep sizes out.
        resizable = {2, 3} <= dynamic and preprocessing.input_size is None and self.config.task != "fidelity"
        return ModelFacts(representative, resizable, max(1, preprocessing.size_multiple), 0 in dynamic,
                          scalable=self.scale_default is not None, source_suffix=self.source.suffix.lower())

    def task_options(self, scale: float = 1.0) -> dict[str, Any]:
        """The user's task options at a resolution scale (the task's own defaults are in `task`)."""
        return scaled_task_options(self.config.task, self.task.options, self.scale_default, scale)

    def task_spec(self, cand: Candidate | None = None) -> TaskSpec:
        """The task as a candidate feeds it (its resolution scale, its model file's layout), ready to cross into a
        child."""
        scale = cand.input_scale if cand is not None else 1.0
        return TaskSpec(self.task.name, self._preprocessing(cand is not None and self.converted(cand)),
                        self.task_options(scale), self.task.preprocessing_source)

    def build_spec(self) -> TaskSpec:
        """The task the passes calibrate with: resolution scale 1, on the model's ONNX form (its layout)."""
        return TaskSpec(self.task.name, self._preprocessing(self.converted(None)), self.task_options(1.0),
                        self.task.preprocessing_source)

    def converted(self, cand: Candidate | None) -> bool:
        """Does `cand` run cvtune's ONNX conversion of the model (a .tflite/.pb run by ONNX Runtime or OpenVINO, or
        transformed by passes) rather than the file as given (OpenCV and LiteRT read those)? None: a built model."""
        if self.source.suffix.lower() == ".onnx":
            return False
        return cand is None or bool(cand.passes) or not cand.runtime.reads(self.source)

    def _preprocessing(self, converted: bool):
        """The task's preprocessing in the layout of the file that runs: cvtune's ONNX conversion of an NHWC TFLite
        graph takes NCHW tensors (as OpenCV's TFLite importer runs it; convert.py), the file itself NHWC (OpenCV's
        runtime transposes those). The same pixels either way, only the axes move."""
        pre = self.task.preprocessing
        if converted and pre is not None and pre.layout == "NHWC":
            return replace(pre, layout="NCHW")
        return pre

    # ---- input shapes ----------------------------------------------------------------------------------
    def task_shapes(self, scale: float, task=None) -> list[tuple[int, int]]:
        """The (H, W) the task feeds each of the first evaluation images at a resize scale (per-image resizing
        gives several shapes: latency is timed over this mix, not one made-up size)."""
        from ..data.base import read_image

        if scale in self._shapes:
            return self._shapes[scale]
        if task is None:
            task = TaskSpec(self.task.name, self.task.preprocessing, self.task_options(scale)).build()
        shapes: list[tuple[int, int]] = []
        for sample in self.evaluation.samples[:TIMING_SHAPES]:
            image = read_image(sample.path)
            if image is not None:
                tensor = task.preprocess(image)[0]
                h, w = tensor.shape[1:3] if self.nhwc else tensor.shape[2:4]
                shapes.append((int(h), int(w)))
        if not shapes:
            raise DatasetError(f"none of the first evaluation images in {self.config.data} could be read")
        self._shapes[scale] = shapes
        return shapes

    def task_shape(self, scale: float, task=None) -> tuple[int, int]:
        """The most common of `task_shapes` (what a static model is built for, and what reports show)."""
        return Counter(self.task_shapes(scale, task)).most_common(1)[0][0]

    @property
    def nhwc(self) -> bool:
        return getattr(self.preprocessing, "layout", "NCHW").upper() == "NHWC"

    def tensor_shape(self, batch: int, height: int, width: int, cand: Candidate | None = None) -> list[int]:
        """The model input's full shape in its layout (NCHW, or NHWC for models that take channels last), for the
        file `cand` runs (None: a built model; see `converted`)."""
        channels = int(getattr(self.preprocessing, "n_channels", 3))
        nhwc = self.nhwc and not self.converted(cand)
        return [batch, height, width, channels] if nhwc else [batch, channels, height, width]

    def input_shape(self, cand: Candidate) -> list[int]:
        size = cand.input_size or self.task_shape(cand.input_scale)
        return self.tensor_shape(cand.batch, int(size[0]), int(size[1]), cand)

    def input_shapes(self, cand: Candidate) -> list[list[int]]:
        """Every input shape the timing cycles through: one for a fixed size, the task's mix otherwise."""
        if cand.input_size:
            return [self.input_shape(cand)]
        return [self.tensor_shape(cand.batch, h, w, cand) for h, w in self.task_shapes(cand.input_scale)]

    def identity(self) -> dict[str, Any]:
        """What the store compares to decide between resuming and refusing a folder."""
        cfg = self.config
        return {"model_sha256": self.source_hash, "task": cfg.task, "task_options": cfg.task_options,
                "preprocessing": self.task.preprocessing.to_string() if self.task.preprocessing else None,
                "data": str(Path(cfg.data).resolve()), "data_kind": self.evaluation.kind,
                "n_samples": len(self.calib) + len(self.evaluation), "calib_fraction": cfg.calib_fraction,
                "seed": cfg.seed, "eval_images": self.n_eval, "max_drop": cfg.budget.describe(),
                "objective": cfg.objective}
