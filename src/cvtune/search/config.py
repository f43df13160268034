"""What one optimize run is asked to do (OptimizeConfig) and what it found (OptimizeResult)."""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..budget import Budget
from ..errors import UsageError
from .goals import get_objective
from .records import Trial
from .space import SpaceConfig


@dataclass(frozen=True)
class OptimizeConfig:
    """One search: what to optimize, within which budget, where to write. Passed whole to `optimize`."""

    model: Path
    task: str
    data: Path
    out: Path
    data_kind: str | None = None
    task_options: dict[str, Any] = field(default_factory=dict)
    preprocess: str | None = None  # --preprocess: a spec, a JSON file or "guess"; None = what the model says
    budget: Budget = field(default_factory=Budget)
    objective: str = "latency"
    time_budget_s: float | None = None  # wall-clock limit for the whole search; None = until done
    seed: int = 0
    space: SpaceConfig = field(default_factory=SpaceConfig)
    calib_fraction: float = 0.3
    eval_images: int | None = None  # cap on the evaluation split (None = all of it)
    calib_images: int = 16  # calibration images the passes draw from (each takes what it declares)
    max_trials: int | None = None  # cap on candidates measured (None: all; optuna-tpe: 40)
    eval_workers: int = 1  # child processes evaluating accuracy at once (latency is always timed alone)
    ray: bool = False  # accuracy ranges as Ray tasks (search/ray_eval.py); latency is still timed here, alone
    ray_address: str | None = None  # a running cluster (HOST:PORT, ray://HOST:PORT, auto); None = a local Ray
    strategy: str = "anytime"  # the order candidates are tried in: anytime (expected gain), enumerate, optuna-tpe
    trial_timeout_s: float = 300.0
    memory_limit_mb: int | None = 6144
    final_min_time_s: float = 2.0
    # The user's own metric (Python API): eval_fn(deployed) -> float, higher is better, called in this process on
    # a cvtune.Deployed of each candidate instead of the task metric. Not saved with the run (a function).
    eval_fn: Callable[[Any], float] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        from .strategy import STRATEGIES

        get_objective(self.objective)
        if self.strategy not in STRATEGIES:
            raise UsageError(f"unknown strategy '{self.strategy}'; choose one of: {', '.join(STRATEGIES)}")
        if self.eval_workers < 1:
            raise UsageError(f"eval workers must be >= 1 (got {self.eval_workers})")
        if self.ray_address and not self.ray:  # an address implies Ray
            object.__setattr__(self, "ray", True)
        if self.eval_images is not None and self.eval_images < 1:
            raise UsageError(f"eval_images must be >= 1 (got {self.eval_images})")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise UsageError("the time budget must be positive")

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "eval_fn"}
        data.update(model=str(self.model), data=str(self.data), out=str(self.out), budget=self.budget.to_dict(),
                    space=self.space.to_dict(), task_options=dict(self.task_options))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OptimizeConfig:
        """Inverse of to_dict (unknown keys are an error naming them)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown optimize setting {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(data)
        for name in ("model", "data", "out"):
            if name in values:
                values[name] = Path(values[name])
        if "budget" in values:
            values["budget"] = Budget.from_dict(values["budget"])
        if "space" in values:
            values["space"] = SpaceConfig.from_dict(values["space"])
        return cls(**values)

    def resume_command(self) -> str:
        """The command line that resumes this search (same model, task, data and -o)."""
        args = ["cvtune", "optimize", str(self.model), "--task", self.task, "--data", str(self.data),
                "-o", str(self.out), "--max-drop", self.budget.describe().replace(" ", ""),
                "--objective", self.objective, "--seed", str(self.seed)]
        if self.data_kind:
            args += ["--kind", self.data_kind]
        if self.preprocess:
            args += ["--preprocess", str(self.preprocess)]
        if self.time_budget_s:
            args += ["--time", f"{int(math.ceil(self.time_budget_s))}s"]
        return shlex.join(args)


# Exit codes of `cvtune optimize` (and demo): documented in the README and in `cvtune optimize --help`.
EXIT_IMPROVED = 0  # an answer better than the model as given, within the budget, re-measured through deploy.json
EXIT_NO_IMPROVEMENT = 3  # nothing beat the model as given in the time: OUT/best holds the model as given


@dataclass
class OptimizeResult:
    """What the search found, as typed trials (see records.Trial)."""

    out: Path
    objective: str
    budget: Budget
    baseline: Trial | None
    best: Trial | None  # the answer's result row (the baseline's when nothing beat it)
    met_budget: bool
    improved: bool = False  # the answer is not the model as given
    baseline_final: Trial | None = None
    best_final: Trial | None = None
    front: list[Trial] = field(default_factory=list)
    n_trials: int = 0
    n_failed: int = 0
    n_candidates: int = 0
    strategy: str = "enumerate"
    resumed: bool = False
    stopped_early: str = ""  # why the search did not screen everything ("time budget", ...)
    notes: list[str] = field(default_factory=list)
    exported: Path | None = None
    report: Path | None = None
    claim: dict[str, Any] | None = None  # the answer re-measured through its deploy.json (claim.Claim)
    seconds: float = 0.0
    exit_code: int = EXIT_NO_IMPROVEMENT

    @property
    def speedup(self) -> float | None:
        """Baseline p50 / chosen p50, both from the back-to-back final measurement."""
        if not (self.baseline_final and self.best_final):
            return None
        return get_objective("latency").gain(self.baseline_final.p50_ms, self.best_final.p50_ms)

    @property
    def gain(self) -> float | None:
        """How much better the chosen candidate is on the objective (>1 = better): p50 speed-up, images/s ratio,
        or compressed-size reduction; from the final back-to-back measurement."""
        if not (self.baseline_final and self.best_final):
            return None
        objective = get_objective(self.objective)
        return objective.gain(objective.value(self.baseline_final), objective.value(self.best_final))

    @property
    def drop(self) -> float | None:
        """The answer's metric drop against the baseline (paired on the same images; 0 for the model as given)."""
        if not (self.baseline and self.best):
            return None
        if self.best.extra.get("drop") is not None:
            return float(self.best.extra["drop"])
        if self.baseline.metric is None or self.best.metric is None:
            return 0.0 if self.best.key == self.baseline.key else None
        return self.budget.drop(self.baseline.metric.level, self.best.metric.value)

    def to_dict(self) -> dict[str, Any]:
        def trial(t: Trial | None) -> dict[str, Any] | None:
            return None if t is None else t.to_dict()

        return {"out": str(self.out), "objective": self.objective, "budget": self.budget.to_dict(),
                "baseline": trial(self.baseline), "best": trial(self.best), "met_budget": self.met_budget,
                "improved": self.improved, "claim": self.claim, "exit_code": self.exit_code,
                "baseline_final": trial(self.baseline_final), "best_final": trial(self.best_final),
                "speedup": self.speedup, "gain": self.gain, "drop": self.drop, "front": [t.key for t in self.front],
                "n_trials": self.n_trials, "n_failed": self.n_failed, "n_candidates": self.n_candidates,
                "strategy": self.strategy, "resumed": self.resumed, "stopped_early": self.stopped_early,
                "notes": self.notes, "exported": str(self.exported) if self.exported else None,
                "report": str(self.report) if self.report else None, "seconds": self.seconds}
