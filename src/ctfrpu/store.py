"""The run store: an embedded SQLite database recording every run.

Default location ``./runs/ctfrpu.db`` (relative to the working directory), overridable by the
environment variable ``CTFRPU_STORE`` or the ``--store`` flag. Every write is one transaction, the
database runs in WAL mode, so a killed process leaves it consistent. ``ctfrpu train`` runs
checkpoint after every epoch into ``checkpoints/`` beside the database (removed when the run
ends), so ``ctfrpu train --resume ID`` continues them.

Statuses (stored): ``running``, ``finished``, ``failed``, ``interrupted`` (Ctrl-C, SIGTERM, or a
checkpoint that could not be written -- resumable), ``diverged`` (the run stopped because its
loss exceeded :data:`ctfrpu.training.runner.DIVERGE_FACTOR` times the chance loss, or a weight
became non-finite; its epochs and final metrics are kept). Shown, not stored: ``dead`` -- a run
recorded ``running`` whose process is gone (killed -9, segfault, power loss): each running run
records the pid, start time and host of its process, and :meth:`RunRecord.shown_status` checks
them (on another host the run is shown ``running`` -- it cannot be checked from here).

Tables
    runs(id, config_hash, config_json, name, sweep, status, started, ended, version, error,
         final_json, device_json, pid, host, proc_start)
    epochs(run_id, epoch, metrics_json)  -- one row per finished epoch (train_loss, test_accuracy, ...)

``device_json`` holds the resolved device parameters the run used (every field of the device, file
values and overrides applied; NULL for fp runs), so that a run stays described after its parameter
file changes; the config hash covers them (:meth:`ctfrpu.config.RunConfig.hash`). Schema version
(``PRAGMA user_version``) 2; a version-1 store is upgraded in place on first open.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .errors import CtfrpuError

STATUSES = ("running", "finished", "failed", "interrupted", "diverged")
#: statuses shown by `ctfrpu runs` (``dead`` is derived, see the module doc)
SHOWN_STATUSES = STATUSES + ("dead",)
SCHEMA_VERSION = 2
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
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted', 'diverged')),
    started REAL NOT NULL,
    ended REAL,
    version TEXT NOT NULL,
    error TEXT,
    final_json TEXT,
    device_json TEXT,
    pid INTEGER,
    host TEXT,
    proc_start REAL
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


def process_identity() -> tuple[int, str, float | None]:
    """(pid, host, process start time) of this process: what tells later whether it still lives."""
    return os.getpid(), socket.gethostname(), _start_time(os.getpid())


def _start_time(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 -- no such process / no psutil: unknown
        return None


def process_alive(pid: int | None, host: str | None, proc_start: float | None) -> bool | None:
    """Whether the recorded process still runs: True / False, None when it cannot be told (another
    host, or nothing recorded). A pid reused by a new process is told apart by its start time."""
    if pid is None or host is None or host != socket.gethostname():
        return None
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with distributed
        return None
    if not psutil.pid_exists(pid):
        return False
    now = _start_time(pid)
    if now is None:
        return False
    if proc_start is not None and abs(now - proc_start) > 1.0:
        return False  # the pid now belongs to another process
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.Error:
        return False
    return True


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
    device: dict[str, Any] | None = None
    """Resolved device parameters of the run (None: fp run, or recorded before they were kept)."""
    pid: int | None = None
    host: str | None = None
    proc_start: float | None = None

    @property
    def shown_status(self) -> str:
        """The status to show: 'dead' for a 'running' run whose process is gone, else the stored one."""
        if self.status == "running" and process_alive(self.pid, self.host, self.proc_start) is False:
            return "dead"
        return self.status

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.id, "config_hash": self.config_hash, "name": self.name, "sweep": self.sweep,
            "status": self.shown_status, "started": self.started, "ended": self.ended,
            "version": self.version, "error": self.error, "config": self.config,
            "final": self.final, "epochs": self.epochs, "device": self.device,
            "pid": self.pid, "host": self.host,
        }


class Store:
    """A handle on the run database. Cheap to open; each method is one transaction.

    ``create=False`` (the read commands: runs, report, export) refuses a store that does not exist
    instead of creating an empty one (and its folder) at a mistyped path.
    """

    def __init__(self, path: str | Path | None = None, create: bool = True):
        self.path = Path(path) if path else default_store_path()
        self._tx_open = False
        if not create and not self.path.is_file():
            raise CtfrpuError(f"run store not found: {self.path}" + (
                " (it is a directory)" if self.path.is_dir() else ""))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CtfrpuError(f"cannot create the folder of run store {self.path}: "
                              f"{err.strerror or err}") from None
        if self.path.is_dir():
            raise CtfrpuError(f"run store {self.path} is a directory; give a file path (e.g. {self.path}/ctfrpu.db)")
        self.read_only = False
        try:
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.DatabaseError as err:
            self._cannot_open(err, create)
            return
        try:
            self._db.text_factory = bytes  # decoded per column in _record: a damaged row is named
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._upgrade()
        except sqlite3.DatabaseError as err:
            self._db.close()
            self._cannot_open(err, create)

    def _cannot_open(self, err: sqlite3.DatabaseError, create: bool) -> None:
        """A read command (``create=False``) on a store this process cannot write (a read-only
        mount, an archived copy) opens it read-only; anything else is a one-line error."""
        writable = os.access(self.path.parent, os.W_OK) and os.access(self.path, os.W_OK)
        cannot_write = not writable or getattr(err, "sqlite_errorname", "").startswith(
            ("SQLITE_CANTOPEN", "SQLITE_READONLY")) or any(m in str(err) for m in ("unable to open", "readonly"))
        if not create and cannot_write and self._open_read_only():
            return
        raise CtfrpuError(f"cannot open run store {self.path}: {err}"
                          + ("" if writable else " (it is not writable here: a read-only mount?)")) from None

    def _open_read_only(self) -> bool:
        """Open the store read-only: ``mode=ro`` first (sees a write-ahead log, keeps locking); where
        SQLite cannot even create its lock files there, ``immutable=1`` -- refused if a non-empty
        ``-wal`` file holds writes the immutable view would not see. The schema must be current;
        writes then fail with a one-line error (:meth:`_tx`)."""
        wal = self.path.with_name(self.path.name + "-wal")
        uri = self.path.resolve().as_uri()
        options = ["mode=ro"] + ([] if wal.exists() and wal.stat().st_size else ["immutable=1"])
        for opt in options:
            try:
                db = sqlite3.connect(f"{uri}?{opt}", uri=True, isolation_level=None)
                db.text_factory = bytes
                (version,) = db.execute("PRAGMA user_version").fetchone()
            except sqlite3.DatabaseError:
                continue
            if version < SCHEMA_VERSION:
                db.close()
                raise CtfrpuError(f"run store {self.path} has schema version {version}; open it once where it "
                                  f"can be written (a copy) to upgrade it to {SCHEMA_VERSION}")
            self._db, self.read_only = db, True
            return True
        return False

    def _upgrade(self) -> None:
        """Create the schema, or bring a version-1 store to version 2 (new statuses and columns)."""
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version >= SCHEMA_VERSION:
            return
        # a table rebuild must not cascade-delete the epochs (the pragma is a no-op inside a transaction)
        self._db.execute("PRAGMA foreign_keys=OFF")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            (version,) = self._db.execute("PRAGMA user_version").fetchone()  # another process did it?
            has_runs = self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'"
                                        ).fetchone()
            statements = [st for st in _SCHEMA.split(";") if st.strip()]
            if version < SCHEMA_VERSION and has_runs:
                # SQLite cannot alter a CHECK constraint: rebuild the table, keep ids (epochs refer to them)
                create_runs = next(st for st in statements if "TABLE IF NOT EXISTS runs " in st)
                self._db.execute(create_runs.replace("IF NOT EXISTS runs ", "runs_new "))
                cols = "id, config_hash, config_json, name, sweep, status, started, ended, version, error, final_json"
                self._db.execute(f"INSERT INTO runs_new ({cols}) SELECT {cols} FROM runs")
                self._db.execute("DROP TABLE runs")
                self._db.execute("ALTER TABLE runs_new RENAME TO runs")
            if version < SCHEMA_VERSION:
                for st in statements:
                    self._db.execute(st)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        finally:
            self._db.execute("PRAGMA foreign_keys=ON")

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
            if getattr(self, "read_only", False):
                raise CtfrpuError(f"run store {self.path} is open read-only (it cannot be written here)")
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
                  sweep: str | None = None, device: dict[str, Any] | None = None) -> int:
        pid, host, proc_start = process_identity()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO runs (config_hash, config_json, name, sweep, status, started, version,"
                " device_json, pid, host, proc_start) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                (config_hash, json.dumps(config, sort_keys=True), name, sweep, time.time(), __version__,
                 _dumps_or_null(device), pid, host, proc_start),
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
        """Mark a run running again (resuming it) in this process: end time and error cleared."""
        pid, host, proc_start = process_identity()
        with self._tx() as db:
            db.execute("UPDATE runs SET status='running', ended=NULL, error=NULL, pid=?, host=?, proc_start=?"
                       " WHERE id=?", (pid, host, proc_start, run_id))

    def checkpoint_path(self, run_id: int) -> Path:
        """Where run ``run_id`` keeps its end-of-epoch checkpoint: ``checkpoints/`` beside the store."""
        return self.path.parent / "checkpoints" / f"{self.path.stem}-run{run_id}.ckpt"

    def record_run(self, config: dict[str, Any], config_hash: str, status: str,
                   epochs: list[dict[str, Any]], final: dict[str, Any] | None, error: str | None,
                   started: float, ended: float, name: str | None = None,
                   sweep: str | None = None, once: bool = False, device: dict[str, Any] | None = None) -> int:
        """Insert a whole run (with its epochs) in ONE transaction: used by the sweep client.

        With ``once``, a finished run is not inserted when the store already holds a finished run
        of the same config hash (checked inside the same write transaction, so two clients on one
        store cannot both insert it); the existing run's id is returned instead.
        """
        if status not in STATUSES:
            raise ValueError(status)
        with self._tx() as db:
            if once and status == "finished":
                row = db.execute("SELECT id FROM runs WHERE config_hash=? AND status='finished' LIMIT 1",
                                 (config_hash,)).fetchone()
                if row:
                    return int(row[0])
            cur = db.execute(
                "INSERT INTO runs (config_hash, config_json, name, sweep, status, started, ended,"
                " version, error, final_json, device_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (config_hash, json.dumps(config, sort_keys=True), name, sweep, status, started, ended,
                 __version__, error, json.dumps(final) if final is not None else None, _dumps_or_null(device)),
            )
            run_id = int(cur.lastrowid)
            db.executemany("INSERT INTO epochs (run_id, epoch, metrics_json) VALUES (?, ?, ?)",
                           [(run_id, int(m["epoch"]), json.dumps(m)) for m in epochs])
            return run_id

    def delete_runs(self, run_ids: list[int]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM runs WHERE id=?", [(i,) for i in run_ids])

    # -- reads ------------------------------------------------------------------------------

    def _damaged(self, rid: Any, what: str) -> CtfrpuError:
        return CtfrpuError(f"run store {self.path}: the record of run {rid} is damaged ({what}); restore "
                           "the store from a backup or delete that run's row")

    def _text(self, rid: Any, col: str, value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (bytes, bytearray)):
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise self._damaged(rid, f"{col} is not UTF-8 text") from None
        raise self._damaged(rid, f"{col} is a {type(value).__name__}, not text")

    def _json(self, rid: Any, col: str, value: Any, kind: type = dict) -> Any:
        text = self._text(rid, col, value)
        if text is None:
            return None
        try:
            out = json.loads(text)
        except json.JSONDecodeError:
            raise self._damaged(rid, f"{col} is not valid JSON") from None
        if not isinstance(out, kind):
            raise self._damaged(rid, f"{col} is not a JSON {kind.__name__}")
        return out

    def _record(self, row: tuple) -> RunRecord:
        (rid, chash, cjson, name, sweep, status, started, ended, version, error, fjson, djson, pid, host,
         pstart) = row
        epochs = [self._json(rid, "epochs.metrics_json", m) for (m,) in self._db.execute(
            "SELECT metrics_json FROM epochs WHERE run_id=? ORDER BY epoch", (rid,))]
        status = self._text(rid, "status", status)
        if status not in STATUSES:
            raise self._damaged(rid, f"unknown status {status!r}")
        if not isinstance(started, (int, float)) or not (ended is None or isinstance(ended, (int, float))):
            raise self._damaged(rid, "start/end time is not a number")
        config = self._json(rid, "config_json", cjson)
        if config is None or not isinstance(config.get("device", {}), dict):
            raise self._damaged(rid, "config_json has no config")
        return RunRecord(rid, self._text(rid, "config_hash", chash), config, self._text(rid, "name", name),
                         self._text(rid, "sweep", sweep), status, started, ended,
                         self._text(rid, "version", version), self._text(rid, "error", error),
                         self._json(rid, "final_json", fjson), epochs, self._json(rid, "device_json", djson),
                         pid if isinstance(pid, int) else None, self._text(rid, "host", host),
                         pstart if isinstance(pstart, (int, float)) else None)

    _COLS = ("id, config_hash, config_json, name, sweep, status, started, ended, version, error, final_json,"
             " device_json, pid, host, proc_start")

    def get(self, run_id: int) -> RunRecord:
        row = self._db.execute(f"SELECT {self._COLS} FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise CtfrpuError(f"no run with id {run_id} in {self.path} (see `ctfrpu runs list`)")
        return self._record(row)

    def list(self, sweep: str | None = None, status: str | None = None) -> list[RunRecord]:
        """Runs in id order; ``status`` filters on the stored status, except 'dead' (shown status)."""
        sql, args = f"SELECT {self._COLS} FROM runs WHERE 1=1", []
        if sweep is not None:
            sql += " AND sweep=?"
            args.append(sweep)
        if status is not None:
            sql += " AND status=?"
            args.append("running" if status == "dead" else status)
        records = [self._record(r) for r in self._db.execute(sql + " ORDER BY id", args).fetchall()]
        if status in ("dead", "running"):
            records = [r for r in records if r.shown_status == status]
        return records

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


def _dumps_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)
