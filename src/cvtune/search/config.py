"""What one optimize run is asked to do (OptimizeConfig) and what it found (OptimizeResult)."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
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
    screen_images: int = 16
    eval_images: int | None = None  # cap on the full evaluation split (None = all of it)
    calib_images: int = 16  # calibration images for pruning/quantization
    enumerate_limit: int = 48  # spaces larger than this are sampled with optuna
    max_trials: int | None = None  # cap on screened candidates (None: all when enumerating, 40 with optuna)
    promote_eta: int = 3  # successive halving: keep about 1/eta of the screened candidates
    promote_min: int = 3
    promote_max: int = 6
    trial_timeout_s: float = 300.0
    memory_limit_mb: int | None = 6144
    final_min_time_s: float = 2.0

    def __post_init__(self) -> None:
        get_objective(self.objective)
        if self.screen_images < 1:
            raise UsageError(f"screen_images must be >= 1 (got {self.screen_images})")
        if self.eval_images is not None and self.eval_images < 1:
            raise UsageError(f"eval_images must be >= 1 (got {self.eval_images})")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise UsageError("the time budget must be positive")

    def to_dict(self) -> dict[str, Any]:
        return {"model": str(self.model), "task": self.task, "data": str(self.data), "out": str(self.out),
                "data_kind": self.data_kind, "task_options": self.task_options, "preprocess": self.preprocess,
                "budget": self.budget.to_dict(),
                "objective": self.objective, "time_budget_s": self.time_budget_s, "seed": self.seed,
                "space": self.space.to_dict(), "calib_fraction": self.calib_fraction,
                "screen_images": self.screen_images, "eval_images": self.eval_images}

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


@dataclass
class OptimizeResult:
    """What the search found, as typed trials (see records.Trial)."""

    out: Path
    objective: str
    budget: Budget
    baseline: Trial | None
    best: Trial | None  # the chosen candidate's full-rung trial
    met_budget: bool
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
    seconds: float = 0.0

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
        if not (self.baseline and self.best) or self.baseline.metric is None or self.best.metric is None:
            return None
        return self.budget.drop(self.baseline.metric.value, self.best.metric.value)

    def to_dict(self) -> dict[str, Any]:
        def trial(t: Trial | None) -> dict[str, Any] | None:
            return None if t is None else t.to_dict()

        return {"out": str(self.out), "objective": self.objective, "budget": self.budget.to_dict(),
                "baseline": trial(self.baseline), "best": trial(self.best), "met_budget": self.met_budget,
                "baseline_final": trial(self.baseline_final), "best_final": trial(self.best_final),
                "speedup": self.speedup, "gain": self.gain, "drop": self.drop, "front": [t.key for t in self.front],
                "n_trials": self.n_trials, "n_failed": self.n_failed, "n_candidates": self.n_candidates,
                "strategy": self.strategy, "resumed": self.resumed, "stopped_early": self.stopped_early,
                "notes": self.notes, "exported": str(self.exported) if self.exported else None,
                "report": str(self.report) if self.report else None, "seconds": self.seconds}
