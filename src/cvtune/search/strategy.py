"""Which candidates get measured, and which one wins. A strategy is an iterator fed back with each result
(Olive's search orchestrator): `for cand in strategy: strategy.tell(cand, measure(cand))`. Enumeration in
boldness order serves small spaces, seeded optuna TPE large ones (STRATEGIES); promotion (successive halving) and
the choice within the accuracy budget follow the screening."""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Iterator
from typing import Any

from .records import Trial
from .space import Candidate, baseline_candidate, candidate_from, space_axes
from .trials import Search


class Strategy:
    """Base: iterate candidates to screen, learn from `tell`. `stopped` says why it ended early ('' = done)."""

    name = "base"

    def __init__(self, search: Search, space: list[Candidate], baseline: Trial) -> None:
        self.search, self.space, self.baseline = search, space, baseline
        self.stopped = ""

    def __iter__(self) -> Iterator[Candidate]:  # pragma: no cover - abstract
        raise NotImplementedError

    def tell(self, cand: Candidate, trial: Trial) -> None:
        """Feedback after each measured candidate. Default: nothing to learn."""

    def progress(self) -> tuple[int, int]:
        return 0, len(self.space)


def changes(cand: Candidate) -> int:
    """How many things a candidate changes in what the model computes (0: runtime settings only)."""
    resized = cand.input_size is not None or cand.input_scale != 1.0
    return int(resized) + len(cand.passes)


class Enumeration(Strategy):
    """Boldness order: candidates that compute exactly what the baseline computes (runtime, threads, batch only:
    cheap, never over budget) first, then one change to the model or its input size, then combinations; a seeded
    shuffle within each group, so a search cut short by time still sees every axis. The baseline's own
    configuration is skipped (it is measured separately)."""

    name = "enumerate"

    def __init__(self, search: Search, space: list[Candidate], baseline: Trial) -> None:
        super().__init__(search, space, baseline)
        base = baseline_candidate().key()
        order = [c for c in space if c.key() != base]
        random.Random(search.config.seed).shuffle(order)
        order.sort(key=changes)  # stable: the shuffle decides within a group
        hooks = [c for c in order if c.debug]  # test hooks early, so short test searches reach them
        self.order = hooks + [c for c in order if not c.debug]
        self.limit = search.config.max_trials or len(self.order)
        self.done = 0

    def __iter__(self) -> Iterator[Candidate]:
        for cand in self.order[:self.limit]:
            yield cand
            self.done += 1
        if self.limit < len(self.order):
            self.stopped = f"max trials: screened {self.limit} of {len(self.order)}"

    def progress(self) -> tuple[int, int]:
        return self.done, len(self.order)


