"""Typed records of a search: a Trial (one candidate measured at one rung) with its Measurement (timing) and
MetricResult (accuracy). The store writes and reads them; the strategy, the final timing, export and the report
read their fields, never raw rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .space import Candidate

STATUSES = ("ok", "failed", "ruled_out")


@dataclass(frozen=True)
class Measurement:
    """Latency of one run (one batch) and images/s, from a timing loop or a throughput measurement."""

    p50_ms: float
    p90_ms: float
    mean_ms: float
    throughput_ips: float
    runs: int = 0
    load_ms: float = 0.0
    peak_rss_mb: float = 0.0
    timing_shapes: int = 1
    times_ms: tuple[float, ...] = ()  # raw per-run times, kept for the final back-to-back comparison

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["times_ms"] = list(self.times_ms)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["times_ms"] = tuple(values.get("times_ms") or ())
        return cls(**values)


@dataclass(frozen=True)
class MetricResult:
    """The task metric of a candidate on `n_images` evaluation images, with its bootstrap 95% CI. `source` names
    the trial it was measured in when it was shared from an equivalent candidate (same outputs)."""

    name: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n_images: int = 0
    source: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    per_image: tuple[tuple[float, ...], ...] = ()  # the task's per-image sufficient statistics (paired tests)
    statistic: str = ""  # how the task turns summed per-image statistics into the metric (tasks.metrics)
    # label-free tasks: the original's own per-image rows on the same images (tasks.base.Metrics)
    reference_per_image: tuple[tuple[float, ...], ...] = ()

    @property
    def level(self) -> float:
        """What drops are counted from when this is the baseline's metric: for a label-free task the original's own
        score on these images (1.0: the reference runtime against itself), not the baseline runtime's reproduction
        of it (OpenCV 5's default engine got one model's outputs wrong); else this value."""
        if self.reference_per_image and self.statistic:
            from ..tasks.metrics import statistic_value

            return float(statistic_value(self.statistic, [list(r) for r in self.reference_per_image]))
        return self.value

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_image"] = [list(row) for row in self.per_image]
        data["reference_per_image"] = [list(row) for row in self.reference_per_image]
        return data

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any], *, source: str = "") -> MetricResult:
        """From a tasks.base.Metrics dict (what evaluation children return)."""
        ci = metrics.get("ci95") or [None, None]
        return cls(metrics["metric"], metrics["value"], ci[0], ci[1], int(metrics.get("n_images") or 0), source,
                   dict(metrics.get("details") or {}), metrics.get("seconds"),
                   tuple(tuple(float(v) for v in row) for row in metrics.get("per_image") or ()),
                   metrics.get("statistic") or "",
                   tuple(tuple(float(v) for v in row) for row in metrics.get("reference_per_image") or ()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricResult:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["per_image"] = tuple(tuple(row) for row in values.get("per_image") or ())
        values["reference_per_image"] = tuple(tuple(row) for row in values.get("reference_per_image") or ())
        return cls(**values)


@dataclass(frozen=True)
class Trial:
    """One candidate measured at one rung ('screen', 'full', 'final:<key>'), ok or not, with why not."""

    candidate: Candidate
    rung: str
    status: str
    error: str = ""
    timing: Measurement | None = None
    metric: MetricResult | None = None
    size_bytes: int | None = None
    model_key: str = ""
    metric_key: str = ""
    input_shape: tuple[int, ...] = ()
    rung_images: int | None = None
    started: float = 0.0
    finished: float = 0.0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown trial status '{self.status}'")

    @property
    def key(self) -> str:
        return self.candidate.key()

    @property
    def label(self) -> str:
        return self.candidate.label()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def measured(self) -> bool:
        """Succeeded with both a timing and a metric: usable for decisions."""
        return self.ok and self.timing is not None and self.metric is not None

    @property
    def p50_ms(self) -> float | None:
        return self.timing.p50_ms if self.timing else None

    @property
    def metric_value(self) -> float | None:
        return self.metric.value if self.metric else None

    def with_(self, **changes: Any) -> Trial:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON for summaries and --json output (the candidate as its dict, plus key and label)."""
        return {"key": self.key, "label": self.label, "rung": self.rung, "status": self.status, "error": self.error,
                "candidate": self.candidate.to_dict(),
                "timing": self.timing.to_dict() if self.timing else None,
                "metric": self.metric.to_dict() if self.metric else None, "size_bytes": self.size_bytes,
                "model_key": self.model_key, "metric_key": self.metric_key, "input_shape": list(self.input_shape),
                "rung_images": self.rung_images, "started": self.started, "finished": self.finished,
                "seconds": self.seconds, "extra": self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        return cls(candidate=Candidate.from_dict(data["candidate"]), rung=data["rung"], status=data["status"],
                   error=data.get("error") or "",
                   timing=Measurement.from_dict(data["timing"]) if data.get("timing") else None,
                   metric=MetricResult.from_dict(data["metric"]) if data.get("metric") else None,
                   size_bytes=data.get("size_bytes"), model_key=data.get("model_key") or "",
                   metric_key=data.get("metric_key") or "", input_shape=tuple(data.get("input_shape") or ()),
                   rung_images=data.get("rung_images"), started=data.get("started") or 0.0,
                   finished=data.get("finished") or 0.0, seconds=data.get("seconds") or 0.0,
                   extra=dict(data.get("extra") or {}))


@dataclass(frozen=True)
class BuiltModel:
    """A model file built from the source by a candidate's passes (once per model key), or why it failed."""

    model_key: str
    passes: tuple[dict[str, Any], ...]
    path: str
    status: str
    error: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"
