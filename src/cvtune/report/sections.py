"""The data behind each report section, computed once from a RunData and rendered by html.py and markdown.py: the
chart's points (the baseline and the chosen one at the back-to-back timing the ratios use), the runtime x
technique grid, where the time goes (per-op-type profiles), the best-so-far timeline, sensitivity curves and the
deploy snippet. Sections the run did not record return None, and the report says "not recorded"."""

from __future__ import annotations

import shlex
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..search.records import Measurement, Trial
from .data import RunData
from .findings import runtime_name
from .plots import Point, Series


def spread(timing: Measurement | None) -> tuple[float | None, float | None, float | None]:
    """(p10, p50, p90) ms of one run; p10 needs the raw times (None when the trial kept none)."""
    if timing is None:
        return None, None, None
    if timing.times_ms:
        p10, p50, p90 = (float(v) for v in np.percentile(np.asarray(timing.times_ms, dtype=np.float64),
                                                          [10, 50, 90]))
        return p10, timing.p50_ms, p90
    return None, timing.p50_ms, timing.p90_ms


def chart_points(run: RunData) -> list[Point]:
    """One point per candidate (its most thorough measurement), y = metric change vs the baseline (positive =
    better). The baseline and the chosen candidate sit at their back-to-back final timing when there is one."""
    objective = run.objective
    base, best = run.baseline, run.best
    numbers = run.candidate_numbers()
    points = []
    for trial in run.best_rows():
        change = run.change(trial)
        timed = run.final_for(trial) or trial
        x = objective.value(timed)
        if not trial.ok or x is None or change is None:
            continue
        kind = "full" if settled(trial) else "screen"
        if base is not None and trial.key == base.key:
            kind = "baseline"
        if best is not None and trial.key == best.key:
            kind = "best"
        x_lo = x_hi = None
        if objective.field == "p50_ms":
            p10, _, p90 = spread(timed.timing)
            x_lo, x_hi = (p10 if p10 is not None else x), p90
        ci = run.change_ci(trial)
        scale = 100.0 if run.budget.relative else 1.0
        points.append(Point(float(x), change * scale, trial.label, kind, trial.key,
                            trial.key in run.front_keys, numbers.get(trial.key, 0),
                            x_lo, x_hi, ci[0] * scale if ci else None, ci[1] * scale if ci else None))
    return points


@dataclass(frozen=True)
class Grid:
    """Median speed-up (baseline p50 / candidate p50, each timed alone in the same search) per runtime
    (rows) and technique combination (columns), with how many candidates each cell holds."""

    runtimes: list[str]
    techniques: list[str]
    cells: dict[tuple[str, str], tuple[float, float | None, int]]  # (speed-up, median change, candidates)


def technique_grid(run: RunData) -> Grid | None:
    base = run.baseline
    if base is None:
        return None
    ref = base.p50_ms  # every summary row's timing is its time stage: all against the baseline's time stage
    values: dict[tuple[str, str], list[tuple[float, float | None]]] = defaultdict(list)
    for trial in run.best_rows():
        if not trial.ok or not trial.p50_ms or not ref or trial.candidate.debug:
            continue
        rt = trial.candidate.runtime.to_dict()
        rt.pop("threads", None)
        values[(runtime_name(rt), trial.candidate.transforms_label())].append((ref / trial.p50_ms,
                                                                               run.change(trial)))
    if not values:
        return None
    cells = {}
    for cell, pairs in values.items():
        changes = [c for _, c in pairs if c is not None]
        cells[cell] = (statistics.median(r for r, _ in pairs), statistics.median(changes) if changes else None,
                       len(pairs))
    runtimes = sorted({r for r, _ in cells})
    techniques = sorted({t for _, t in cells}, key=lambda t: (t != "as given", t))
    return Grid(runtimes, techniques, cells)


@dataclass(frozen=True)
class Profile:
    """Where one model's time goes: ms per op type (one inference), slowest first, from the runtime's profiler."""

    title: str
    ops: list[tuple[str, float]]

    @property
    def total_ms(self) -> float:
        return sum(ms for _, ms in self.ops)

    def top(self, n: int = 10) -> list[tuple[str, float]]:
        """The n slowest op types, the rest summed as 'other'."""
        if len(self.ops) <= n + 1:
            return self.ops
        return [*self.ops[:n], (f"other ({len(self.ops) - n} op types)", sum(ms for _, ms in self.ops[n:]))]


def profiles(run: RunData) -> list[Profile] | None:
    if not run.profiles:
        return None
    by_model = {t.model_key: t for t in run.trials if t.model_key}
    named = {"baseline": run.baseline, "best": run.best}
    out = []
    for key, ops in run.profiles.items():
        if not isinstance(ops, dict):
            continue
        trial = named.get(key) or by_model.get(key)
        who = {"baseline": "baseline", "best": "chosen"}.get(key, "model")
        title = f"{who}: {trial.label}" if trial is not None else f"model {key}"
        items = sorted(((str(op), float(ms)) for op, ms in ops.items() if isinstance(ms, int | float)),
                       key=lambda kv: -kv[1])
        out.append(Profile(title, items))
    return out or None


