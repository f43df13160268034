"""The two budgets a user gives, with one grammar on every command: how much accuracy may be lost
(`--max-drop 1%` relative to the baseline, `0.01abs` absolute in metric units) and how long a command may run
(`--time 3m`, `90s`, `1h30m`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import UsageError


@dataclass(frozen=True)
class Budget:
    """The largest metric drop allowed against the baseline: relative (0.01 = 1%) or absolute (metric units)."""

    value: float = 0.01
    relative: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.value < (1 if self.relative else float("inf")):
            raise UsageError(f"the accuracy budget (max drop) must be in [0%, 100%) (got {self.describe()}); "
                             f"e.g. 1% or 0.01abs")

    @classmethod
    def parse(cls, text: str) -> Budget:
        """'1%', '0.5 %', '0.01abs' (absolute), '0.01' (a fraction: 1% relative)."""
        raw = str(text).strip().lower().replace(" ", "")
        match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(%|abs|)", raw)
        if not match:
            raise UsageError(f"cannot read the accuracy budget (max drop) '{text}'; write it as 1% (relative) or "
                             f"0.01abs (absolute)")
        number, unit = float(match.group(1)), match.group(2)
        if unit == "%":
            return cls(number / 100.0, True)
        if unit == "abs":
            return cls(number, False)
        if number >= 1:
            raise UsageError(f"max drop {text} is ambiguous: write {text}% for a relative drop or {text}abs")
        return cls(number, True)

    def drop(self, baseline: float, value: float) -> float:
        """The drop of `value` against `baseline` in this budget's units (positive = worse)."""
        if self.relative:
            return (baseline - value) / abs(baseline) if baseline else (0.0 if value >= baseline else float("inf"))
        return baseline - value

    def allows(self, baseline: float, value: float, *, slack: float = 0.0) -> bool:
        return self.drop(baseline, value) <= self.value + slack + 1e-12

    def describe(self, drop: float | None = None) -> str:
        amount = self.value if drop is None else drop
        return f"{amount * 100:.2f}%" if self.relative else f"{amount:.4f} abs"

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "relative": self.relative}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Budget:
        return cls(float(data["value"]), bool(data["relative"]))



def parse_duration(text: str | float | int | None) -> float | None:
    """'3m', '90s', '1h', '1m30s', '120' (seconds) -> seconds; None/'' -> None (no limit)."""
    if text is None or text == "":
        return None
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        raw = text.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", raw):
            seconds = float(raw)
        else:
            parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", raw)
            if not parts or "".join(n + u for n, u in parts) != raw:
                raise UsageError(f"cannot read duration '{text}'; write e.g. 3m, 90s, 1h or 1m30s")
            seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"a time budget must be positive (got '{text}')")
    return seconds
