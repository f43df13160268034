"""The results file: one JSON object per line, appended and flushed row by row, fsynced at batch ends.

Resuming reads the rows already there and skips their keys. Only the last line can be torn (the process died
mid-write); it is cut off and its input redone, so no row is lost or written twice. Rows are written in input
order whatever the number of workers (a small reorder buffer holds rows that finished early).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import UsageError

KEY_FIELDS = ("file", "frame")


def read_done(path: Path, key_field: str) -> set[Any]:
    """Keys of the rows in an existing results file (empty when there is none). A torn last line is removed
    from the file; any other unreadable line, or rows keyed for another kind of input, is a UsageError."""
    if not path.exists() or path.stat().st_size == 0:
        return set()
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
    done: set[Any] = set()
    for number, line in enumerate(data[:keep].split(b"\n"), start=1):  # not splitlines(): rows may hold U+2028
        if line.strip():
            done.add(_row_key(path, number, line.decode("utf-8", errors="replace"), key_field))
    tail = data[keep:]
    if tail:
        if not tail.lstrip().startswith(b"{"):  # not a row cut short: this is not our file, leave it alone
            _row_key(path, data[:keep].count(b"\n") + 1, tail.decode("utf-8", errors="replace"), key_field)
        with open(path, "r+b") as handle:  # only now, with every whole line valid, drop the torn one
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
    return done


def _row_key(path: Path, number: int, line: str, key_field: str) -> Any:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        raise UsageError(f"{path}:{number}: not a JSON line, so cvtune cannot resume from this file; move it "
                         f"away or pick another --out") from None
    if not isinstance(row, dict) or key_field not in row:
        other = next((k for k in KEY_FIELDS if isinstance(row, dict) and k in row), None)
        what = f"rows keyed by '{other}'" if other else "rows without a key"
        raise UsageError(f"{path}:{number}: {what}, but this input's rows are keyed by '{key_field}'; it holds "
                         f"results for other inputs: pick another --out")
    return row[key_field]


class ResultWriter:
    """Appends rows in sequence order: add(seq, row) may arrive out of order; rows are written as soon as every
    earlier sequence number has been written. flush() after each row; fsync at most every `sync_every_s`."""

    def __init__(self, path: Path, *, sync_every_s: float = 0.2) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
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
            self._handle.write(json.dumps(ready, ensure_ascii=False, separators=(",", ":")) + "\n")
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

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._last_sync = time.monotonic()

    @property
    def held_back(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        if not self._handle.closed:
            self.sync()
            self._handle.close()
