"""Issue 12: checkpoints are data, configs are content-addressed, run status is the truth.

Each test reproduces a defect of the earlier code (a planted pickle ran code, an edited parameter
file reused stale results, a full disk lost a run, a runaway loss was 'finished', a killed run
stayed 'running') and shows it fixed.
"""

import errno
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ctfrpu.cli.main import main
from ctfrpu.config import validate
from ctfrpu.data import load_dataset
from ctfrpu.errors import CtfrpuError
from ctfrpu.store import Store
from ctfrpu.training import checkpoint as ckpt
from ctfrpu.training import runner
from ctfrpu.training.runner import execute_run, train_run

from conftest import CTFRPU

BASE = {"data": {"dataset": "synthetic", "train_limit": 200, "test_limit": 100},
        "model": {"hidden": [16]}, "optim": {"epochs": 3, "lr": 0.1}}


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic")


class _Payload:
    """Unpickling this touches ``marker``: what a planted checkpoint did to the old loader."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"format": 1, "x": _Payload(marker)}))


def _strip(epochs):
    return [{k: v for k, v in m.items() if k != "seconds"} for m in epochs]


# -- 1. checkpoints are data -----------------------------------------------------------------------

def test_no_pickle_loading_in_the_sources():
    src = Path(__file__).parents[1] / "src" / "ctfrpu"
    bad = [f"{p}:{i}" for p in src.rglob("*.py") for i, line in enumerate(p.read_text().splitlines(), 1)
           if "pickle.load" in line or "import pickle" in line or "allow_pickle=True" in line]
    assert not bad, bad


def test_planted_checkpoint_runs_nothing_on_train_resume(tmp_path, capsys):
    store_path = tmp_path / "k.db"
    with Store(store_path) as store:
        rid = store.start_run(validate(BASE).to_dict(), validate(BASE).hash())
        store.finish_run(rid, "interrupted", error="Ctrl-C")
        path = store.checkpoint_path(rid)
    marker = tmp_path / "owned"
    _plant(path, marker)
    code = main(["train", "--resume", str(rid), "--store", str(store_path), "--no-progress"])
    err = capsys.readouterr().err
    assert not marker.exists(), "the planted checkpoint executed code"
    assert code == 2 and err.startswith("error: checkpoint") and "unreadable" in err and err.count("\n") == 1
    with Store(store_path) as store:
        assert store.get(rid).status == "interrupted" and path.exists()  # refused before any change


def test_planted_checkpoint_runs_nothing_in_a_sweep_task(tmp_path, synthetic, monkeypatch):
    from ctfrpu.sweep import worker

    cfg = validate(BASE)
    marker = tmp_path / "owned"
    _plant(tmp_path / f"sweep-{cfg.hash()}.ckpt", marker)
    monkeypatch.setitem(worker._DATASETS, ("synthetic", None), synthetic)
    out = worker.run_task(cfg.to_dict(), None, checkpoint_dir=str(tmp_path))
    assert not marker.exists(), "the planted checkpoint executed code"
    assert out["status"] == "finished" and _strip(out["epochs"]) == _strip(train_run(cfg, synthetic)["epochs"])


def _interrupted_checkpoint(tmp_path, synthetic, cfg):
    path = tmp_path / "run.ckpt"

    def stop(m):
        if m["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, synthetic, on_epoch=stop, checkpoint=path)
    return path


def test_checkpoint_is_an_npz_of_plain_arrays_and_json(tmp_path, synthetic):
    cfg = validate({**BASE, "device": {"kind": "ctf"}, "pulses": {"n": 20}})
    path = _interrupted_checkpoint(tmp_path, synthetic, cfg)
    with np.load(path, allow_pickle=False) as npz:  # every member loads without pickle
        members = {n: npz[n] for n in npz.files}
    assert all(a.dtype != object for a in members.values())
    meta = json.loads(members["meta"].tobytes())
    assert meta["magic"] == "ctfrpu-checkpoint" and meta["format"] == ckpt.FORMAT and len(meta["sha256"]) == 64
    saved = ckpt.load(path, cfg.hash())
    assert saved["epoch"] == 2 and isinstance(saved["data_rng"]["state"]["state"], int)


def test_tampered_or_foreign_checkpoints_are_refused_in_one_line(tmp_path, synthetic):
    cfg = validate(BASE)
    path = _interrupted_checkpoint(tmp_path, synthetic, cfg)
    with np.load(path, allow_pickle=False) as npz:
        members = {n: npz[n].copy() for n in npz.files}
    arrays = [n for n in members if n != "meta" and members[n].dtype == np.float64 and members[n].size > 1]
    members[arrays[0]][0] += 1e-9  # one weight nudged, metadata untouched
    cases = {"altered": lambda fh: np.savez(fh, **members),
             "foreign": lambda fh: np.savez(fh, w=np.zeros(3)),
             "object array": lambda fh: np.savez(fh, meta=np.array([{"a": 1}], dtype=object)),
             "plain npy": lambda fh: np.save(fh, np.zeros(3)),
             "pickle": lambda fh: fh.write(pickle.dumps({"format": 2})),
             "truncated": lambda fh: fh.write(path.read_bytes()[:300])}
    for what, write in cases.items():
        p = tmp_path / f"{what}.ckpt"
        with open(p, "wb") as fh:
            write(fh)
        with pytest.raises(CtfrpuError) as err:
            ckpt.load(p, cfg.hash())
        msg = str(err.value)
        assert "\n" not in msg and "delete it" in msg, (what, msg)
        if what == "altered":
            assert "checksum" in msg


# -- 2. content-addressed configs --------------------------------------------------------------------

def test_editing_a_parameter_file_makes_a_new_hash_and_the_store_records_the_values(tmp_path, synthetic):
    params = tmp_path / "dev.toml"
    params.write_text("[params]\nkappa_p = 150.0\ntau_off = '20us'\n")
    doc = {**BASE, "device": {"kind": "ctf", "params_file": str(params)}, "pulses": {"n": 20}}
    before = validate(doc).hash()
    inline = validate({**doc, "device": {"kind": "ctf", "params": {"kappa_p": 150, "tau_off": 2e-5}}}).hash()
    moved = tmp_path / "moved.toml"
    moved.write_text(params.read_text())
    assert before == inline == validate({**doc, "device": {"kind": "ctf", "params_file": str(moved)}}).hash()
    params.write_text("[params]\nkappa_p = 120.0\ntau_off = '50us'\n")
    assert validate(doc).hash() != before  # the old code hashed the path only: stale runs were reused
    # a config without a parameter file keeps its hash (stores written before stay valid)
    import hashlib

    plain = validate({**BASE, "device": {"kind": "ctf", "params": {"kappa_p": 200.0}}})
    d = plain.to_dict()
    d.pop("name"), d.pop("sweep")
    d["optim"].pop("lr_decay")  # added later, hash-neutral at its default 1.0 (earlier hashes stay valid)
    assert plain.hash() == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    with Store(tmp_path / "s.db") as store:
        rid, _ = execute_run(validate(doc), store, progress=False, dataset=synthetic)
        rec = store.get(rid)
    assert rec.device["kappa_p"] == 120.0 and rec.device["tau_off"] == 5e-5 and "dv_std" in rec.device


def test_a_sweep_reruns_a_run_whose_parameter_file_changed(tmp_path):
    from ctfrpu.sweep.engine import store_status
    from ctfrpu.sweep.spec import parse_sweep

    params = tmp_path / "dev.toml"
    params.write_text("[params]\nkappa_p = 150.0\n")
    doc = {"name": "s", "base": {**BASE, "device": {"kind": "ctf", "params_file": str(params)}}}
    sweep = parse_sweep(doc, "s.toml")
    with Store(tmp_path / "s.db") as store:
        run = sweep.runs[0]
        store.record_run(run.config.to_dict(), run.hash, "finished", [], {"test_accuracy": 0.5}, None, 0, 1)
        assert store_status(sweep, store)[run.hash].status == "finished"
        params.write_text("[params]\nkappa_p = 100.0\n")
        again = parse_sweep(doc, "s.toml")
        assert store_status(again, store)[again.runs[0].hash].status == "missing"


# -- 3. run status is the truth ----------------------------------------------------------------------

@pytest.mark.parametrize("lr", [1000.0, 1e300])
def test_a_runaway_loss_is_diverged_not_finished(tmp_path, synthetic, lr):
    cfg = validate({**BASE, "optim": {"epochs": 3, "lr": lr}})
    with Store(tmp_path / "s.db") as store:
        rid, res = execute_run(cfg, store, progress=False, dataset=synthetic)
        rec = store.get(rid)
    assert res["status"] == rec.status == "diverged" and "diverged at epoch" in rec.error
    assert rec.final is not None and rec.epochs  # the epochs and final metrics are kept
    loss = rec.epochs[-1]["train_loss"]
    assert not np.isfinite(loss) or loss > getattr(runner, "DIVERGE_FACTOR", 10.0) * np.log(10)
    assert not store.checkpoint_path(rid).exists()


def test_a_healthy_run_is_not_called_diverged(synthetic):
    assert train_run(validate(BASE), synthetic)["status"] == "finished"


def test_diverged_is_shown_by_runs_list_export_and_the_cli_exit_status(tmp_path, capsys):
    db = str(tmp_path / "s.db")
    code = main(["train", "--dataset", "synthetic", "--train-limit", "200", "--test-limit", "100",
                 "--hidden", "16", "--epochs", "2", "--lr", "1000", "--no-progress", "--store", db])
    captured = capsys.readouterr()
    assert code == 1 and "run 1 diverged" in captured.out and "warning: run 1 diverged at epoch" in captured.err
    assert main(["runs", "list", "--store", db]) == 0
    assert "diverged" in capsys.readouterr().out
    assert main(["runs", "list", "--store", db, "--status", "diverged", "--json"]) == 0
    assert [r["status"] for r in json.loads(capsys.readouterr().out)] == ["diverged"]
    assert main(["runs", "export", "--store", db, "--out", str(tmp_path / "x")]) == 0
    import pandas as pd

    assert list(pd.read_csv(tmp_path / "x_runs.csv")["status"]) == ["diverged"]


def test_full_disk_while_checkpointing_keeps_the_last_checkpoint_and_the_run_resumable(
        tmp_path, synthetic, monkeypatch):
    cfg = validate({**BASE, "optim": {"epochs": 4, "lr": 0.1}})
    clean = train_run(cfg, synthetic)
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) >= 2:  # the second checkpoint (after epoch 2) hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    with Store(tmp_path / "s.db") as store:
        monkeypatch.setattr(ckpt.os, "fsync", fsync)
        with pytest.raises(CtfrpuError) as err:
            execute_run(cfg, store, progress=False, dataset=synthetic)
        monkeypatch.setattr(ckpt.os, "fsync", real_fsync)
        msg = str(err.value)
        assert "\n" not in msg and "No space left" in msg and "--resume 1" in msg
        rec = store.get(1)
        assert rec.status == "interrupted"
        path = store.checkpoint_path(1)
        assert ckpt.load(path, cfg.hash())["epoch"] == 1 and not list(path.parent.glob("*.tmp"))
        rid, res = execute_run(None, store, progress=False, dataset=synthetic, resume=1)
        assert rid == 1 and store.get(1).status == "finished"
    assert _strip(res["epochs"]) == _strip(clean["epochs"])


@pytest.mark.slow
def test_a_killed_run_is_shown_dead_not_running(tmp_path, cli_env):
    cmd = [CTFRPU, "train", "--dataset", "synthetic", "--hidden", "32", "--train-limit", "2000",
           "--test-limit", "200", "--epochs", "100000", "--no-progress"]   # killed long before it could end
    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store_path = cli_env["CTFRPU_STORE"]
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            time.sleep(0.2)
            try:
                with Store(store_path) as s:
                    runs = s.list()
                if runs and runs[0].epochs:
                    break
            except CtfrpuError:
                pass
        live = subprocess.run([CTFRPU, "runs", "list"], env=cli_env, capture_output=True, text=True, check=True)
        assert " running " in live.stdout, live.stdout
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    listed = subprocess.run([CTFRPU, "runs", "list"], env=cli_env, capture_output=True, text=True, check=True)
    assert " dead " in listed.stdout and " running " not in listed.stdout, listed.stdout
    shown = subprocess.run([CTFRPU, "runs", "show", "1"], env=cli_env, capture_output=True, text=True, check=True)
    assert "[dead]" in shown.stdout and f"pid {proc.pid}" in shown.stdout and "--resume 1" in shown.stdout
    dead = subprocess.run([CTFRPU, "runs", "list", "--status", "dead", "--json"], env=cli_env, capture_output=True,
                          text=True, check=True)
    assert [r["status"] for r in json.loads(dead.stdout)] == ["dead"]
    with Store(store_path) as s:
        assert s.get(1).status == "running"  # stored as it was; 'dead' is what is shown


def test_a_version_1_store_is_upgraded_in_place(tmp_path):
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript("""
    CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, config_hash TEXT NOT NULL,
        config_json TEXT NOT NULL, name TEXT, sweep TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
        started REAL NOT NULL, ended REAL, version TEXT NOT NULL, error TEXT, final_json TEXT);
    CREATE TABLE epochs (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL, metrics_json TEXT NOT NULL, PRIMARY KEY (run_id, epoch));
    INSERT INTO runs VALUES (7, 'h', '{"seed": 0}', NULL, NULL, 'finished', 1.0, 2.0, '0.1', NULL, '{"a": 1}');
    INSERT INTO epochs VALUES (7, 1, '{"epoch": 1}');
    """)
    con.commit()
    con.close()
    with Store(db) as s:
        rec = s.get(7)
        assert rec.status == "finished" and rec.epochs == [{"epoch": 1}] and rec.final == {"a": 1}
        rid = s.record_run({"seed": 1}, "g", "diverged", [{"epoch": 1}], {}, "loss", 0, 1)
        assert s.get(rid).status == "diverged" and rid == 8


def test_resume_from_a_mistyped_store_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "nonexist.db"
    code = main(["train", "--resume", "3", "--store", str(missing), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "run store not found" in err and err.count("\n") == 1
    assert not missing.exists()
