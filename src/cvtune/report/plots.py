"""Charts as inline SVG (no JavaScript library, opens offline, scales to the page width): the speed/accuracy
scatter (every candidate numbered, the baseline, the chosen one and the Pareto front named on the chart itself,
latency spread and metric CI as error bars, the budget as a dashed line) and line charts (the search's
best-so-far timeline, sensitivity curves). Every label is readable without hovering; every string is escaped."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..search.goals import Objective
    from ..search.records import Trial

WIDTH, HEIGHT = 1000, 500
LEFT, RIGHT, TOP, BOTTOM = 78, 24, 44, 54
FONT = 13
NUMBERED_MAX = 16  # above this many candidates, screened-only points are not numbered on the chart
CHAR_W = 7.6  # estimated width of one character at FONT (for label placement; bold text is wider)
COLORS = {"screen": "#8c8c8c", "full": "#1f77b4", "baseline": "#d62728", "best": "#2ca02c", "front": "#ff7f0e"}
SERIES_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


@dataclass(frozen=True)
class Point:
    """One candidate on the scatter. `x_lo`/`x_hi`: its latency spread (p10-p90); `y_lo`/`y_hi`: its metric CI."""

    x: float
    y: float
    label: str
    kind: str  # screen | full | baseline | best
    key: str = ""
    on_front: bool = False
    number: int = 0
    x_lo: float | None = None
    x_hi: float | None = None
    y_lo: float | None = None
    y_hi: float | None = None


@dataclass(frozen=True)
class Series:
    """One line of a line chart; `notes` (optional, one per point) are written next to the points."""

    name: str
    points: tuple[tuple[float, float], ...]
    step: bool = False
    notes: tuple[str, ...] = ()


def _ticks(lo: float, hi: float, n: int = 6, log: bool = False) -> list[float]:
    if log:
        lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        ticks = [m * 10 ** e for e in range(lo_e, hi_e + 1) for m in (1, 2, 5)]
        return [t for t in ticks if lo <= t <= hi] or [lo, hi]
    span = hi - lo or 1.0
    step = 10 ** math.floor(math.log10(span / n))
    step *= next(m for m in (1, 2, 5, 10) if span / (step * m) <= n)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


class _Frame:
    """The plot area of one chart: data ranges to SVG coordinates, grid, ticks and axis titles."""

    def __init__(self, xs: list[float], ys: list[float], *, width: int, height: int, log_x: bool | None = None,
                 x_zero: bool = False, top_room: float = 0.1) -> None:
        self.width, self.height = width, height
        x_lo, x_hi = min(xs), max(xs)
        self.log_x = (x_lo > 0 and x_hi / x_lo > 5) if log_x is None else log_x
        if x_hi == x_lo:
            x_lo, x_hi = (x_lo * 0.9, x_hi * 1.1) if x_lo else (-1.0, 1.0)
        if self.log_x:
            x_lo, x_hi = x_lo / 1.15, x_hi * 1.15
        else:
            span = x_hi - x_lo
            x_lo, x_hi = (0.0 if x_zero else max(0.0, x_lo - 0.06 * span) if x_lo >= 0 else x_lo - 0.06 * span), \
                x_hi + 0.06 * span
        y_lo, y_hi = min(ys), max(ys)
        pad = (y_hi - y_lo) * 0.1 or max(abs(y_hi) * 0.05, 1e-3)
        self.x_lo, self.x_hi = x_lo, x_hi
        self.y_lo, self.y_hi = y_lo - pad, y_hi + max(pad, (y_hi - y_lo) * top_room)
        self.plot_w, self.plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def sx(self, x: float) -> float:
        if self.log_x:
            x = max(x, self.x_lo)
            return LEFT + (math.log(x) - math.log(self.x_lo)) / (math.log(self.x_hi) - math.log(self.x_lo)) \
                * self.plot_w
        return LEFT + (x - self.x_lo) / (self.x_hi - self.x_lo) * self.plot_w

    def sy(self, y: float) -> float:
        return TOP + (1 - (y - self.y_lo) / (self.y_hi - self.y_lo)) * self.plot_h

    def open(self, css_class: str, title: str) -> list[str]:
        return [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width} {self.height}" '
                f'class="chart {css_class}" role="img" aria-label="{escape(title)}" font-size="{FONT}" '
                f'font-family="system-ui,sans-serif" preserveAspectRatio="xMidYMid meet">',
                f'<rect x="{LEFT}" y="{TOP}" width="{self.plot_w}" height="{self.plot_h}" fill="#fcfcfc" '
                f'stroke="#bbb"/>']

    def axes(self, x_label: str, y_label: str, *, y_format: Callable[[float], str] = _fmt) -> list[str]:
        parts = []
        bottom = TOP + self.plot_h
        for t in _ticks(self.x_lo, self.x_hi, log=self.log_x):
            x = self.sx(t)
            parts.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{bottom}" stroke="#eee"/>'
                         f'<text x="{x:.1f}" y="{bottom + 17}" text-anchor="middle" fill="#444">{_fmt(t)}</text>')
        for t in _ticks(self.y_lo, self.y_hi):
            y = self.sy(t)
            parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + self.plot_w}" y2="{y:.1f}" stroke="#eee"/>'
                         f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#444">'
                         f'{escape(y_format(t))}</text>')
        parts.append(f'<text x="{LEFT + self.plot_w / 2}" y="{self.height - 12}" text-anchor="middle" '
                     f'font-size="{FONT + 1}">{escape(x_label)}{" (log scale)" if self.log_x else ""}</text>')
        parts.append(f'<text transform="translate(18 {TOP + self.plot_h / 2}) rotate(-90)" text-anchor="middle" '
                     f'font-size="{FONT + 1}">{escape(y_label)}</text>')
        return parts

    def hline(self, y: float, text: str, color: str, *, dash: str = "6 4") -> str:
        sy = self.sy(y)
        return (f'<line class="ref" x1="{LEFT}" y1="{sy:.1f}" x2="{LEFT + self.plot_w}" y2="{sy:.1f}" '
                f'stroke="{color}" stroke-dasharray="{dash}"/>'
                f'<text x="{LEFT + 6}" y="{sy - 5:.1f}" fill="{color}">{escape(text)}</text>')


class _Labels:
    """Places text labels next to points without overlapping each other (nudged up or down when they would)."""

    def __init__(self, frame: _Frame) -> None:
        self.frame = frame
        self.boxes: list[tuple[float, float, float, float]] = []

    def place(self, x: float, y: float, text: str, *, color: str = "#222", bold: bool = False,
              css: str = "label") -> str:
        width = CHAR_W * len(text) * (1.08 if bold else 1.0) + 4
        right_edge = LEFT + self.frame.plot_w
        anchor, x0 = ("start", x + 8) if x + 8 + width <= right_edge else ("end", x - 8)
        box_x = x0 if anchor == "start" else x0 - width
        for dy in (0, -16, 16, -32, 32, -48, 48, -64, 64):  # above the point first: error bars run through it
            ty = min(max(y - 9 + dy, TOP + 12), TOP + self.frame.plot_h - 3)
            box = (box_x, ty - 12, box_x + width, ty + 3)
            if not any(_overlap(box, b) for b in self.boxes):
                break
        self.boxes.append(box)
        weight = ' font-weight="600"' if bold else ""
        return (f'<text class="{css}" x="{x0:.1f}" y="{ty:.1f}" text-anchor="{anchor}" fill="{color}"{weight} '
                f'paint-order="stroke" stroke="#fff" stroke-width="3">{escape(text)}</text>')


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _short(text: str, n: int = 46) -> str:
    return text if len(text) <= n else text[:n - 1] + "\u2026"


def scatter_svg(points: list[Point], *, x_label: str, y_label: str, budget_y: float | None = None,
                budget_text: str = "accuracy budget", log_x: bool | None = None,
                y_format: Callable[[float], str] = _fmt) -> str:
    """The speed/accuracy scatter. Lower x is better (latency, size) unless the caller says otherwise; higher y is
    better. Points carry their number; the baseline, the chosen one and the Pareto front also their label."""
    if not points:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} 60" class="chart empty" role="img" '
                f'aria-label="no data"><text x="10" y="35" font-size="{FONT}">no successful trial to plot</text></svg>')
    xs = [v for p in points for v in (p.x, p.x_lo, p.x_hi) if v is not None]
    ys = [v for p in points for v in (p.y, p.y_lo, p.y_hi) if v is not None] + [0.0] + \
        ([budget_y] if budget_y is not None else [])
    frame = _Frame(xs, ys, width=WIDTH, height=HEIGHT, log_x=log_x, top_room=0.18)  # room for labels above
    sx, sy = frame.sx, frame.sy
    parts = frame.open("scatter", f"{y_label} against {x_label}")
    parts += frame.axes(x_label, y_label, y_format=y_format)
    parts.append(frame.hline(0.0, "baseline accuracy", "#666", dash="2 3"))
    if budget_y is not None:
        parts.append(frame.hline(budget_y, budget_text, "#d62728"))
    for p in points:  # error bars under the markers
        if p.x_lo is not None and p.x_hi is not None:
            parts.append(f'<line class="spread" x1="{sx(p.x_lo):.1f}" y1="{sy(p.y):.1f}" x2="{sx(p.x_hi):.1f}" '
                         f'y2="{sy(p.y):.1f}" stroke="{COLORS[p.kind]}" stroke-opacity="0.55" stroke-width="2"/>')
        if p.y_lo is not None and p.y_hi is not None and p.y_hi > p.y_lo:
            parts.append(f'<line class="ci" x1="{sx(p.x):.1f}" y1="{sy(p.y_lo):.1f}" x2="{sx(p.x):.1f}" '
                         f'y2="{sy(p.y_hi):.1f}" stroke="{COLORS[p.kind]}" stroke-opacity="0.55" stroke-width="2"/>')
    order = ("screen", "full", "baseline", "best")
    for p in sorted(points, key=lambda p: order.index(p.kind)):
        x, y = sx(p.x), sy(p.y)
        color = COLORS[p.kind]
        tip = f"<title>{escape(f'#{p.number} {p.label}')}</title>"
        common = f'class="point {p.kind}" data-key="{escape(p.key)}" fill="{color}" stroke="#333" stroke-width="0.7"'
        if p.kind == "baseline":
            parts.append(f'<rect x="{x - 7:.1f}" y="{y - 7:.1f}" width="14" height="14" '
                         f'transform="rotate(45 {x:.1f} {y:.1f})" {common}>{tip}</rect>')
        else:
            r = {"screen": 5, "full": 6, "best": 9}[p.kind]
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" {common}>{tip}</circle>')
    # The Pareto front goes on top of the markers (so the chosen one cannot hide it): a line through its members
    # and an open ring around each one.
    front = sorted((p for p in points if p.on_front), key=lambda p: p.x)
    if len(front) > 1:
        path = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in front)
        parts.append(f'<polyline class="front" points="{path}" fill="none" stroke="{COLORS["front"]}" '
                     f'stroke-width="2.5"/>')
    for p in front:
        parts.append(f'<circle class="front-ring" cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="13" fill="none" '
                     f'stroke="{COLORS["front"]}" stroke-width="2.5"/>')
    labels = _Labels(frame)
    named = sorted(points, key=lambda p: (p.kind not in ("best", "baseline"), not p.on_front, p.number))
    if len(points) > NUMBERED_MAX:  # many candidates: number only the re-measured ones (the key lists them all)
        named = [p for p in named if p.kind != "screen" or p.on_front]
    for p in named:
        text = f"#{p.number}"
        if p.kind == "baseline":
            text += f" baseline: {_short(p.label)}"
        elif p.kind == "best":
            text += f" chosen: {_short(p.label)}"
        elif p.on_front:
            text += f" {_short(p.label)}"
        parts.append(labels.place(sx(p.x), sy(p.y), text, bold=p.kind in ("best", "baseline"),
                                  color=COLORS[p.kind] if p.kind in ("best", "baseline") else "#222"))
    parts += _legend(points, len(front))
    parts.append("</svg>")
    return "".join(parts)


def _legend(points: list[Point], front_size: int) -> list[str]:
    """Only what the chart draws: a kind without points, or a front line that was not drawn, is not listed."""
    kinds = {p.kind for p in points}
    items = [(k, t) for k, t in (("screen", "timed only"), ("full", "accuracy measured to a verdict"),
                                 ("baseline", "baseline"), ("best", "chosen")) if k in kinds]
    if front_size:
        items.append(("front", "Pareto front" if front_size > 1 else "Pareto front (one point)"))
    parts, x = [], LEFT
    for kind, text in items:
        color = COLORS[kind]
        if kind == "front":
            symbol = (f'<line x1="{x - 8}" y1="{TOP - 20}" x2="{x + 8}" y2="{TOP - 20}" stroke="{color}" '
                      f'stroke-width="2.5"/>' if front_size > 1 else "") + \
                f'<circle cx="{x}" cy="{TOP - 20}" r="6" fill="none" stroke="{color}" stroke-width="2.5"/>'
        elif kind == "baseline":
            symbol = f'<rect x="{x - 5}" y="{TOP - 25}" width="10" height="10" transform="rotate(45 {x} ' \
                     f'{TOP - 20})" fill="{color}"/>'
        else:
            symbol = f'<circle cx="{x}" cy="{TOP - 20}" r="5" fill="{color}"/>'
        parts.append(f'<g class="legend-item" data-kind="{kind}">{symbol}<text x="{x + 12}" y="{TOP - 16}">'
                     f'{escape(text)}</text></g>')
        x += 40 + CHAR_W * len(text)
    return parts


def line_svg(series: list[Series], *, x_label: str, y_label: str, css_class: str, ref_y: float | None = None,
             ref_text: str = "", height: int = 380, y_format: Callable[[float], str] = _fmt,
             x_zero: bool = False) -> str:
    """Lines (or steps) with each series named at its last point and per-point notes where given."""
    pts = [pt for s in series for pt in s.points]
    if not pts:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} 60" class="chart empty" role="img" '
                f'aria-label="no data"><text x="10" y="35" font-size="{FONT}">nothing to plot</text></svg>')
    ys = [y for _, y in pts] + ([ref_y] if ref_y is not None else [])
    frame = _Frame([x for x, _ in pts], ys, width=WIDTH, height=height, log_x=False, x_zero=x_zero)
    sx, sy = frame.sx, frame.sy
    parts = frame.open(css_class, f"{y_label} against {x_label}")
    parts += frame.axes(x_label, y_label, y_format=y_format)
    if ref_y is not None:
        parts.append(frame.hline(ref_y, ref_text, "#d62728"))
    labels = _Labels(frame)
    for i, s in enumerate(series):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        coords = []
        for j, (x, y) in enumerate(s.points):
            if s.step and j:
                coords.append(f"{sx(x):.1f},{sy(s.points[j - 1][1]):.1f}")
            coords.append(f"{sx(x):.1f},{sy(y):.1f}")
        parts.append(f'<polyline class="series" points="{" ".join(coords)}" fill="none" stroke="{color}" '
                     f'stroke-width="2"/>')
        for x, y in s.points:
            parts.append(f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{color}"/>')
        for (x, y), note in zip(s.points, s.notes, strict=False):
            if note:
                parts.append(labels.place(sx(x), sy(y), _short(note, 40)))
        if s.name:
            x, y = s.points[-1]
            parts.append(labels.place(sx(x), sy(y), _short(s.name, 40), color=color, bold=True))
    parts.append("</svg>")
    return "".join(parts)


def points_from(trials: list[Trial], *, objective: Objective, front_keys: set[str], baseline_key: str | None,
                best_key: str | None, y: Callable[[Trial], float | None] | None = None,
                numbers: dict[str, int] | None = None) -> list[Point]:
    """One point per trial: x = the objective's value, y = `y(trial)` (default: the raw metric)."""
    points = []
    for trial in trials:
        value = y(trial) if y is not None else trial.metric_value
        x = objective.value(trial)
        if not trial.ok or x is None or value is None:
            continue
        kind = "full" if trial.extra.get("verdict") in ("within", "outside") else "screen"
        if trial.key == baseline_key:
            kind = "baseline"
        if trial.key == best_key:
            kind = "best"
        points.append(Point(float(x), float(value), trial.label, kind, trial.key, trial.key in front_keys,
                            (numbers or {}).get(trial.key, 0)))
    return points
