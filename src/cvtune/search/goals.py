"""What the search optimizes: the objective (latency, throughput, size). The accuracy budget it must respect is
`cvtune.budget.Budget`, shared with every command that takes `--max-drop`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..budget import Budget, parse_duration
from ..errors import UsageError


@dataclass(frozen=True)
class Objective:
    """One quantity to optimize, read from a trial's measurements; `minimize` says which way is better."""

    name: str
    field: str
    unit: str
    minimize: bool
    gain_label: str = "gain"  # how a ratio against the baseline is named

    def value(self, row: dict[str, Any]) -> float | None:
        value = row.get(self.field)
        return None if value is None else float(value)

    def better(self, a: float, b: float) -> bool:
        return a < b if self.minimize else a > b

    def sort_key(self, value: float | None) -> float:
        """Ascending sort key where smaller is better; missing values sort last."""
        if value is None:
            return float("inf")
        return value if self.minimize else -value


OBJECTIVES: dict[str, Objective] = {
    "latency": Objective("latency", "p50_ms", "ms", True, "speed-up (p50)"),
    "throughput": Objective("throughput", "throughput_ips", "images/s", False, "throughput gain"),
    "size": Objective("size", "size_bytes", "bytes", True, "size reduction (compressed)"),
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise UsageError(f"unknown objective '{name}'; choose one of: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


__all__ = ["OBJECTIVES", "Budget", "Objective", "get_objective", "parse_duration"]
