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
