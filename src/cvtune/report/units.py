"""Human units for every report format: milliseconds, megabytes, images/s, seconds, and the one sign convention
for metric changes (positive = better than the baseline)."""

from __future__ import annotations

from ..budget import Budget


def ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def ms_range(low: float, high: float) -> str:
    """'2.68-10.4 ms'."""
    return f"{ms(low).removesuffix(' ms')}-{ms(high)}"


def megabytes(n_bytes: float | None) -> str:
    return "n/a" if n_bytes is None else f"{n_bytes / 1e6:.2f} MB"


def ips(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} images/s"


def seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def change(value: float | None, budget: Budget) -> str:
    """A metric change against the baseline (positive = better), in the budget's units: '+0.52%', '-0.0100'."""
    if value is None:
        return "n/a"
    if abs(value) < 5e-5:  # shown as 0 in both units: never "-0.00%"
        value = 0.0
    if budget.relative:
        return f"{value * 100:+.2f}%"
    return f"{value:+.4f}"


def change_unit(budget: Budget) -> str:
    return "%" if budget.relative else "metric units"


def objective_value(field: str, value: float | None) -> str:
    """An objective's value in its unit (p50_ms, throughput_ips or size_bytes)."""
    if field == "size_bytes":
        return megabytes(value)
    if field == "throughput_ips":
        return ips(value)
    return ms(value)
