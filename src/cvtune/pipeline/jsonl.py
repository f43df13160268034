"""The results file: one JSON object per line, appended and flushed row by row, fsynced at batch ends.

Resuming reads the rows already there and skips their keys. Only the last line can be torn (the process died
mid-write); it is cut off when the first new row is written and its input redone, so no row is lost or written
twice. A file that is not cvtune's (any line that is not a row, a last line that is a complete JSON value of
another shape, such as a one-line COCO file) is refused and never changed. Rows are written in input
order whatever the number of workers (a small reorder buffer holds rows that finished early).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..files import atomic_path, display_path

KEY_FIELDS = ("file", "frame")
ROW_FIELDS = ("prediction", "error")  # what a row holds besides its key


@dataclass(frozen=True)
class Resume:
    """What an existing results file holds: the keys done, and how many leading bytes are whole rows (a torn
    last row after them is cut off when the writer first writes, never before)."""

    done: frozenset[Any]
    valid_bytes: int
    exists: bool


def scan_results(path: Path, key_field: str) -> Resume:
    """Read an existing results file without changing it. Any line that is not one of cvtune's rows keyed by
    `key_field` is a UsageError (the file is not ours, or holds results for another kind of input): such a file is
    never truncated or appended to."""
    if not path.exists():
        return Resume(frozenset(), 0, False)
    if not path.is_file():
        raise UsageError(f"{display_path(path)} is not a file; give a results file such as results.jsonl")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {display_path(path)}: {exc.strerror or exc}") from None
    keep = data.rfind(b"\n") + 1  # everything after the last newline may be a torn write
    done: set[Any] = set()
    for number, line in enumerate(data[:keep].split(b"\n"), start=1):  # not splitlines(): rows may hold U+2028
        if line.strip():
            done.add(_row_key(path, number, line.decode("utf-8", errors="replace"), key_field))
    tail = data[keep:]
    if tail.strip() and not _torn_row(tail, key_field):  # e.g. a one-line COCO file without a final newline
        _row_key(path, data[:keep].count(b"\n") + 1, tail.decode("utf-8", errors="replace"), key_field)
        raise UsageError(f"{display_path(path)}: its last line does not end with a newline, so it is not a results "
                         f"file cvtune is writing; choose another -o (or --force to replace it)")
    return Resume(frozenset(done), keep, True)


def _torn_row(tail: bytes, key_field: str) -> bool:
    """True when `tail` is the start of a row this writer writes ({"file":... first, compact) cut short: a row
    the process did not finish. A complete JSON value that is not such a row is somebody else's data."""
    if not tail.startswith(b'{"' + key_field.encode() + b'":'):
        return False
    try:
        row = json.loads(tail)
    except ValueError:
        return True  # cut short
    return isinstance(row, dict) and set(row) <= {key_field, *ROW_FIELDS}


def read_done(path: Path, key_field: str) -> set[Any]:
    """Keys of the rows in an existing results file (empty when there is none); the file is not changed."""
    return set(scan_results(path, key_field).done)


def _row_key(path: Path, number: int, line: str, key_field: str) -> Any:
    where = f"{display_path(path)}:{number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        raise UsageError(f"{where}: not a JSON line, so cvtune cannot resume from this file; move it away, pick "
                         f"another --out, or pass --force to replace it") from None
    if not isinstance(row, dict) or key_field not in row:
        other = next((k for k in KEY_FIELDS if isinstance(row, dict) and k in row), None)
        what = f"rows keyed by '{other}'" if other else "rows without a key"
        raise UsageError(f"{where}: {what}, but this input's rows are keyed by '{key_field}'; it holds results "
                         f"for other inputs: pick another --out (or --force to replace it)")
    key = row[key_field]
    if not isinstance(key, str | int) or isinstance(key, bool):
        raise UsageError(f"{where}: '{key_field}' is {type(key).__name__}, not a file name or frame number; this "
                         f"is not a cvtune results file: pick another --out (or --force to replace it)")
    return key


class ResultWriter:
    """Appends rows in sequence order: add(seq, row) may arrive out of order; rows are written as soon as every
    earlier sequence number has been written. flush() after each row; fsync at most every `sync_every_s`."""

    def __init__(self, path: Path, *, sync_every_s: float = 0.2, keep_bytes: int | None = None,
                 fresh: bool = False) -> None:
        self.path = path
        self._keep = keep_bytes  # cut a torn last row off at this length when the first row is written
        self._fresh = fresh  # replace the file (--force) when the first row is written
        self._handle = None  # opened on the first row: a run that never gets there leaves no file behind
        self._next = 0
        self._waiting: dict[int, dict[str, Any]] = {}
        self._sync_every = sync_every_s
        self._last_sync = time.monotonic()
        self.written = 0
        self.errors = 0

    def add(self, seq: int, row: dict[str, Any]) -> int:
        """Queue a row; returns how many rows were written by this call."""
        self._waiting[seq] = row
        written = 0
        while self._next in self._waiting:
            ready = self._waiting.pop(self._next)
            handle = self._handle or self._open()
            handle.write(json.dumps(ready, ensure_ascii=False, separators=(",", ":")) + "\n")
            self._handle.flush()
            self.errors += "error" in ready
            self._next += 1
            written += 1
        self.written += written
        return written

    def batch_end(self) -> None:
        """A batch of rows is in: make it durable (rate-limited fsync)."""
        if time.monotonic() - self._last_sync >= self._sync_every:
            self.sync()

    def _open(self):
        if self._fresh:  # an empty file takes the old one's place in one rename
            with atomic_path(self.path) as tmp:
                tmp.write_bytes(b"")
        elif self._keep is not None and self.path.exists() and self.path.stat().st_size > self._keep:
            with open(self.path, "r+b") as handle:  # the torn last row of a killed run: redone now
                handle.truncate(self._keep)
        elif not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        return self._handle

    def sync(self) -> None:
        if self._handle is None or self._handle.closed:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._last_sync = time.monotonic()

    @property
    def held_back(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        if self._handle is not None and not self._handle.closed:
            self.sync()
            self._handle.close()
