"""The trial store: OUT/trials.sqlite. Every finished trial is committed in its own transaction before the next
one starts, so a killed search loses at most the trial that was running, and a rerun resumes from the store.

Tables: meta (what run this folder holds), trials (one row per candidate per rung, UNIQUE), models (built
transform outputs), probes (which runtime loads which built model).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import CvtuneError, UsageError

STORE_NAME = "trials.sqlite"
FORMAT = "cvtune-optimize/1"
# Files and folders a cvtune optimize run writes into OUT; anything else there means OUT is not ours.
OWN_ENTRIES = {STORE_NAME, f"{STORE_NAME}-journal", f"{STORE_NAME}-wal", f"{STORE_NAME}-shm", "models", "best",
               "report.html", "report.md", "trials.csv", "summary.json", "optimize.log"}

TRIAL_COLUMNS = ("key", "rung", "candidate", "label", "status", "error", "p50_ms", "p90_ms", "mean_ms",
                 "throughput_ips", "size_bytes", "metric", "metric_ci_low", "metric_ci_high", "metric_name",
                 "n_images", "metric_from", "details", "started", "finished", "seconds")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL, rung TEXT NOT NULL, candidate TEXT NOT NULL, label TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
    p50_ms REAL, p90_ms REAL, mean_ms REAL, throughput_ips REAL, size_bytes INTEGER,
    metric REAL, metric_ci_low REAL, metric_ci_high REAL, metric_name TEXT, n_images INTEGER,
    metric_from TEXT NOT NULL DEFAULT '', details TEXT NOT NULL DEFAULT '{}',
    started REAL, finished REAL, seconds REAL,
    UNIQUE (key, rung)
);
CREATE TABLE IF NOT EXISTS models (
    model_key TEXT PRIMARY KEY, transforms TEXT NOT NULL, path TEXT NOT NULL, status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '', info TEXT NOT NULL DEFAULT '{}', seconds REAL
);
CREATE TABLE IF NOT EXISTS probes (
    model_key TEXT NOT NULL, runtime TEXT NOT NULL, ok INTEGER NOT NULL, error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (model_key, runtime)
);
"""


def check_out_dir(out: str | Path) -> Path:
    """OUT must be new, empty, or a previous cvtune optimize run (then it is resumed). Anything else: refuse."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} is a file; give a folder for -o")
    if out.is_dir():
        entries = {p.name for p in out.iterdir()}
        if entries and STORE_NAME not in entries:
            foreign = sorted(entries - OWN_ENTRIES)[:3] or sorted(entries)[:3]
            raise UsageError(f"output folder {out} holds other files ({', '.join(foreign)}) and no {STORE_NAME}: "
                             f"it is not a cvtune optimize run; choose a new or empty folder for -o")
    return out


class Store:
    """SQLite-backed record of a search. Open with `Store.open(out)`; close with `.close()` or a with-block."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn

    # ---- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(cls, out: str | Path, *, create: bool = True) -> Store:
        out = check_out_dir(out)
        path = out / STORE_NAME
        if not path.exists() and not create:
            raise UsageError(f"{out} holds no {STORE_NAME}: run `cvtune optimize ... -o {out}` first")
        out.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)  # explicit transactions below
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
                    raise UsageError(f"{path} was written by another cvtune version ({json.loads(fmt[0])}); "
                                     f"use a new -o folder")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise UsageError(f"{path} is not a readable trial store ({exc}); move it away or choose another -o") \
                from None
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    def close(self) -> None:
        self.conn.close()

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

    def check_identity(self, identity: dict[str, Any]) -> bool:
        """Record what this run measures (model, task, data, split); refuse to mix runs. True when resuming."""
        stored = self.get_meta("identity")
        if stored is None:
            self.set_meta("identity", identity)
            return False
        differs = [k for k in sorted(set(stored) | set(identity)) if stored.get(k) != identity.get(k)]
        if differs:
            what = ", ".join(f"{k} ({stored.get(k)!r} there, {identity.get(k)!r} now)" for k in differs[:3])
            raise UsageError(f"{self.path.parent} holds a search with a different {what}; rerun with the same "
                             f"arguments to resume it, or choose a new -o folder")
        return True

    # ---- trials ------------------------------------------------------------------------------------
    def record_trial(self, row: dict[str, Any]) -> None:
        """Commit one finished trial (INSERT; a (key, rung) already present is an error: never measure twice)."""
        values = {c: row.get(c) for c in TRIAL_COLUMNS}
        values["candidate"] = json.dumps(row["candidate"], sort_keys=True) if isinstance(row["candidate"], dict) \
            else row["candidate"]
        values["details"] = json.dumps(row.get("details") or {}, default=str)
        values["error"] = row.get("error") or ""
        values["metric_from"] = row.get("metric_from") or ""
        values["finished"] = row.get("finished") or time.time()
        with _transaction(self.conn):
            self.conn.execute(f"INSERT INTO trials ({', '.join(TRIAL_COLUMNS)}) VALUES "
                              f"({', '.join('?' * len(TRIAL_COLUMNS))})", [values[c] for c in TRIAL_COLUMNS])

    def trial(self, key: str, rung: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM trials WHERE key=? AND rung=?", (key, rung)).fetchone()
        return _row(row) if row else None

    def trials(self, rung: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM trials" + (" WHERE rung=?" if rung else "") + " ORDER BY id"
        return [_row(r) for r in self.conn.execute(query, (rung,) if rung else ())]

    def metric_for(self, metric_key: str, rung: str) -> dict[str, Any] | None:
        """A finished trial at `rung` that measured the metric for this metric_key (its outputs are the same)."""
        for row in self.trials(rung):
            if row["status"] == "ok" and row["details"].get("metric_key") == metric_key and \
                    row["metric"] is not None:
                return row
        return None

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    # ---- built models and probes ----------------------------------------------------------------------
    def record_model(self, model_key: str, transforms: dict, path: str, status: str, error: str = "",
                     info: dict | None = None, seconds: float = 0.0) -> None:
        with _transaction(self.conn):
            self.conn.execute("INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
                              (model_key, json.dumps(transforms, sort_keys=True), path, status, error,
                               json.dumps(info or {}, default=str), seconds))

    def model(self, model_key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM models WHERE model_key=?", (model_key,)).fetchone()
        if row is None:
            return None
        data = dict(row)
        data["transforms"] = json.loads(data["transforms"])
        data["info"] = json.loads(data["info"])
        return data

    def models(self) -> list[dict[str, Any]]:
        keys = [r[0] for r in self.conn.execute("SELECT model_key FROM models ORDER BY rowid")]
        return [m for m in (self.model(k) for k in keys) if m]

    def record_probe(self, model_key: str, runtime: str, ok: bool, error: str = "") -> None:
        with _transaction(self.conn):
            self.conn.execute("INSERT OR REPLACE INTO probes VALUES (?, ?, ?, ?)", (model_key, runtime, int(ok), error))

    def probe(self, model_key: str, runtime: str) -> tuple[bool, str] | None:
        row = self.conn.execute("SELECT ok, error FROM probes WHERE model_key=? AND runtime=?",
                                (model_key, runtime)).fetchone()
        return None if row is None else (bool(row[0]), row[1])


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


def _row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["candidate"] = json.loads(data["candidate"])
    data["details"] = json.loads(data["details"] or "{}")
    return data
