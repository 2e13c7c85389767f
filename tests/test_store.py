"""Run store: lifecycle, whole-run transactions, lookups."""

import sqlite3

import pytest

from ctfrpu.errors import CtfrpuError
from ctfrpu.store import Store

from conftest import HookedConnection


def test_run_lifecycle(tmp_path):
    with Store(tmp_path / "s.db") as s:
        rid = s.start_run({"seed": 0}, "h1", name="a")
        s.log_epoch(rid, 1, {"epoch": 1, "train_loss": 0.5, "test_accuracy": 0.9})
        assert s.get(rid).status == "running"
        s.finish_run(rid, "finished", final={"test_accuracy": 0.9})
        rec = s.get(rid)
        assert rec.status == "finished" and rec.final["test_accuracy"] == 0.9
        assert rec.epochs == [{"epoch": 1, "train_loss": 0.5, "test_accuracy": 0.9}]
        assert s.finished_by_hash("h1").id == rid and s.finished_by_hash("h2") is None
        with pytest.raises(CtfrpuError, match="no run with id 99"):
            s.get(99)


def test_record_run_is_atomic(tmp_path):
    with Store(tmp_path / "s.db") as s:
        with pytest.raises(sqlite3.IntegrityError):
            # duplicate epoch numbers violate the primary key: nothing of the run may remain
            s.record_run({"seed": 0}, "h", "finished", [{"epoch": 1}, {"epoch": 1}], {}, None, 0.0, 1.0)
        assert s.list() == []
        rid = s.record_run({"seed": 0}, "h", "finished", [{"epoch": 1}, {"epoch": 2}], {"a": 1}, None,
                           0.0, 1.0, sweep="sw")
        assert [r.id for r in s.list(sweep="sw")] == [rid] and s.list(sweep="other") == []
        assert len(s.get(rid).epochs) == 2


def test_ctrl_c_during_a_write_is_deferred_and_the_write_kept(tmp_path):
    """SIGINT arriving inside a transaction is delivered after COMMIT: the epoch is kept and the
    next write (the 'interrupted' status) works — the CI failure this guards against."""
    import os
    import signal

    with Store(tmp_path / "s.db") as s:
        rid = s.start_run({"seed": 0}, "h", name="a")
        with pytest.raises(KeyboardInterrupt):
            with s._tx() as db:
                os.kill(os.getpid(), signal.SIGINT)  # would raise here without deferral
                db.execute("INSERT INTO epochs (run_id, epoch, metrics_json) VALUES (?, 1, '{}')",
                           (rid,))
        assert not s._db.in_transaction
        s.finish_run(rid, "interrupted", error="Ctrl-C")
        rec = s.get(rid)
        assert rec.status == "interrupted" and rec.epochs == [{}]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _interrupt_after_begin(sql):
    if sql.startswith("BEGIN"):
        raise KeyboardInterrupt


def test_a_transaction_left_open_is_rolled_back_before_the_next_write(tmp_path):
    with Store(tmp_path / "s.db") as s:
        rid = s.start_run({"seed": 0}, "h")
        real = s._db
        s._db = HookedConnection(real, after=_interrupt_after_begin)
        with pytest.raises(KeyboardInterrupt):
            s.log_epoch(rid, 1, {"epoch": 1})
        s._db = real
        real.execute("BEGIN")  # and one left open by code outside the store's own writes
        s.finish_run(rid, "interrupted")
        assert s.get(rid).status == "interrupted" and not real.in_transaction
