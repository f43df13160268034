"""Everything a report shows, read back from OUT/trials.sqlite (so `cvtune report OUT` regenerates it anywhere):
the run's config, its result, every trial (typed), the built models, and the machine it was measured on."""

from __future__ import annotations

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


def load_run(out: str | Path) -> RunData:
    out = Path(out)
    with Store.open(out, create=False) as store:
        return RunData(out=out, config=store.get_meta("config", {}), result=store.get_meta("result"),
                       facts=store.get_meta("facts", {}), machine=store.get_meta("machine") or {},
                       trials=store.trials(), models=store.models())
