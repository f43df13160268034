"""Everything a report shows, read back from OUT/trials.sqlite (so `cvtune report OUT` regenerates it anywhere):
the run's config, its result, every trial (typed), the built models, the machine it was measured on, and what the
optimizer recorded when it could (the best-so-far timeline, per-op-type profiles, the re-measured claim), plus any
sensitivity JSON (`cvtune sensitivity ... -o OUT/sensitivity.json`) found next to the run.

One sign convention everywhere: `change(trial)` is the metric change against the baseline, positive = better, in
the budget's units (a fraction for a relative budget, metric units for an absolute one)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..budget import Budget
from ..search.goals import Objective, get_objective
from ..search.records import BuiltModel, Trial
from ..search.store import Store


def _trial(data: dict[str, Any] | None) -> Trial | None:
    return Trial.from_dict(data) if data else None


@dataclass
class RunData:
    out: Path
    config: dict[str, Any]
    result: dict[str, Any] | None  # OptimizeResult.to_dict(); its trials are read back by the properties below
    facts: dict[str, Any]
    machine: dict[str, Any]
    trials: list[Trial]
    models: list[BuiltModel] = field(default_factory=list)
    timeline: list[dict[str, Any]] | None = None  # store meta "timeline": [{t, key, value, metric}], best so far
    profiles: dict[str, dict[str, float]] | None = None  # store meta "profiles": {model key|baseline|best: {op: ms}}
    sensitivity: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)  # (file, SensitivityResult dict)

    @property
    def budget(self) -> Budget:
        return Budget.from_dict(self.config.get("budget", {"value": 0.01, "relative": True}))

    @property
    def objective(self) -> Objective:
        return get_objective(self.config.get("objective", "latency"))

    @property
    def baseline(self) -> Trial | None:
        return _trial((self.result or {}).get("baseline"))

    @property
    def best(self) -> Trial | None:
        return _trial((self.result or {}).get("best"))

    @property
    def baseline_final(self) -> Trial | None:
        return _trial((self.result or {}).get("baseline_final"))

    @property
    def best_final(self) -> Trial | None:
        return _trial((self.result or {}).get("best_final"))

    @property
    def front_keys(self) -> set[str]:
        return set((self.result or {}).get("front") or [])

    @property
    def claim(self) -> dict[str, Any] | None:
        """The chosen candidate's claim re-measured through the exported deploy.json, when the run recorded it."""
        claim = (self.result or {}).get("claim")
        return claim if isinstance(claim, dict) else None

    @property
    def metric_name(self) -> str:
        for trial in (self.baseline, self.best, *self.trials):
            if trial is not None and trial.metric is not None:
                return trial.metric.name
        return "metric"

    def drop(self, trial: Trial) -> float | None:
        """The trial's metric drop against the baseline on the same images (the search's paired estimate)."""
        if trial.extra.get("drop") is not None:
            return float(trial.extra["drop"])
        base = self.baseline
        if base is None or base.metric is None or trial.metric is None:
            return None
        # 0 for the baseline, except where a label-free task counts from the original's own score (1.0), which the
        # baseline's runtime may not reproduce
        return self.budget.drop(base.metric.level, trial.metric.value)

    def change(self, trial: Trial) -> float | None:
        """The trial's metric change against the baseline on the same images: positive = better (minus the drop)."""
        drop = self.drop(trial)
        return None if drop is None or math.isinf(drop) else 0.0 - drop  # never -0.0

    def change_ci(self, trial: Trial) -> tuple[float, float] | None:
        """The change's 95% CI: the search's paired bootstrap when it made one, else the trial's own metric CI
        against the baseline's value (the baseline's uncertainty then not included)."""
        ci = trial.extra.get("drop_ci")
        if isinstance(ci, list) and len(ci) == 2 and all(isinstance(v, int | float) for v in ci):
            lo, hi = -float(ci[1]), -float(ci[0])
        else:
            m, base = trial.metric, self.baseline
            if m is None or m.ci_low is None or m.ci_high is None or base is None or base.metric is None:
                return None
            lo, hi = -self.budget.drop(base.metric.level, m.ci_low), -self.budget.drop(base.metric.level, m.ci_high)
        return (min(lo, hi), max(lo, hi)) if not (math.isinf(lo) or math.isinf(hi)) else None

    def final_for(self, trial: Trial | None) -> Trial | None:
        """The back-to-back final timing of this trial's candidate, when the run made one."""
        if trial is None:
            return None
        for final in (self.baseline_final, self.best_final):
            if final is not None and final.key == trial.key:
                return final
        return None

    def candidate_numbers(self) -> dict[str, int]:
        """Candidates numbered 1, 2, ... in the order they were first tried (chart labels and table rows)."""
        numbers: dict[str, int] = {}
        for trial in sorted(self.trials, key=lambda t: t.started):
            numbers.setdefault(trial.key, len(numbers) + 1)
        return numbers

    def best_rows(self) -> list[Trial]:
        """One row per candidate: its result (timing, metric and the decision taken), in the order measured."""
        return [t for t in self.trials if t.rung == "result"]


SENSITIVITY_FORMAT = "cvtune-sensitivity/"


def find_sensitivity(out: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Sensitivity results (`cvtune sensitivity ... -o OUT/NAME.json`) in OUT, recognised by their format field."""
    found = []
    for path in sorted(out.glob("*.json")) if out.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and str(data.get("format", "")).startswith(SENSITIVITY_FORMAT) \
                and isinstance(data.get("curves"), list):
            found.append((path, data))
    return found


def load_run(out: str | Path) -> RunData:
    out = Path(out)
    with Store.open(out, create=False) as store:
        return RunData(out=out, config=store.get_meta("config", {}), result=store.get_meta("result"),
                       facts=store.get_meta("facts", {}), machine=store.get_meta("machine") or {},
                       trials=store.trials(), models=store.models(), timeline=store.get_meta("timeline"),
                       profiles=store.get_meta("profiles"), sensitivity=find_sensitivity(out))
