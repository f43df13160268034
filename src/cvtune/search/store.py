"""The trial store: OUT/trials.sqlite. Every finished trial is committed in its own transaction before the next
one starts, so a killed search loses at most the trial that was running, and a rerun resumes from the store.

Tables: meta (what run this folder holds), trials (one typed record per candidate per rung, UNIQUE), models
(built pass outputs), probes (which runtime loads which built model).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import CvtuneError, UsageError
from ..files import LOCK_NAME, check_output, check_unlocked, display_path, is_temporary, output_lock
from .records import BuiltModel, Trial

STORE_NAME = "trials.sqlite"
# Version 2: trials are typed records (records.Trial) and candidates carry registered passes. A store written by
# another format is refused with the reason (its candidates do not mean the same thing any more).
FORMAT = "cvtune-optimize/2"
# Files and folders a cvtune optimize run writes into OUT; anything else there means OUT is not ours.
OWN_ENTRIES = {STORE_NAME, f"{STORE_NAME}-journal", f"{STORE_NAME}-wal", f"{STORE_NAME}-shm", "models", "best",
               "report.html", "report.md", "trials.csv", "summary.json", "optimize.log"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL, rung TEXT NOT NULL, status TEXT NOT NULL, metric_key TEXT NOT NULL DEFAULT '',
    has_metric INTEGER NOT NULL DEFAULT 0, record TEXT NOT NULL,
    UNIQUE (key, rung)
);
CREATE TABLE IF NOT EXISTS models (
    model_key TEXT PRIMARY KEY, passes TEXT NOT NULL, path TEXT NOT NULL, status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '', info TEXT NOT NULL DEFAULT '{}', seconds REAL
);
CREATE TABLE IF NOT EXISTS probes (
    model_key TEXT NOT NULL, runtime TEXT NOT NULL, ok INTEGER NOT NULL, error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (model_key, runtime)
);
"""


def _own(name: str) -> bool:
    """An entry a cvtune optimize run writes into OUT (its store, models, reports, lock, atomic-write temporaries)."""
    return name in OWN_ENTRIES or name == LOCK_NAME or is_temporary(name)


