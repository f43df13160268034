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

    def baseline_metric(self) -> dict[str, float]:
        """The baseline's metric per rung (drops are taken against the same images)."""
        base = self.baseline
        if base is None:
            return {}
        return {t.rung: t.metric.value for t in self.trials if t.key == base.key and t.ok and t.metric is not None}

    def drop(self, trial: Trial) -> float | None:
        """The trial's metric drop against the baseline measured at the same rung (final rungs: the full one)."""
        refs = self.baseline_metric()
        ref = refs.get("full") if trial.rung.startswith("final") else refs.get(trial.rung)
        if ref is None or trial.metric is None:
            return None
        return self.budget.drop(ref, trial.metric.value)

    def change(self, trial: Trial) -> float | None:
        """The trial's metric change against the baseline at the same rung: positive = better (minus the drop)."""
        drop = self.drop(trial)
        return None if drop is None or math.isinf(drop) else 0.0 - drop  # never -0.0

    def change_ci(self, trial: Trial) -> tuple[float, float] | None:
        """The change's range from the trial's metric 95% CI (the baseline's own uncertainty is not included)."""
        m = trial.metric
        refs = self.baseline_metric()
        ref = refs.get("full") if trial.rung.startswith("final") else refs.get(trial.rung)
        if m is None or m.ci_low is None or m.ci_high is None or ref is None:
            return None
        lo, hi = -self.budget.drop(ref, m.ci_low), -self.budget.drop(ref, m.ci_high)
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
        """One trial per candidate: its most thorough successful measurement (full over screen), else its failure."""
        order = {"screen": 0, "full": 1}
        chosen: dict[str, Trial] = {}
        for trial in self.trials:
            if trial.rung.startswith("final"):
                continue
            have = chosen.get(trial.key)
            rank = (trial.ok, order.get(trial.rung, 0))
            if have is None or rank > (have.ok, order.get(have.rung, 0)):
                chosen[trial.key] = trial
        return list(chosen.values())


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
