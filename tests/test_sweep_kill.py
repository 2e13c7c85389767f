"""A real sweep, killed: SIGKILL and Ctrl-C midway, then resumed; the store must equal a clean run's.

Each `ctfrpu sweep` here is a real subprocess with its own 2-worker LocalCluster.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ctfrpu.store import Store

CTFRPU = str(Path(sys.executable).with_name("ctfrpu"))
N_RUNS = 10

SWEEP = f"""
name = "killme"
[base]
data = {{ dataset = "synthetic", train_limit = 1500, test_limit = 200 }}
model = {{ hidden = [48] }}
optim = {{ epochs = 4 }}
[grid]
seed = {list(range(N_RUNS))}
"""


def finished_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM runs WHERE status='finished'").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not written yet
        return 0


def start(sweep: Path, db: Path) -> subprocess.Popen:
    return subprocess.Popen([CTFRPU, "sweep", str(sweep), "--store", str(db), "--workers", "2",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def wait_for(db: Path, proc: subprocess.Popen, n: int, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while finished_count(db) < n:
        assert proc.poll() is None, f"sweep ended early: {proc.communicate()}"
        assert time.monotonic() < end, "sweep too slow"
        time.sleep(0.02)


def assert_processes_gone(procs: list[psutil.Process], timeout: float = 15) -> None:
    """Every worker process exits by itself (a zombie waiting for its reaper counts as gone)."""
    end = time.monotonic() + timeout
    for p in procs:
        while True:
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            assert time.monotonic() < end, f"worker process {p.pid} outlived the sweep"
            time.sleep(0.05)


def metrics(db: Path) -> dict[str, tuple]:
    """hash -> (status, final, epochs) without the wall-clock fields; asserts one row per hash."""
    with Store(db) as store:
        records = store.list(sweep="killme")
    out = {}
    for rec in records:
        assert rec.config_hash not in out, f"run {rec.config_hash} recorded twice"
        final = {k: v for k, v in rec.final.items() if k != "seconds"}
        epochs = [{k: v for k, v in m.items() if k != "seconds"} for m in rec.epochs]
        out[rec.config_hash] = (rec.status, final, epochs)
    return out


@pytest.mark.slow
def test_kill9_and_ctrl_c_then_resume_equals_a_clean_run(tmp_path):
    sweep = tmp_path / "kill.toml"
    sweep.write_text(SWEEP)
    db, clean_db = tmp_path / "killed.db", tmp_path / "clean.db"
    procs: list[psutil.Process] = []
    try:
        # 1. kill -9 the client after two runs are recorded
        proc = start(sweep, db)
        wait_for(db, proc, 2)
        procs = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        after_kill = finished_count(db)
        assert 2 <= after_kill < N_RUNS
        assert_processes_gone(procs)  # the workers notice their parent died and exit

        # 2. resume, then Ctrl-C (SIGINT to the whole process group, as a terminal does)
        proc = start(sweep, db)
        wait_for(db, proc, after_kill + 2)
        procs = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, (out, err)
        assert "interrupted:" in out and "Traceback" not in err, (out, err)
        assert_processes_gone(procs)
        after_int = finished_count(db)
        print("finished after kill -9:", after_kill, "after Ctrl-C:", after_int)
        assert after_kill + 2 <= after_int < N_RUNS

        # 3. resume to the end: only the missing runs run
        done = subprocess.run([CTFRPU, "sweep", str(sweep), "--store", str(db), "--json"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert summary["counts"]["skipped-finished"] == after_int
        assert summary["counts"]["finished"] == N_RUNS - after_int and summary["complete"]

        # 4. a clean, uninterrupted run of the same file in another store
        clean = subprocess.run([CTFRPU, "sweep", str(sweep), "--store", str(clean_db), "--json"],
                               capture_output=True, text=True, timeout=120)
        assert clean.returncode == 0, clean.stderr
    finally:
        for p in procs:  # never leave a stray process behind, whatever failed above
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass

    killed, reference = metrics(db), metrics(clean_db)
    assert len(reference) == N_RUNS and all(s == "finished" for s, _, _ in reference.values())
    assert killed == reference  # every run once, finished, with the same metrics
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
