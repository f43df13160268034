"""Shared rich consoles and a progress factory, so every command prints the same way: a live bar on a terminal,
plain progress lines in pipes and CI logs (where a bar would print nothing until the end)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console()
err_console = Console(stderr=True)
for _c in (console, err_console):
    if not _c.is_terminal:  # pipes and CI logs: rich would wrap tables at 80 columns
        _c.width = 160

PLAIN_EVERY_S = 10.0  # a plain progress line at least this often while work goes on


@dataclass
class _Task:
    description: str
    total: float | None
    fields: dict[str, Any]
    completed: float = 0.0
    started: float = field(default_factory=time.monotonic)
    last_line: float = 0.0
    last_quarter: int = 0
    done: bool = False


class PlainProgress:
    """rich.progress.Progress's calls (add_task, update, advance, start, stop, with-block) as plain lines on stderr:
    one when a task starts, then at each quarter of its total and at least every `every_s` seconds, and one when
    it ends, e.g. `eval textdet: 20/40 (50%), 12 s, 1.7 img/s`."""

    def __init__(self, out: Console | None = None, *, every_s: float = PLAIN_EVERY_S) -> None:
        self.out = out or err_console
        self.every_s = every_s
        self.tasks: dict[int, _Task] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Nothing to start: lines are printed as the work advances."""

    def stop(self) -> None:
        for task in self.tasks.values():
            if not task.done and task.completed:
                self._line(task, final=True)
            task.done = True

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        task_id = len(self.tasks)
        self.tasks[task_id] = task = _Task(description, total, dict(fields))
        self.out.print(f"{description}: started" + (f" ({total:g} to do)" if total else ""), highlight=False,
                       markup=False, soft_wrap=True)
        task.last_line = time.monotonic()
        return task_id

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, completed: float | None = None, advance: float | None = None,
               total: float | None = None, description: str | None = None, **fields: Any) -> None:
        task = self.tasks[task_id]
        if total is not None:
            task.total = total
        if description is not None:
            task.description = description
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        task.fields.update(fields)
        now = time.monotonic()
        quarter = int(4 * task.completed / task.total) if task.total else 0
        finished = bool(task.total) and task.completed >= task.total
        if finished or quarter > task.last_quarter or now - task.last_line >= self.every_s:
            self._line(task, final=finished)
            task.last_quarter, task.last_line, task.done = quarter, now, finished

    def _line(self, task: _Task, *, final: bool) -> None:
        if task.total:
            where = f"{task.completed:g}/{task.total:g} ({100 * task.completed / task.total:.0f}%)"
        else:
            where = f"{task.completed:g} done"
        rate = str(task.fields.get("rate") or "")
        text = f"{task.description}: {where}, {time.monotonic() - task.started:.0f} s" + (f", {rate}" if rate else "")
        self.out.print(text + (" - done" if final else ""), highlight=False, markup=False, soft_wrap=True)


def progress(*, transient: bool = True) -> Progress | PlainProgress:
    """Progress on stderr (stdout stays clean for --json): a live bar on a terminal, plain lines otherwise."""
    if not err_console.is_terminal:
        return PlainProgress(err_console)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )
