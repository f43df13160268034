"""The order candidates are measured in. A strategy is an iterator fed back with each result (Olive's search
orchestrator): `for cand in strategy: strategy.tell(cand, measure(cand))`. Registered in STRATEGIES:
`anytime` (planner.py: the highest expected gain per second of cost first; the default), `enumerate` (boldness
order) and `optuna-tpe` (seeded TPE)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .space import Candidate, baseline_candidate, candidate_from, space_axes
from .trials import Search

if TYPE_CHECKING:
    from .measure import Outcome


class Strategy:
    """Base: iterate candidates to measure, learn from `tell`. `stopped` says why it ended early ('' = done)."""

    name = "base"

    def __init__(self, search: Search, space: list[Candidate]) -> None:
        self.search, self.space = search, space
        self.stopped = ""
        base = baseline_candidate(search.ctx.source).key()
        self.order = [c for c in space if c.key() != base]

    def __iter__(self) -> Iterator[Candidate]:  # pragma: no cover - abstract
        raise NotImplementedError

    def tell(self, cand: Candidate, outcome: Outcome) -> None:
        """Feedback after each measured candidate. Default: nothing to learn."""

    def why(self, cand: Candidate) -> str:
        """Why this candidate comes now (shown in the report)."""
        return self.name

    def expected(self, cand: Candidate) -> float | None:
        """The objective gain over the baseline this strategy expects of `cand`, when it has a model of it."""
        return None

    def explain(self, limit: int = 12) -> list[str]:
        return [f"{self.name}: {len(self.order)} candidates"]


def changes(cand: Candidate) -> int:
    """How many things a candidate changes in what the model computes (0: runtime settings only)."""
    resized = cand.input_size is not None or cand.input_scale != 1.0
    return int(resized) + len(cand.passes)


class Enumeration(Strategy):
    """Boldness order: candidates that compute exactly what the baseline computes (runtime, threads, batch only)
    first, then one change to the model or its input size, then combinations; a seeded shuffle within each
    group. Test hooks come first, so short test searches reach them."""

    name = "enumerate"

    def __init__(self, search: Search, space: list[Candidate]) -> None:
        super().__init__(search, space)
        random.Random(search.config.seed).shuffle(self.order)
        self.order.sort(key=lambda c: (not c.debug, changes(c)))  # stable: the shuffle decides within a group
        self.limit = search.config.max_trials or len(self.order)

    def __iter__(self) -> Iterator[Candidate]:
        yield from self.order[:self.limit]
        if self.limit < len(self.order):
            self.stopped = f"max trials: measured {self.limit} of {len(self.order)}"


class OptunaTPE(Strategy):
    """Seeded TPE over the space's axes (categorical indices), minimizing -log(gain) plus a steep penalty for a
    drop over the budget. A resumed search replays the same proposals (they are seeded and fed the same
    stored results), so it continues where it stopped."""

    name = "optuna-tpe"

    def __init__(self, search: Search, space: list[Candidate]) -> None:
        import optuna

        super().__init__(search, space)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        cfg = search.config
        self.axes = space_axes(cfg.space, search.ctx.facts, objective=cfg.objective)
        self.names = list(self.axes)
        self.distributions = {n: optuna.distributions.CategoricalDistribution(list(range(len(self.axes[n]))))
                              for n in self.names}
        self.keys = {c.key() for c in self.order}
        self.study = optuna.create_study(direction="minimize",
                                         sampler=optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=10))
        self.limit = cfg.max_trials or 40
        self.measured = 0
        self._asked: dict[str, Any] = {}

    def __iter__(self) -> Iterator[Candidate]:
        import optuna

        asked = 0
        seen: set[str] = set()
        while self.measured < self.limit and asked < 4 * self.limit and len(seen) < len(self.keys):
            trial = self.study.ask(self.distributions)
            asked += 1
            cand = candidate_from({n: self.axes[n][trial.params[n]] for n in self.names},
                                  self.search.ctx.facts.source_suffix)
            if cand is None or cand.key() not in self.keys or cand.key() in seen:
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            seen.add(cand.key())
            self._asked[cand.key()] = trial
            yield cand
        if self.measured < self.limit and len(seen) < len(self.keys):
            self.stopped = f"optuna proposed no new candidate after {asked} tries"

    def tell(self, cand: Candidate, outcome: Outcome) -> None:
        import optuna

        asked = self._asked.pop(cand.key())
        self.measured += 1
        if not outcome.ok or not outcome.gain:
            self.study.tell(asked, state=optuna.trial.TrialState.FAIL)
            return
        budget = self.search.config.budget
        excess = (outcome.drop.drop - budget.value) if outcome.drop is not None else 0.0
        self.study.tell(asked, -math.log(outcome.gain) + 10.0 * max(0.0, excess) / max(budget.value, 1e-3))


STRATEGIES: dict[str, type[Strategy]] = {Enumeration.name: Enumeration, OptunaTPE.name: OptunaTPE}


def make_strategy(search: Search, space: list[Candidate]) -> Strategy:
    return STRATEGIES[search.config.strategy](search, space)


__all__ = ["STRATEGIES", "Enumeration", "OptunaTPE", "Strategy", "changes", "make_strategy"]

from .planner import ExpectedGain  # noqa: E402 - the default strategy lives in its own module

STRATEGIES[ExpectedGain.name] = ExpectedGain
