"""The run store: an embedded SQLite database recording every run.

Default location ``./runs/ctfrpu.db`` (relative to the working directory), overridable by the
environment variable ``CTFRPU_STORE`` or the ``--store`` flag. Every write is one transaction, the
database runs in WAL mode, so a killed process leaves it consistent: a run whose process died is
left ``running`` (shown as such, and a sweep rerun treats it as not finished); a Ctrl-C marks it
``interrupted``. ``ctfrpu train`` runs checkpoint after every epoch into ``checkpoints/`` beside
the database (removed when the run ends), so ``ctfrpu train --resume ID`` continues them.

Tables
    runs(id, config_hash, config_json, name, sweep, status, started, ended, version, error,
         final_json)
    epochs(run_id, epoch, metrics_json)  -- one row per finished epoch (train_loss, test_accuracy, ...)
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .errors import CtfrpuError

STATUSES = ("running", "finished", "failed", "interrupted")
_DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM for the duration of the block, then re-deliver them.

    Blocks nest (an inner block hands its signals to the outer one). Only the main thread can
    install handlers; elsewhere the block runs unprotected (the rollback in ``Store._tx`` still
    keeps the database consistent). A signal whose handler was installed outside Python is left
    alone (it could not be restored).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {}
    for sig in _DEFERRED_SIGNALS:
        if signal.getsignal(sig) is not None:
            previous[sig] = signal.signal(sig, lambda num, _frame: pending.append(num))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    config_hash TEXT NOT NULL,
    config_json TEXT NOT NULL,
    name TEXT,
    sweep TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
    started REAL NOT NULL,
    ended REAL,
    version TEXT NOT NULL,
    error TEXT,
    final_json TEXT
);
CREATE INDEX IF NOT EXISTS runs_hash ON runs(config_hash);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs(sweep);
CREATE TABLE IF NOT EXISTS epochs (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    metrics_json TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
"""


def default_store_path() -> Path:
    return Path(os.environ.get("CTFRPU_STORE", "runs/ctfrpu.db"))


@dataclass
class RunRecord:
    id: int
    config_hash: str
    config: dict[str, Any]
    name: str | None
    sweep: str | None
    status: str
    started: float
    ended: float | None
    version: str
    error: str | None
    final: dict[str, Any] | None
    epochs: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.id, "config_hash": self.config_hash, "name": self.name, "sweep": self.sweep,
            "status": self.status, "started": self.started, "ended": self.ended,
            "version": self.version, "error": self.error, "config": self.config,
            "final": self.final, "epochs": self.epochs,
        }