@dataclass(frozen=True)
class Timeline:
    """The best answer the search held over time: (seconds since start, objective value, label, metric)."""

    steps: list[tuple[float, float, str, float | None]]


def timeline(run: RunData) -> Timeline | None:
    if not run.timeline:
        return None
    labels = {t.key: t.label for t in run.trials}
    steps = []
    base = run.objective.value(run.baseline) if run.baseline is not None else None
    for event in run.timeline:
        if not isinstance(event, dict):
            continue
        t = event.get("t")
        value = event.get("value", event.get("objective"))
        if value is None and isinstance(event.get("gain"), int | float) and base:  # the optimizer records the gain
            value = base / event["gain"] if run.objective.minimize else base * event["gain"]
        if not isinstance(t, int | float) or not isinstance(value, int | float):
            continue
        metric = event.get("metric")
        key = str(event.get("key", ""))
        steps.append((float(t), float(value), event.get("label") or labels.get(key, key[:12]),
                      float(metric) if isinstance(metric, int | float) else None))
    return Timeline(sorted(steps)) if steps else None


def timeline_series(tl: Timeline) -> list[Series]:
    return [Series("", tuple((t, v) for t, v, _, _ in tl.steps), step=True,
                   notes=tuple(label for _, _, label, _ in tl.steps))]


@dataclass(frozen=True)
class Sensitivity:
    """One sensitivity result: metric change (positive = better, relative to its baseline) per level, per unit."""

    path: Path
    method: str
    metric: str
    baseline: float
    curves: list[tuple[str, list[tuple[float, float]]]]  # the most sensitive units first
    allocation: dict[str, float]


def sensitivities(run: RunData, *, top: int = 6) -> list[Sensitivity]:
    out = []
    for path, data in run.sensitivity:
        baseline = float(data.get("baseline") or 0.0)
        curves = []
        for curve in data.get("curves", []):
            points = sorted((float(lv), float(m)) for lv, m in (curve.get("metrics") or {}).items())
            changes = [(lv, (m - baseline) / abs(baseline) if baseline else m - baseline) for lv, m in points]
            if changes:  # level 0 is the model as given: no change, by definition
                curves.append((str(curve.get("name", "?")), [(0.0, 0.0), *changes]))
        curves.sort(key=lambda c: min(v for _, v in c[1]))
        out.append(Sensitivity(path, str(data.get("method", "")), str(data.get("metric", "metric")), baseline,
                               curves[:top], dict(data.get("allocation") or {})))
    return out


def deploy_snippet(run: RunData) -> tuple[str, str] | None:
    """(shell, python) that run the exported answer, or None when nothing was exported."""
    exported = (run.result or {}).get("exported")
    if not exported:
        return None
    deploy = str(exported)
    data = str(run.config.get("data") or "IMAGES")
    shell = f"cvtune run {shlex.quote(deploy)} -i {shlex.quote(data)} -o predictions.jsonl"
    python = "\n".join([
        "import cv2",
        "import cvtune",
        "",
        f"deployed = cvtune.load_deployed({deploy!r})",
        'image = cv2.imread("image.png")  # BGR, as OpenCV reads it',
        "print(deployed.predict(image))           # one image -> one prediction",
        "print(deployed.predict([image, image]))  # a list -> one prediction per image",
    ])
    return shell, python


def settled(trial: Trial) -> bool:
    """Its accuracy was measured to a verdict (within or outside the budget), or it is the baseline."""
    return trial.extra.get("verdict") in ("within", "outside", "baseline")


def stage(trial: Trial) -> str:
    """A trial's stage in words (never an opaque id)."""
    rung = trial.rung
    if rung == "result":
        verdict = trial.extra.get("verdict") or ""
        n = trial.extra.get("drop_images") or (trial.metric.n_images if trial.metric else 0)
        return {"baseline": f"the model as given ({n} images)", "within": f"within the budget on {n} images",
                "outside": f"over the budget on {n} images", "not faster": "timed: not faster than the best so far",
                "failed": "failed"}.get(verdict, verdict or "summary")
    if rung == "time":
        return "timed alone"
    if rung.startswith("accuracy:"):
        start, _, stop = rung[len("accuracy:"):].partition("-")
        return f"accuracy on images {int(start) + 1}-{stop}"
    if rung.startswith("confirm:"):
        return "timed interleaved with the best so far"
    if rung.startswith("final"):
        return "final back-to-back timing"
    return rung


def expected_gain(trial: Trial) -> Any:
    """The gain over the baseline the optimizer expected of this candidate when it chose to try it (a number), when
    recorded; `why_text(trial)` says what that expectation was made of."""
    value = trial.extra.get("expected_gain", trial.extra.get("why"))
    return value if isinstance(value, int | float) else None


def why_text(trial: Trial) -> str:
    """Why the optimizer tried this candidate when it did: probability within budget, cost and the levers."""
    why = trial.extra.get("why")
    return why if isinstance(why, str) else ""
