"""Run store: lifecycle, whole-run transactions, lookups."""

import sqlite3

import pytest

from ctfrpu.errors import CtfrpuError
from ctfrpu.store import Store


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
