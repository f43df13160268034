"""Image classification: top-1 (headline) and top-5 accuracy on a folder-per-class dataset.

The model may output probabilities or logits (a softmax is applied when rows do not already sum to 1). Dataset
classes map to model outputs by name when the model's labels are known (option `labels`), else by index. Images are
resized the preprocessing spec's way (stretch, center_crop, letterbox); the option `resize` overrides it, and
`resize=pad` keeps the aspect and pads on the right (PP-OCR's orientation classifier).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from ..data.base import Dataset, Sample
from ..errors import DatasetError, UsageError
from ..zoo import Preprocessing
from .base import Metrics, Task
from .common import as_probabilities, output_error, parse_size, resize_pad
from .metrics import mean_ci

RESIZE_MODES = ("stretch", "center_crop", "letterbox", "pad")
DEFAULT_SIZE = (224, 224)


class ClassifyTask(Task):
    """Single-label classification. Prediction: {'top': [class indices, best first], 'probs': [...]}."""

    name: ClassVar[str] = "classify"
    metric: ClassVar[str] = "top1"
    dataset_kinds: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, preprocessing: Preprocessing | None = None, *, input_size: tuple[int, int] | str | None = None,
                 resize: str | None = None, labels: list[str] | None = None, **options: Any) -> None:
        super().__init__(preprocessing, input_size=parse_size(input_size), **options)
        if resize is not None and resize not in RESIZE_MODES:
            raise UsageError(f"unknown resize mode '{resize}'; choose one of: {', '.join(RESIZE_MODES)}")
        self.resize, self.labels = resize or self.preprocessing.resize, list(labels) if labels else None
        if self.resize == "keep_ratio":  # a classifier needs a fixed size: keep the aspect inside it
            self.resize = "letterbox"
        self.size = self.input_size or self.preprocessing.input_size or DEFAULT_SIZE
        if self.resize not in ("pad", self.preprocessing.resize):
            pad = self.preprocessing.pad if self.resize == "letterbox" else 114
            self.preprocessing = replace(self.preprocessing, resize=self.resize, input_size=self.size, pad=pad,
                                         limit_side=None, resize_short=None)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, None]:
        if self.resize == "pad":  # keep aspect, pad right (PP-OCR's orientation classifier)
            return resize_pad(image, *self.size, self.preprocessing)[None], None
        return self.preprocessing.to_tensor(image, input_size=self.size)[0], None

    def postprocess(self, outputs: list[np.ndarray], meta: Any = None) -> dict[str, list]:
        scores = outputs[0] if outputs else np.zeros(0)
        if scores.ndim == 4 and scores.shape[2:] == (1, 1):
            scores = scores[:, :, 0, 0]
        if scores.ndim != 2 or scores.shape[0] != 1 or scores.shape[1] < 2:
            raise output_error(self.name, "(1, classes) scores", outputs, "use an image classifier")
        probs = as_probabilities(scores)[0]
        top = np.argsort(-probs, kind="stable")[:5]
        return {"top": [int(i) for i in top], "probs": [float(probs[i]) for i in top], "classes": int(probs.size)}

    def _model_index(self, dataset: Dataset) -> dict[int, int]:
        """Dataset class index -> model output index: by label name when both sides have names, else identity."""
        if not self.labels or not dataset.classes:
            return {}
        missing = [c for c in dataset.classes if c not in self.labels]
        if missing:
            raise DatasetError(f"dataset classes {missing[:5]} in {dataset.root} are not among the model's labels "
                               f"{self.labels[:10]}; rename the class folders to match")
        return {i: self.labels.index(c) for i, c in enumerate(dataset.classes)}

    def score(self, predictions: list[Any], samples: list[Sample], dataset: Dataset) -> Metrics:
        mapping = self._model_index(dataset)
        top1, top5 = [], []
        for prediction, sample in zip(predictions, samples, strict=True):
            if not isinstance(sample.target, int | np.integer):
                raise DatasetError(f"task 'classify' needs a class label for {sample.path}; load the data as "
                                   f"kind 'classification' (one folder per class)")
            truth = mapping.get(int(sample.target), int(sample.target))
            top1.append(float(prediction["top"][0] == truth))
            top5.append(float(truth in prediction["top"][:5]))
        n = len(top1)
        low, high = mean_ci(top1)
        details = {}
        n_classes = predictions[0]["classes"] if predictions else 0
        if n_classes >= 5:
            details["top5"] = float(np.mean(top5)) if n else 0.0
        return Metrics(self.name, self.metric, float(np.mean(top1)) if n else 0.0, low, high, n_images=n,
                       details=details, per_image=[[v] for v in top1], statistic="mean")
