"""The search's wall clock: the time budget, the share kept for the final back-to-back timing, phase deadlines
and trial timeouts. One object, so every phase agrees on how much time is left."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class OutOfTime(Exception):
    """The wall-clock budget ran out (the interrupted trial is not recorded: a resume measures it)."""


class Clock:
    """`deadline` is where the search phases stop; `end` is where the whole run must be done (the final timing
    runs between them)."""

    def __init__(self, time_budget_s: float | None, trial_timeout_s: float) -> None:
        self.budget_s = time_budget_s
        self.trial_timeout_s = trial_timeout_s
        self.started = time.monotonic()
        self.end = self.started + time_budget_s if time_budget_s else None
        self.final_reserve_s = min(15.0, 0.1 * time_budget_s) if time_budget_s else 0.0
        self.deadline = self.end - self.final_reserve_s if self.end is not None else None
        self.bounded = True  # False while measuring what every answer needs (the baseline): never cut short

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def time_left(self) -> float | None:
        """Seconds until the search phases must stop (None: no budget)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def until_end(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()

    def expired(self) -> bool:
        left = self.time_left()
        return self.bounded and left is not None and left <= 0

    @contextmanager
    def unbounded(self) -> Iterator[None]:
        """Measure something every answer needs (the baseline) whatever the budget says."""
        self.bounded = False
        try:
            yield
        finally:
            self.bounded = True

    def phase_deadline(self, share: float) -> float | None:
        """The monotonic time at which `share` of the search phases' time is used."""
        return None if self.deadline is None else self.started + share * (self.deadline - self.started)

    def reserve(self, seconds: float) -> None:
        """Keep `seconds` after the search phases (final timing, claim check, report): at most 40% of the budget,
        so a long evaluation never leaves the search no time at all."""
        if self.end is None or self.budget_s is None:
            return
        self.final_reserve_s = min(0.4 * self.budget_s, max(0.1 * self.budget_s, seconds))
        self.deadline = self.end - self.final_reserve_s

    def timeout(self, cap: float | None = None) -> float:
        """A child's timeout: the trial timeout, shortened to the time left (never below 5 s)."""
        limit = self.trial_timeout_s if cap is None else min(cap, self.trial_timeout_s)
        left = self.time_left()
        return limit if left is None or not self.bounded else max(5.0, min(limit, left))

    def check(self, exc: Exception) -> None:
        """A child killed because the whole search ran out of time is not the candidate's failure."""
        left = self.time_left()
        if self.bounded and left is not None and left <= 1.0 and "timed out" in str(exc):
            raise OutOfTime() from None
