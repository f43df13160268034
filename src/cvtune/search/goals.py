"""What the search optimizes: the objective (latency, throughput, size). The accuracy budget it must respect is
`cvtune.budget.Budget`, shared with every command that takes `--max-drop`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..budget import Budget, parse_duration
from ..errors import UsageError

if TYPE_CHECKING:
    from .records import Trial


def _timing(field: str) -> Callable[[Trial], float | None]:
    return lambda trial: None if trial.timing is None else getattr(trial.timing, field)


@dataclass(frozen=True)
class Objective:
    """One quantity to optimize, read from a trial's measurements; `minimize` says which way is better."""

    name: str
    field: str  # the measurement's name (as in reports and CSV columns)
    unit: str
    minimize: bool
    read: Callable[[Trial], float | None]
    gain_label: str = "gain"  # how a ratio against the baseline is named

    def value(self, trial: Trial) -> float | None:
        value = self.read(trial)
        return None if value is None else float(value)

    def better(self, a: float, b: float) -> bool:
        return a < b if self.minimize else a > b

    def sort_key(self, value: float | None) -> float:
        """Ascending sort key where smaller is better; missing values sort last."""
        if value is None:
            return float("inf")
        return value if self.minimize else -value

    def gain(self, baseline: float | None, value: float | None) -> float | None:
        """How much better `value` is than `baseline` (>1 = better)."""
        if not baseline or not value:
            return None
        return baseline / value if self.minimize else value / baseline


OBJECTIVES: dict[str, Objective] = {
    "latency": Objective("latency", "p50_ms", "ms", True, _timing("p50_ms"), "speed-up (p50)"),
    "throughput": Objective("throughput", "throughput_ips", "images/s", False, _timing("throughput_ips"),
                            "throughput gain"),
    "size": Objective("size", "size_bytes", "bytes", True, lambda t: t.size_bytes, "size reduction (compressed)"),
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise UsageError(f"unknown objective '{name}'; choose one of: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


__all__ = ["OBJECTIVES", "Budget", "Objective", "get_objective", "parse_duration"]
