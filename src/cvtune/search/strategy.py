"""Which candidates get measured, and which one wins: screening (enumeration in boldness order for small
spaces, seeded optuna TPE for large ones), successive-halving promotion to the full split, and the choice within
the accuracy budget."""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

from .runner import Rung
from .space import Candidate, baseline_candidate, candidate_from, space_axes
from .trials import Search


def screen(search: Search, space: list[Candidate], baseline: dict[str, Any]) -> tuple[str, str]:
    """Screen the space: enumeration for small spaces, optuna TPE for large ones. Returns (strategy, why it
    stopped early or '')."""
    cfg = search.config
    rung = search.rungs["screen"]
    phase_end = search.phase_deadline(0.6)
    if len(space) <= cfg.enumerate_limit:
        order = enumeration_order(search, space)
        limit = cfg.max_trials or len(order)
        for i, cand in enumerate(order[:limit]):
            if phase_end is not None and time.monotonic() >= phase_end and \
                    search.store.trial(cand.key(), rung.name) is None:
                return "enumerate", f"time budget: screened {i} of {len(order)} candidates"
            search.emit("progress", done=i, total=len(order), phase="screen")
            search.measure(cand, rung)
        return "enumerate", "" if limit >= len(order) else f"max trials: screened {limit} of {len(order)}"
    return "optuna-tpe", _screen_optuna(search, space, baseline, rung, phase_end)


def enumeration_order(search: Search, space: list[Candidate]) -> list[Candidate]:
    """Boldness order: candidates that compute exactly what the baseline computes (runtime, threads, batch
    only: cheap, never over budget) first, then one change to the model or its input size, then
    combinations; a seeded shuffle within each group, so a search cut short by time still sees every axis.
    The baseline's own configuration is skipped (it is measured separately)."""
    import random

    def changes(c: Candidate) -> int:
        t = c.transforms
        resized = t.input_size is not None or t.input_scale != 1.0
        return sum((resized, t.simplify, t.prune_ratio > 0, t.sparsity > 0, t.quant != "none"))

    base = baseline_candidate().key()
    order = [c for c in space if c.key() != base]
    random.Random(search.config.seed).shuffle(order)
    order.sort(key=changes)  # stable: the shuffle decides within a group
    hooks = [c for c in order if c.transforms.debug]  # test hooks early, so short test searches reach them
    return hooks + [c for c in order if not c.transforms.debug]


def _screen_optuna(search: Search, space: list[Candidate], baseline: dict[str, Any], rung: Rung,
                   phase_end: float | None) -> str:
    """Seeded TPE over the space's axes (categorical indices). Trials already in the store are replayed into
    the study first, so a resumed search continues where it stopped instead of starting over."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = search.config
    axes = space_axes(cfg.space, search.facts, objective=cfg.objective)
    names = list(axes)
    distributions = {n: optuna.distributions.CategoricalDistribution(list(range(len(axes[n])))) for n in names}
    by_key = {c.key(): c for c in space}
    index = {}
    for combo in itertools.product(*(range(len(axes[n])) for n in names)):
        cand = candidate_from({n: axes[n][i] for n, i in zip(names, combo, strict=True)},
                              prune_importance=cfg.space.prune_importance)
        if cand is not None:
            index[cand.key()] = dict(zip(names, combo, strict=True))
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=10))
    measured = 0
    for row in search.store.trials(rung.name):
        if row["key"] in index and row["key"] != baseline["key"]:
            study.add_trial(_frozen_trial(search, row, baseline, index[row["key"]], distributions))
            measured += 1
    limit = cfg.max_trials or 40
    asked = 0
    while measured < limit and asked < 4 * limit:
        if phase_end is not None and time.monotonic() >= phase_end:
            return f"time budget: screened {measured} of {len(space)} candidates (optuna)"
        trial = study.ask(distributions)
        asked += 1
        cand = candidate_from({n: axes[n][trial.params[n]] for n in names},
                              prune_importance=cfg.space.prune_importance)
        if cand is None or cand.key() not in by_key:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        fresh = search.store.trial(cand.key(), rung.name) is None
        search.emit("progress", done=measured, total=limit, phase="screen (optuna)")
        row = search.measure(cand, rung)
        measured += fresh
        if row["status"] != "ok":
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, penalized(search, row, baseline))
    return "" if measured >= limit else f"optuna proposed no new candidate after {asked} tries"


def _frozen_trial(search: Search, row: dict[str, Any], baseline: dict[str, Any], params: dict[str, int],
                  distributions: dict[str, Any]):
    import optuna

    if row["status"] != "ok":
        return optuna.trial.create_trial(params=params, distributions=distributions,
                                         state=optuna.trial.TrialState.FAIL)
    return optuna.trial.create_trial(params=params, distributions=distributions,
                                     value=penalized(search, row, baseline))


def penalized(search: Search, row: dict[str, Any], baseline: dict[str, Any]) -> float:
    """Objective on a log scale plus a steep penalty for exceeding the accuracy budget (TPE minimizes it)."""
    value = abs(search.objective.value(row) or 1e-9)
    score = math.log(value) if search.objective.minimize else -math.log(value)
    budget = search.config.budget
    excess = budget.drop(baseline["metric"], row["metric"]) - budget.value
    return score + 10.0 * max(0.0, excess) / max(budget.value, 1e-3)


def promote(search: Search, screened: list[dict[str, Any]], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Successive halving: the best ~1/eta of the candidates feasible at screening (with slack for the noise
    of a small image subset), topped up with the closest-to-feasible ones."""
    cfg = search.config
    ok = [r for r in screened if r["status"] == "ok" and r["key"] != baseline["key"]]
    if not ok:
        return []
    slack = cfg.budget.value  # screening allows twice the budget: few images, noisy
    feasible = sorted((r for r in ok if search.feasible(r, baseline, slack=slack)), key=search.cost)
    n = min(cfg.promote_max, max(cfg.promote_min, math.ceil(len(ok) / cfg.promote_eta)))
    chosen = feasible[:n]
    if len(chosen) < cfg.promote_min:
        rest = sorted((r for r in ok if r not in chosen),
                      key=lambda r: (cfg.budget.drop(baseline["metric"], r["metric"]), search.cost(r)))
        chosen += rest[:cfg.promote_min - len(chosen)]
    # The slack can fill every slot with fast candidates that are over budget on these same images; always
    # re-measure the cheapest one that is strictly within budget, so a feasible answer is never lost.
    strict = sorted((r for r in ok if search.feasible(r, baseline)), key=search.cost)
    if strict and strict[0] not in chosen:
        chosen.append(strict[0])
    return chosen


def choose(search: Search, full: list[dict[str, Any]], baseline: dict[str, Any]
           ) -> tuple[dict[str, Any] | None, bool]:
    """The best full-rung candidate within budget (the baseline itself when nothing beats it); if none meets
    the budget, the closest (smallest drop)."""
    candidates = [r for r in full if r["status"] == "ok" and r["key"] != baseline["key"]]
    feasible = sorted((r for r in candidates if search.feasible(r, baseline)), key=search.cost)
    if feasible and search.cost(baseline) < search.cost(feasible[0]):
        search.notes.append(f"no candidate beat the baseline on {search.objective.name} in the "
                            f"re-measurement; keep running the model as given")
        return baseline, True
    if feasible:
        return feasible[0], True
    if search.feasible(baseline, baseline):
        closest = sorted(candidates, key=lambda r: (search.config.budget.drop(baseline["metric"], r["metric"]),
                                                    search.cost(r)))
        if closest:
            return closest[0], False
    return None, False
