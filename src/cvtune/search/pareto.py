"""The Pareto front of speed against accuracy: a point is on the front when no other point is at least as good on
both axes and strictly better on one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def pareto_front(items: Sequence[T], *, cost: Callable[[T], float], score: Callable[[T], float]) -> list[T]:
    """Items not dominated by any other (lower `cost` and higher `score` are better), sorted by cost.
    Items with equal cost and score are kept once (the first)."""
    ranked = sorted(range(len(items)), key=lambda i: (cost(items[i]), -score(items[i]), i))
    front: list[T] = []
    best_score = float("-inf")
    for i in ranked:
        s = score(items[i])
        if s > best_score:
            front.append(items[i])
            best_score = s
    return front


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """(cost, score) a dominates b: no worse on both, strictly better on one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])