class Store:
    """A handle on the run database. Cheap to open; each method is one transaction."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_store_path()
        self._tx_open = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
            raise CtfrpuError(f"cannot open run store {self.path}: {err}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # A Ctrl-C that lands between BEGIN and COMMIT must neither lose the write nor leave the
        # connection inside a transaction (the "interrupted" status write would then fail), so
        # the signals are held until the transaction is over and then delivered as usual.
        if self._tx_open:
            raise RuntimeError("Store writes do not nest")
        with signals_deferred():
            if self._db.in_transaction:  # left open by a write interrupted before our try below
                self._db.execute("ROLLBACK")
            self._tx_open = True
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._tx_open = False

    # -- writes -----------------------------------------------------------------------------

    def start_run(self, config: dict[str, Any], config_hash: str, name: str | None = None,
                  sweep: str | None = None) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO runs (config_hash, config_json, name, sweep, status, started, version)"
                " VALUES (?, ?, ?, ?, 'running', ?, ?)",
                (config_hash, json.dumps(config, sort_keys=True), name, sweep, time.time(), __version__),
            )
            return int(cur.lastrowid)

    def log_epoch(self, run_id: int, epoch: int, metrics: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO epochs (run_id, epoch, metrics_json) VALUES (?, ?, ?)",
                       (run_id, epoch, json.dumps(metrics)))

    def finish_run(self, run_id: int, status: str, final: dict[str, Any] | None = None,
                   error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(status)
        with self._tx() as db:
            db.execute("UPDATE runs SET status=?, ended=?, final_json=?, error=? WHERE id=?",
                       (status, time.time(), json.dumps(final) if final is not None else None, error,
                        run_id))

    def reopen_run(self, run_id: int) -> None:
        """Mark a run running again (resuming it): end time and error cleared."""
        with self._tx() as db:
            db.execute("UPDATE runs SET status='running', ended=NULL, error=NULL WHERE id=?", (run_id,))

    def checkpoint_path(self, run_id: int) -> Path:
        """Where run ``run_id`` keeps its end-of-epoch checkpoint: ``checkpoints/`` beside the store."""
        return self.path.parent / "checkpoints" / f"{self.path.stem}-run{run_id}.ckpt"

    def record_run(self, config: dict[str, Any], config_hash: str, status: str,
                   epochs: list[dict[str, Any]], final: dict[str, Any] | None, error: str | None,
                   started: float, ended: float, name: str | None = None,
                   sweep: str | None = None, once: bool = False) -> int:
        """Insert a whole run (with its epochs) in ONE transaction: used by the sweep client.

        With ``once``, a finished run is not inserted when the store already holds a finished run
        of the same config hash (checked inside the same write transaction, so two clients on one
        store cannot both insert it); the existing run's id is returned instead.
        """
        with self._tx() as db:
            if once and status == "finished":
                row = db.execute("SELECT id FROM runs WHERE config_hash=? AND status='finished' LIMIT 1",
                                 (config_hash,)).fetchone()
                if row:
                    return int(row[0])
            cur = db.execute(
                "INSERT INTO runs (config_hash, config_json, name, sweep, status, started, ended,"
                " version, error, final_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (config_hash, json.dumps(config, sort_keys=True), name, sweep, status, started, ended,
                 __version__, error, json.dumps(final) if final is not None else None),
            )
            run_id = int(cur.lastrowid)
            db.executemany("INSERT INTO epochs (run_id, epoch, metrics_json) VALUES (?, ?, ?)",
                           [(run_id, int(m["epoch"]), json.dumps(m)) for m in epochs])
            return run_id

    def delete_runs(self, run_ids: list[int]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM runs WHERE id=?", [(i,) for i in run_ids])

    # -- reads ------------------------------------------------------------------------------

    def _record(self, row: tuple) -> RunRecord:
        (rid, chash, cjson, name, sweep, status, started, ended, version, error, fjson) = row
        epochs = [json.loads(m) for (m,) in self._db.execute(
            "SELECT metrics_json FROM epochs WHERE run_id=? ORDER BY epoch", (rid,))]
        return RunRecord(rid, chash, json.loads(cjson), name, sweep, status, started, ended, version,
                         error, json.loads(fjson) if fjson else None, epochs)

    _COLS = "id, config_hash, config_json, name, sweep, status, started, ended, version, error, final_json"

    def get(self, run_id: int) -> RunRecord:
        row = self._db.execute(f"SELECT {self._COLS} FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise CtfrpuError(f"no run with id {run_id} in {self.path} (see `ctfrpu runs list`)")
        return self._record(row)

    def list(self, sweep: str | None = None, status: str | None = None) -> list[RunRecord]:
        sql, args = f"SELECT {self._COLS} FROM runs WHERE 1=1", []
        if sweep is not None:
            sql += " AND sweep=?"
            args.append(sweep)
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        return [self._record(r) for r in self._db.execute(sql + " ORDER BY id", args).fetchall()]

    def resumable_by_hash(self, config_hash: str) -> int | None:
        """The newest interrupted run of this config (or one left 'running' by a killed process)
        that left a checkpoint, if any."""
        for (rid,) in self._db.execute("SELECT id FROM runs WHERE config_hash=? AND status IN "
                                       "('interrupted', 'running') ORDER BY id DESC", (config_hash,)).fetchall():
            if self.checkpoint_path(rid).exists():
                return int(rid)
        return None

    def finished_by_hash(self, config_hash: str) -> RunRecord | None:
        row = self._db.execute(
            f"SELECT {self._COLS} FROM runs WHERE config_hash=? AND status='finished' ORDER BY id LIMIT 1",
            (config_hash,)).fetchone()
        return self._record(row) if row else None