class OptunaTPE(Strategy):
    """Seeded TPE over the space's axes (categorical indices). Trials already in the store are replayed into the
    study first, so a resumed search continues where it stopped instead of starting over."""

    name = "optuna-tpe"

    def __init__(self, search: Search, space: list[Candidate], baseline: Trial) -> None:
        import optuna

        super().__init__(search, space, baseline)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        cfg = search.config
        self.axes = space_axes(cfg.space, search.ctx.facts, objective=cfg.objective)
        self.names = list(self.axes)
        self.distributions = {n: optuna.distributions.CategoricalDistribution(list(range(len(self.axes[n]))))
                              for n in self.names}
        self.keys = {c.key() for c in space}
        self.index: dict[str, dict[str, int]] = {}
        for combo in itertools.product(*(range(len(self.axes[n])) for n in self.names)):
            cand = candidate_from({n: self.axes[n][i] for n, i in zip(self.names, combo, strict=True)})
            if cand is not None:
                self.index[cand.key()] = dict(zip(self.names, combo, strict=True))
        self.study = optuna.create_study(direction="minimize",
                                         sampler=optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=10))
        self.measured = 0
        self.limit = cfg.max_trials or 40
        self._asked: dict[str, Any] = {}
        rung = search.ctx.rungs["screen"].name
        for trial in search.store.trials(rung):
            if trial.key in self.index and trial.key != baseline.key:
                self.study.add_trial(self._frozen(trial, self.index[trial.key]))
                self.measured += 1

    def _frozen(self, trial: Trial, params: dict[str, int]):
        import optuna

        if not trial.measured:
            return optuna.trial.create_trial(params=params, distributions=self.distributions,
                                             state=optuna.trial.TrialState.FAIL)
        return optuna.trial.create_trial(params=params, distributions=self.distributions,
                                         value=penalized(self.search, trial, self.baseline))

    def __iter__(self) -> Iterator[Candidate]:
        import optuna

        asked = 0
        rung = self.search.ctx.rungs["screen"].name
        while self.measured < self.limit and asked < 4 * self.limit:
            trial = self.study.ask(self.distributions)
            asked += 1
            cand = candidate_from({n: self.axes[n][trial.params[n]] for n in self.names})
            if cand is None or cand.key() not in self.keys:
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            self._asked[cand.key()] = (trial, self.search.store.trial(cand.key(), rung) is None)
            yield cand
        if self.measured < self.limit:
            self.stopped = f"optuna proposed no new candidate after {asked} tries"

    def tell(self, cand: Candidate, trial: Trial) -> None:
        import optuna

        asked, fresh = self._asked.pop(cand.key())
        self.measured += fresh
        if not trial.measured:
            self.study.tell(asked, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(asked, penalized(self.search, trial, self.baseline))

    def progress(self) -> tuple[int, int]:
        return self.measured, self.limit


STRATEGIES: dict[str, type[Strategy]] = {Enumeration.name: Enumeration, OptunaTPE.name: OptunaTPE}


def make_strategy(search: Search, space: list[Candidate], baseline: Trial) -> Strategy:
    """Enumeration for spaces up to `enumerate_limit` candidates, optuna TPE beyond."""
    name = Enumeration.name if len(space) <= search.config.enumerate_limit else OptunaTPE.name
    return STRATEGIES[name](search, space, baseline)


def screen(search: Search, strategy: Strategy) -> str:
    """Measure what the strategy proposes at the screening rung until it ends or 60% of the search time is used.
    Returns why it stopped early ('' when it finished)."""
    rung = search.ctx.rungs["screen"]
    phase_end = search.clock.phase_deadline(0.6)
    for cand in strategy:
        done, total = strategy.progress()
        if phase_end is not None and time.monotonic() >= phase_end and \
                search.store.trial(cand.key(), rung.name) is None:
            return f"time budget: screened {done} of {total} candidates" + \
                (" (optuna)" if strategy.name == OptunaTPE.name else "")
        search.emit("progress", done=done, total=total, phase="screen")
        strategy.tell(cand, search.measure(cand, rung))
    return strategy.stopped


def penalized(search: Search, trial: Trial, baseline: Trial) -> float:
    """Objective on a log scale plus a steep penalty for exceeding the accuracy budget (TPE minimizes it)."""
    value = abs(search.objective.value(trial) or 1e-9)
    score = math.log(value) if search.objective.minimize else -math.log(value)
    budget = search.config.budget
    excess = search.drop(trial, baseline) - budget.value
    return score + 10.0 * max(0.0, excess) / max(budget.value, 1e-3)


def promote(search: Search, screened: list[Trial], baseline: Trial) -> list[Trial]:
    """Successive halving: the best ~1/eta of the candidates feasible at screening (with slack for the noise
    of a small image subset), topped up with the closest-to-feasible ones."""
    cfg = search.config
    ok = [t for t in screened if t.measured and t.key != baseline.key]
    if not ok:
        return []
    slack = cfg.budget.value  # screening allows twice the budget: few images, noisy
    feasible = sorted((t for t in ok if search.feasible(t, baseline, slack=slack)), key=search.cost)
    n = min(cfg.promote_max, max(cfg.promote_min, math.ceil(len(ok) / cfg.promote_eta)))
    chosen = feasible[:n]
    if len(chosen) < cfg.promote_min:
        rest = sorted((t for t in ok if t not in chosen), key=lambda t: (search.drop(t, baseline), search.cost(t)))
        chosen += rest[:cfg.promote_min - len(chosen)]
    # The slack can fill every slot with fast candidates that are over budget on these same images; always
    # re-measure the cheapest one that is strictly within budget, so a feasible answer is never lost.
    strict = sorted((t for t in ok if search.feasible(t, baseline)), key=search.cost)
    if strict and strict[0] not in chosen:
        chosen.append(strict[0])
    return chosen


def choose(search: Search, full: list[Trial], baseline: Trial) -> tuple[Trial | None, bool]:
    """The best full-rung candidate within budget (the baseline itself when nothing beats it); if none meets
    the budget, the closest (smallest drop)."""
    candidates = [t for t in full if t.measured and t.key != baseline.key]
    feasible = sorted((t for t in candidates if search.feasible(t, baseline)), key=search.cost)
    if feasible and search.cost(baseline) < search.cost(feasible[0]):
        search.notes.append(f"no candidate beat the baseline on {search.objective.name} in the "
                            f"re-measurement; keep running the model as given")
        return baseline, True
    if feasible:
        return feasible[0], True
    if search.feasible(baseline, baseline):
        closest = sorted(candidates, key=lambda t: (search.drop(t, baseline), search.cost(t)))
        if closest:
            return closest[0], False
    return None, False