def check_out_dir(out: str | Path, *, writing: bool = True) -> Path:
    """OUT must be new, empty, or a previous cvtune optimize run (then it is resumed). Anything else: refuse,
    before anything is written (a file, a folder holding other files, a place that cannot be written, a folder
    another search is writing; readers such as `cvtune report` only need the first three)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {display_path(out)} is a file; give a folder for -o")
    if out.is_dir():
        try:
            entries = {p.name for p in out.iterdir()}
        except OSError as exc:
            raise UsageError(f"cannot read output folder {display_path(out)}: {exc.strerror or exc}") from None
        foreign = sorted(e for e in entries if not _own(e))[:3]
        if foreign and STORE_NAME not in entries:
            raise UsageError(f"output folder {display_path(out)} holds other files ({', '.join(foreign)}) and no "
                             f"{STORE_NAME}: it is not a cvtune optimize run; choose a new or empty folder for -o")
        if not os.access(out, os.W_OK | os.X_OK):
            raise UsageError(f"output folder {display_path(out)} is read-only or not writable by you; choose "
                             f"another -o")
        if writing:
            check_unlocked(out, folder=True)  # a search running there: say so now, not after minutes of set-up
    else:
        check_output(out / STORE_NAME, force=True)  # its parent must be a folder we can create OUT in
    return out


def clear_out_dir(out: str | Path) -> list[str]:
    """`optimize --force`: remove what a previous run wrote into OUT (only cvtune's own entries: anything else in
    the folder is left alone) so the search starts over. Returns the names removed."""
    out = check_out_dir(out)
    removed = []
    if out.is_dir():
        for path in sorted(out.iterdir()):
            if _own(path.name) and path.name != LOCK_NAME:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                removed.append(path.name)
    return removed


class Store:
    """SQLite-backed record of a search. Open with `Store.open(out)`; close with `.close()` or a with-block."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock=None) -> None:
        self.path = path
        self.conn = conn
        self._lock = lock  # held while a search writes (open with create=True); None for readers

    # ---- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(cls, out: str | Path, *, create: bool = True) -> Store:
        out = check_out_dir(out, writing=create)
        path = out / STORE_NAME
        if not path.exists() and not create:
            raise UsageError(f"{out} holds no {STORE_NAME}: run `cvtune optimize ... -o {out}` first")
        lock = None
        if create:  # one search per folder: a second one is refused, naming the first (pid, command, since)
            lock = output_lock(out, folder=True)
            lock.__enter__()
        try:
            conn = sqlite3.connect(os.fsdecode(path), timeout=30, isolation_level=None)  # explicit transactions
        except sqlite3.Error as exc:
            if lock is not None:
                lock.__exit__(None, None, None)
            raise UsageError(f"cannot open {display_path(path)}: {exc}") from None
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA synchronous=FULL")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "meta" not in tables:
                raise UsageError(f"{path} is an SQLite file but not a cvtune trial store; choose another -o")
            conn.executescript(SCHEMA)  # idempotent (IF NOT EXISTS)
            with _transaction(conn):
                fmt = conn.execute("SELECT value FROM meta WHERE key='format'").fetchone()
                if fmt is None:
                    conn.execute("INSERT INTO meta VALUES ('format', ?)", (json.dumps(FORMAT),))
                    conn.execute("INSERT INTO meta VALUES ('created', ?)", (json.dumps(time.time()),))
                elif json.loads(fmt[0]) != FORMAT:
                    raise UsageError(f"{path} holds a search in format {json.loads(fmt[0])} (an older cvtune); "
                                     f"this cvtune writes {FORMAT} and cannot resume it: choose a new -o folder "
                                     f"(the old report.html there stays readable)")
        except sqlite3.DatabaseError as exc:
            conn.close()
            if lock is not None:
                lock.__exit__(None, None, None)
            raise UsageError(f"{display_path(path)} is not a readable trial store ({exc}); move it away or choose "
                             f"another -o") from None
        except BaseException:
            conn.close()
            if lock is not None:
                lock.__exit__(None, None, None)
            raise
        return cls(path, conn, lock)

    def close(self) -> None:
        self.conn.close()
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- meta --------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        with _transaction(self.conn):
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, default=str)))

    def check_identity(self, identity: dict[str, Any], *, record: bool = True) -> bool:
        """Record what this run measures (model, task, data, split, budget); refuse to mix runs. True when
        resuming. `record=False` only compares (a check before anything is measured)."""
        stored = self.get_meta("identity")
        if stored is None:
            if record:
                self.set_meta("identity", identity)
            return False
        differs = [k for k in sorted(set(stored) | set(identity)) if stored.get(k) != identity.get(k)]
        if differs:
            what = ", ".join(f"{k} ({stored.get(k)!r} there, {identity.get(k)!r} now)" for k in differs[:3])
            raise UsageError(f"{self.path.parent} holds a search with a different {what}; rerun with the same "
                             f"arguments to resume it, or choose a new -o folder")
        return True

    # ---- trials ------------------------------------------------------------------------------------
    def record_trial(self, trial: Trial, *, replace: bool = False) -> None:
        """Commit one trial; a (candidate, rung) pair is recorded once (UNIQUE), so a resume never doubles it.
        `replace`: for rows derived from other trials (a candidate's summary), which may be rewritten."""
        record = json.dumps(trial.to_dict(), default=str)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with _transaction(self.conn):
            self.conn.execute(f"{verb} INTO trials (key, rung, status, metric_key, has_metric, record) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              (trial.key, trial.rung, trial.status, trial.metric_key,
                               int(trial.ok and trial.metric is not None), record))

    def trial(self, key: str, rung: str) -> Trial | None:
        row = self.conn.execute("SELECT record FROM trials WHERE key=? AND rung=?", (key, rung)).fetchone()
        return Trial.from_dict(json.loads(row[0])) if row else None

    def trials(self, rung: str | None = None) -> list[Trial]:
        query = "SELECT record FROM trials" + (" WHERE rung=?" if rung else "") + " ORDER BY id"
        return [Trial.from_dict(json.loads(r[0])) for r in self.conn.execute(query, (rung,) if rung else ())]

    def metric_for(self, metric_key: str, rung: str) -> Trial | None:
        """A finished trial at `rung` that measured the metric for this metric_key (its outputs are the same)."""
        row = self.conn.execute("SELECT record FROM trials WHERE metric_key=? AND rung=? AND has_metric=1 "
                                "ORDER BY id LIMIT 1", (metric_key, rung)).fetchone()
        return Trial.from_dict(json.loads(row[0])) if row else None

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    # ---- built models and probes ----------------------------------------------------------------------
    def record_model(self, model: BuiltModel) -> None:
        with _transaction(self.conn):
            self.conn.execute("INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
                              (model.model_key, json.dumps(list(model.passes), sort_keys=True), model.path,
                               model.status, model.error, json.dumps(model.info, default=str), model.seconds))

    def model(self, model_key: str) -> BuiltModel | None:
        row = self.conn.execute("SELECT * FROM models WHERE model_key=?", (model_key,)).fetchone()
        return _built(row) if row else None

    def models(self) -> list[BuiltModel]:
        return [_built(r) for r in self.conn.execute("SELECT * FROM models ORDER BY rowid")]

    def record_probe(self, model_key: str, runtime: str, ok: bool, error: str = "") -> None:
        with _transaction(self.conn):
            self.conn.execute("INSERT OR REPLACE INTO probes VALUES (?, ?, ?, ?)", (model_key, runtime, int(ok), error))

    def probe(self, model_key: str, runtime: str) -> tuple[bool, str] | None:
        row = self.conn.execute("SELECT ok, error FROM probes WHERE model_key=? AND runtime=?",
                                (model_key, runtime)).fetchone()
        return None if row is None else (bool(row[0]), row[1])


def _built(row: sqlite3.Row) -> BuiltModel:
    return BuiltModel(row["model_key"], tuple(json.loads(row["passes"])), row["path"], row["status"], row["error"],
                      json.loads(row["info"]), row["seconds"] or 0.0)


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One transaction: all of it is committed or none of it (a full disk or a kill leaves the store as it was)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise CvtuneError(f"cannot write the trial store ({exc}); free disk space or fix permissions, then rerun the "
                          f"same command to resume") from None
