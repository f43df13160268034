"""The speed/accuracy scatter as inline SVG (no JavaScript library, opens offline): every measured candidate,
the Pareto front highlighted, the baseline and the chosen candidate marked, the budget as a dashed line.
Each point carries a <title> tooltip with its label and numbers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..search.goals import Objective
    from ..search.records import Trial

WIDTH, HEIGHT = 760, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 34, 50


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    kind: str  # screen | full | front | baseline | best
    key: str = ""
    on_front: bool = False


def _ticks(lo: float, hi: float, n: int = 5, log: bool = False) -> list[float]:
    if log:
        lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        ticks = [m * 10 ** e for e in range(lo_e, hi_e + 1) for m in (1, 2, 5)]
        return [t for t in ticks if lo <= t <= hi] or [lo, hi]
    span = hi - lo or 1.0
    step = 10 ** math.floor(math.log10(span / n))
    step *= next(m for m in (1, 2, 5, 10) if span / (step * m) <= n)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def scatter_svg(points: list[Point], *, x_label: str, y_label: str, budget_y: float | None = None,
                log_x: bool | None = None) -> str:
    """An SVG scatter. Lower x is better (latency, size) unless the caller flips it; higher y is better."""
    if not points:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="60" role="img" class="chart">' \
               '<text x="10" y="35">no successful trial to plot</text></svg>'
    xs = [p.x for p in points]
    ys = [p.y for p in points] + ([budget_y] if budget_y is not None else [])
    x_lo, x_hi = min(xs), max(xs)
    if log_x is None:
        log_x = x_lo > 0 and x_hi / x_lo > 5
    if x_hi == x_lo:
        x_lo, x_hi = x_lo * 0.9 - 1e-9, x_hi * 1.1 + 1e-9
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.08 or max(abs(y_hi) * 0.01, 1e-3)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    if log_x:
        x_lo, x_hi = x_lo / 1.1, x_hi * 1.1
    else:
        span = x_hi - x_lo
        x_lo, x_hi = max(0.0, x_lo - 0.05 * span), x_hi + 0.05 * span
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        if log_x:
            return LEFT + (math.log(x) - math.log(x_lo)) / (math.log(x_hi) - math.log(x_lo)) * plot_w
        return LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y: float) -> float:
        return TOP + (1 - (y - y_lo) / (y_hi - y_lo)) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
             f'height="{HEIGHT}" role="img" class="chart" aria-label="{escape(y_label)} against {escape(x_label)}">',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>']
    for t in _ticks(x_lo, x_hi, log=log_x):
        parts.append(f'<line x1="{sx(t):.1f}" y1="{TOP}" x2="{sx(t):.1f}" y2="{TOP + plot_h}" stroke="#eee"/>'
                     f'<text x="{sx(t):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" font-size="11">'
                     f'{_fmt(t)}</text>')
    for t in _ticks(y_lo, y_hi):
        parts.append(f'<line x1="{LEFT}" y1="{sy(t):.1f}" x2="{LEFT + plot_w}" y2="{sy(t):.1f}" stroke="#eee"/>'
                     f'<text x="{LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" font-size="11">{t:.3g}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 12}" text-anchor="middle" font-size="13">'
                 f'{escape(x_label)}{" (log scale)" if log_x else ""}</text>')
    parts.append(f'<text transform="translate(16 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle" '
                 f'font-size="13">{escape(y_label)}</text>')
    if budget_y is not None:
        parts.append(f'<line class="budget" x1="{LEFT}" y1="{sy(budget_y):.1f}" x2="{LEFT + plot_w}" '
                     f'y2="{sy(budget_y):.1f}" stroke="#d62728" stroke-dasharray="6 4"/>'
                     f'<text x="{LEFT + plot_w - 4}" y="{sy(budget_y) - 5:.1f}" text-anchor="end" font-size="11" '
                     f'fill="#d62728">accuracy budget</text>')
    front = sorted((p for p in points if p.on_front), key=lambda p: p.x)
    if len(front) > 1:
        path = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in front)
        parts.append(f'<polyline class="front" points="{path}" fill="none" stroke="#ff7f0e" stroke-width="2"/>')
    style = {"screen": ("#9e9e9e", 4), "full": ("#1f77b4", 5), "front": ("#ff7f0e", 6),
             "baseline": ("#d62728", 7), "best": ("#2ca02c", 8)}
    for p in sorted(points, key=lambda p: list(style).index(p.kind)):
        color, r = style[p.kind]
        tip = escape(f"{p.label}\n{x_label}: {_fmt(p.x)}\n{y_label}: {p.y:.4f}\n({p.kind})")
        shape = (f'<rect x="{sx(p.x) - r:.1f}" y="{sy(p.y) - r:.1f}" width="{2 * r}" height="{2 * r}" '
                 f'transform="rotate(45 {sx(p.x):.1f} {sy(p.y):.1f})"' if p.kind == "baseline" else
                 f'<circle cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="{r}"')
        parts.append(f'{shape} class="point {p.kind}" data-key="{escape(p.key)}" fill="{color}" '
                     f'fill-opacity="0.85" stroke="#333" stroke-width="0.5"><title>{tip}</title>'
                     f'{"</rect>" if p.kind == "baseline" else "</circle>"}')
    legend = [("screen", "timed only"), ("full", "accuracy measured"), ("front", "Pareto front"),
              ("baseline", "baseline"), ("best", "answer")]
    for i, (kind, text) in enumerate(legend):
        x = LEFT + 10 + i * 120
        parts.append(f'<circle cx="{x}" cy="{TOP - 18}" r="5" fill="{style[kind][0]}"/>'
                     f'<text x="{x + 9}" y="{TOP - 14}" font-size="11">{text}</text>')
    parts.append("</svg>")
    return "".join(parts)


def points_from(trials: list[Trial], *, objective: Objective, front_keys: set[str], baseline_key: str | None,
                best_key: str | None, y: Callable[[Trial], float | None] | None = None) -> list[Point]:
    """One point per trial: x = the objective's value, y = `y(trial)` (default: the raw metric)."""
    points = []
    for trial in trials:
        value = y(trial) if y is not None else trial.metric_value
        x = objective.value(trial)
        if not trial.ok or x is None or value is None:
            continue
        settled = trial.extra.get("verdict") in ("within", "outside", "baseline")
        kind = "full" if settled else "screen"
        on_front = trial.key in front_keys
        if on_front:
            kind = "front"
        if trial.key == baseline_key:
            kind = "baseline"
        if trial.key == best_key:
            kind = "best"
        points.append(Point(float(x), float(value), trial.label, kind, trial.key, on_front))
    return points
