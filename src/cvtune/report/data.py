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

    def drop(self, trial: Trial) -> float | None:
        """The trial's metric drop against the baseline on the same images (the search's paired estimate)."""
        if trial.extra.get("drop") is not None:
            return float(trial.extra["drop"])
        base = self.baseline
        if base is None or base.metric is None or trial.metric is None:
            return None
        if trial.key == base.key:
            return 0.0
        return self.budget.drop(base.metric.value, trial.metric.value)

    def best_rows(self) -> list[Trial]:
        """One row per candidate: its result (timing, metric and the decision taken), in the order measured."""
        return [t for t in self.trials if t.rung == "result"]


def load_run(out: str | Path) -> RunData:
    out = Path(out)
    with Store.open(out, create=False) as store:
        return RunData(out=out, config=store.get_meta("config", {}), result=store.get_meta("result"),
                       facts=store.get_meta("facts", {}), machine=store.get_meta("machine") or {},
                       trials=store.trials(), models=store.models())
