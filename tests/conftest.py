"""Shared fixtures: an isolated store and data dir for every test, and the venv's ctfrpu command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

CTFRPU = str(Path(sys.executable).with_name("ctfrpu"))


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    # No test writes into the developer's runs/ctfrpu.db.
    monkeypatch.setenv("CTFRPU_STORE", str(tmp_path / "store.db"))
    yield


@pytest.fixture
def cli_env(tmp_path):
    env = dict(os.environ)
    env["CTFRPU_STORE"] = str(tmp_path / "store.db")
    return env


class HookedConnection:
    """A sqlite3 connection stand-in that calls ``before(sql)`` / ``after(sql)`` around each
    ``execute`` -- to land a Ctrl-C at an exact point of a store write."""

    def __init__(self, db, before=None, after=None):
        self._db, self._before, self._after = db, before, after

    def __getattr__(self, name):
        return getattr(self._db, name)

    def execute(self, sql, *args):
        if self._before:
            self._before(sql)
        cur = self._db.execute(sql, *args)
        if self._after:
            self._after(sql)
        return cur
