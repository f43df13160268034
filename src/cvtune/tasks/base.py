"""The task contract: a Task owns preprocessing, postprocessing and its metric, so the search never needs to
know what a text box is. Tasks are registered by name in cvtune.tasks.TASKS.

Per-image statistics (for bootstrap CIs and paired tests of a drop). Every task's `score()` fills
`Metrics.per_image` (one row of equal length per scored image, in the order of the samples) and `Metrics.statistic`
(a key of tasks.metrics.STATISTICS) such that

    STATISTICS[m.statistic](np.sum(m.per_image, axis=0)[None], len(m.per_image))[0]    # == m.statistic_value()

equals `m.value`, the headline, unless `m.statistic_of` names a details key instead (labelled detection only:
COCO mAP does not decompose per image, so its rows give details["f1_50"], F1 at IoU 0.5). Rows are sufficient
statistics (counts, sums), so resampling images with multinomial weights w gives the resample's metric as
STATISTICS[m.statistic](w @ rows, n): two models scored on the same images compared with the same weights make a
paired bootstrap of the drop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..data.base import Dataset, Sample
from ..runtimes.base import Session
from ..zoo import Preprocessing


@dataclass(frozen=True)
class Metrics:
    """A headline metric (higher is better) with a bootstrap 95% CI, plus details (precision, CER, ...)."""

    task: str
    name: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n_images: int = 0
    n_skipped: int = 0
    details: dict[str, float] = field(default_factory=dict)
    per_image: list[list[float]] = field(default_factory=list)  # sufficient statistics, one row per image
    statistic: str = ""  # key of tasks.metrics.STATISTICS turning summed rows into the metric
    statistic_of: str = ""  # the metric the rows reproduce: "" = the headline (`name`), else a details key
    # label-free tasks (fidelity): the rows the reference model itself scores on the same images (its self-agreement,
    # exactly 1.0 as a metric). Drops are counted from these, not from whatever runtime ran the baseline.
    reference_per_image: list[list[float]] = field(default_factory=list)

    def statistic_value(self, rows: list[list[float]] | None = None) -> float:
        """The metric the per-image rows give (all of them, or `rows`, e.g. a resample): see the module doc."""
        from .metrics import statistic_value

        return statistic_value(self.statistic, self.per_image if rows is None else rows)

    def to_dict(self, *, per_image: bool = False) -> dict[str, Any]:
        data = {"task": self.task, "metric": self.name, "value": self.value, "ci95": [self.ci_low, self.ci_high],
                "n_images": self.n_images, "n_skipped": self.n_skipped, "details": dict(self.details),
                "statistic": self.statistic, "statistic_of": self.statistic_of or self.name}
        if per_image:
            data["per_image"] = [list(row) for row in self.per_image]
            if self.reference_per_image:
                data["reference_per_image"] = [list(row) for row in self.reference_per_image]
        return data


class Task:
    """Base class. Subclasses set `name`, `metric` and `dataset_kinds`, and implement the four methods."""

    name: ClassVar[str] = "base"
    metric: ClassVar[str] = "score"  # headline metric name; higher is better
    dataset_kinds: ClassVar[tuple[str, ...]] = ("images",)

    def __init__(self, preprocessing: Preprocessing | None = None, *, input_size: tuple[int, int] | None = None,
                 **options: Any) -> None:
        self.preprocessing = preprocessing or Preprocessing()
        self.input_size = input_size  # (H, W) override; None = the task's default for this model
        if options:  # a misspelt -O KEY=VALUE must not be silently ignored
            from ..errors import UsageError

            raise UsageError(f"task '{self.name}' has no option {', '.join(sorted(options))}; it takes: "
                             f"{', '.join(type(self).option_names())}")
        self.options = options

    @classmethod
    def option_names(cls) -> list[str]:
        """The options (-O KEY=VALUE) this task takes: the keyword parameters of its constructors."""
        import inspect

        names: set[str] = set()
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            names |= {p.name for p in inspect.signature(init).parameters.values()
                      if p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in
                                                      ("self", "preprocessing"))}
        return sorted(names)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        """BGR uint8 image -> ((1, C, H, W) float32 tensor, meta that postprocess needs, e.g. resize ratios)."""
        raise NotImplementedError

    def postprocess(self, outputs: list[np.ndarray], meta: Any) -> Any:
        """Raw session outputs for one image -> a prediction (boxes, class, text, ...), JSON-serializable."""
        raise NotImplementedError

    def bind(self, dataset: Dataset) -> None:
        """Called once before predicting on `dataset` (e.g. OCR picks line or end-to-end mode). Default: nothing."""

    def close(self) -> None:
        """Release helper sessions the task opened itself (OCR detector, fidelity reference). Default: nothing."""

    def predict(self, session: Session, image: np.ndarray) -> Any:
        tensor, meta = self.preprocess(image)
        return self.postprocess(session.run(tensor), meta)

    def score(self, predictions: list[Any], samples: list[Sample], dataset: Dataset) -> Metrics:
        """Aggregate predictions against labels into Metrics (with a bootstrap CI where it makes sense)."""
        raise NotImplementedError
