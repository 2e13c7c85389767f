"""Checkpoints: an interrupted run continues from its last epoch with the metrics an uninterrupted
run gives (bit-identical), through the Python API and through `ctfrpu train --resume`."""

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from ctfrpu.config import validate
from ctfrpu.data import load_dataset
from ctfrpu.errors import CtfrpuError
from ctfrpu.store import Store
from ctfrpu.training import checkpoint as ckpt
from ctfrpu.training.runner import execute_run, train_run

from conftest import CTFRPU, HookedConnection

BASE = {"data": {"dataset": "synthetic", "train_limit": 300, "test_limit": 200},
        "model": {"hidden": [24]}, "optim": {"epochs": 4, "lr": 0.1}}
# the CTF arm draws from every generator a run has: pulse trains, cycle-to-cycle noise, output noise
ARMS = {
    "fp": {},
    "ideal": {"device": {"kind": "ideal"}, "pulses": {"n": 50}},
    "ctf": {"device": {"kind": "ctf", "params": {"dv_std": 0.1}}, "pulses": {"n": 50},
            "io": {"out_noise": 0.01}, "optim": {"epochs": 4, "lr": 0.1, "batch_size": 3}},
}


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic")


def _cfg(arm):
    doc = {**BASE, **ARMS[arm]}
    return validate(doc)


class _StopAfter:
    def __init__(self, n):
        self.n, self.seen = n, []

    def __call__(self, metrics):
        self.seen.append(metrics["epoch"])
        if len(self.seen) == self.n:
            raise KeyboardInterrupt


def _strip(epochs):
    return [{k: v for k, v in m.items() if k != "seconds"} for m in epochs]


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_resumed_run_equals_uninterrupted_run(tmp_path, synthetic, arm):
    cfg = _cfg(arm)
    clean = train_run(cfg, synthetic)
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, synthetic, on_epoch=_StopAfter(2), checkpoint=path)
    assert ckpt.load(path, cfg.hash())["epoch"] == 2
    replayed = []
    resumed = train_run(cfg, synthetic, on_epoch=lambda m: replayed.append(m["epoch"]), checkpoint=path)
    assert replayed == [1, 2, 3, 4]                      # restored epochs are handed on again
    assert _strip(resumed["epochs"]) == _strip(clean["epochs"])
    assert resumed["final"]["test_accuracy"] == clean["final"]["test_accuracy"]


def test_checkpoint_of_another_config_is_refused(tmp_path, synthetic):
    cfg = _cfg("fp")
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, synthetic, on_epoch=_StopAfter(1), checkpoint=path)
    other = validate({**BASE, "seed": 1})
    with pytest.raises(CtfrpuError, match="belongs to config"):
        train_run(other, synthetic, checkpoint=path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(CtfrpuError, match="unreadable.*delete it"):
        train_run(cfg, synthetic, checkpoint=path)
    path.write_bytes(np.random.default_rng(0).bytes(4096))   # numpy would suggest loading it unsafely
    with pytest.raises(CtfrpuError, match="unreadable.*delete it") as err:
        train_run(cfg, synthetic, checkpoint=path)
    assert "pickle" not in str(err.value).lower() and "allow_pickle" not in str(err.value)


def test_execute_run_resume_keeps_the_run_id_and_removes_the_checkpoint(tmp_path, synthetic, monkeypatch):
    cfg = _cfg("ideal")
    with Store(tmp_path / "s.db") as store:
        from ctfrpu.training import runner

        real_log = store.log_epoch
        calls = []

        def log_then_stop(run_id, epoch, m):
            real_log(run_id, epoch, m)
            calls.append(epoch)
            if len(calls) == 3:
                raise KeyboardInterrupt

        monkeypatch.setattr(store, "log_epoch", log_then_stop)
        with pytest.raises(runner.RunInterrupted) as stop:
            execute_run(cfg, store, progress=False, dataset=synthetic)
        monkeypatch.setattr(store, "log_epoch", real_log)
        rid = stop.value.run_id
        assert store.get(rid).status == "interrupted" and store.checkpoint_path(rid).exists()
        assert store.resumable_by_hash(cfg.hash()) == rid and store.resumable_by_hash("other") is None
        with pytest.raises(CtfrpuError, match="give no other config"):
            execute_run(cfg, store, progress=False, dataset=synthetic, resume=rid)
        rid2, res = execute_run(None, store, progress=False, dataset=synthetic, resume=rid)
        rec = store.get(rid)
        assert rid2 == rid and rec.status == "finished" and [m["epoch"] for m in rec.epochs] == [1, 2, 3, 4]
        assert not store.checkpoint_path(rid).exists() and store.resumable_by_hash(cfg.hash()) is None
        assert len(store.list()) == 1
        with pytest.raises(CtfrpuError, match="is finished"):
            execute_run(None, store, progress=False, dataset=synthetic, resume=rid)


def _train(env, *extra):
    # long enough (~0.3 s an epoch on the compiled loop) to be caught alive after its second epoch
    return [CTFRPU, "train", "--dataset", "synthetic", "--hidden", "256", "--train-limit", "4000",
            "--test-limit", "200", "--lr", "0.05", "--epochs", "60", "--no-progress", *extra]


def _wait_for_epochs(store_path, n, timeout=60.0):
    """Until the store's first run has logged n epochs."""
    deadline, epochs = time.time() + timeout, 0
    while time.time() < deadline and epochs < n:
        time.sleep(0.2)
        try:
            with Store(store_path) as s:
                runs = s.list()
            epochs = len(runs[0].epochs) if runs else 0
        except Exception:  # noqa: BLE001 -- the store may not exist yet
            pass
    assert epochs >= n, f"training never finished {n} epoch(s)"


@pytest.mark.slow
def test_cli_ctrl_c_then_resume_matches_a_clean_run(tmp_path, cli_env):
    proc = subprocess.Popen(_train(cli_env), env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    store_path = cli_env["CTFRPU_STORE"]
    _wait_for_epochs(store_path, 2)
    live = subprocess.run([CTFRPU, "train", "--resume", "1"], env=cli_env, capture_output=True, text=True)
    assert live.returncode == 2 and "another live process" in live.stderr, live.stderr
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and f"ctfrpu train --resume 1 --store {store_path}" in err, err
    with Store(store_path) as s:
        assert s.get(1).status == "interrupted" and s.checkpoint_path(1).exists()

    bad = subprocess.run([CTFRPU, "train", "--resume", "1", "--epochs", "3"], env=cli_env, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --resume") and "--epochs" in bad.stderr
    done = subprocess.run([CTFRPU, "train", "--resume", "1", "--json"], env=cli_env, capture_output=True,
                          text=True, check=True)
    resumed = json.loads(done.stdout)

    clean_env = dict(cli_env, CTFRPU_STORE=str(tmp_path / "clean.db"))
    clean = json.loads(subprocess.run(_train(clean_env, "--json"), env=clean_env, capture_output=True, text=True,
                                      check=True).stdout)
    assert resumed["run_id"] == 1 and resumed["config"] == clean["config"]
    assert resumed["test_accuracy"] == clean["test_accuracy"]
    assert [m["train_loss"] for m in resumed["epochs"]] == [m["train_loss"] for m in clean["epochs"]]
    with Store(store_path) as s:
        (run,) = s.list()
        assert run.status == "finished" and len(run.epochs) == 60


def _interrupted_run(store, cfg, synthetic, monkeypatch, after_epochs=2):
    from ctfrpu.training import runner

    real_log = store.log_epoch
    calls = []

    def log_then_stop(run_id, epoch, m):
        real_log(run_id, epoch, m)
        calls.append(epoch)
        if len(calls) == after_epochs:
            raise KeyboardInterrupt

    monkeypatch.setattr(store, "log_epoch", log_then_stop)
    with pytest.raises(runner.RunInterrupted) as stop:
        execute_run(cfg, store, progress=False, dataset=synthetic)
    monkeypatch.setattr(store, "log_epoch", real_log)
    return stop.value.run_id


def test_refused_resumes_leave_the_run_and_its_checkpoint_alone(tmp_path, synthetic, monkeypatch):
    cfg = _cfg("fp")
    with Store(tmp_path / "s.db") as store:
        rid = _interrupted_run(store, cfg, synthetic, monkeypatch)
        path = store.checkpoint_path(rid)
        good = path.read_bytes()
        # a live process still holds the run
        with ckpt.locked(path, rid):
            with pytest.raises(CtfrpuError, match="another live process"):
                execute_run(None, store, progress=False, dataset=synthetic, resume=rid)
        # an unreadable checkpoint
        path.write_bytes(good[:100])
        with pytest.raises(CtfrpuError, match="unreadable"):
            execute_run(None, store, progress=False, dataset=synthetic, resume=rid)
        assert store.get(rid).status == "interrupted" and path.read_bytes() == good[:100]
        # a stored config this version no longer accepts: one line, nothing changed
        path.write_bytes(good)
        store._db.execute("UPDATE runs SET config_json=? WHERE id=?",
                          (json.dumps({**cfg.to_dict(), "optim": {**cfg.to_dict()["optim"], "momentum": 0.9}}), rid))
        with pytest.raises(CtfrpuError, match=r"cannot be resumed.*optim.momentum") as err:
            execute_run(None, store, progress=False, dataset=synthetic, resume=rid)
        assert "\n" not in str(err.value) and store.get(rid).status == "interrupted" and path.exists()


def test_ctrl_c_while_the_run_row_is_written_still_marks_it(tmp_path, synthetic):
    """SIGINT inside start_run's transaction is held until the run id is known, then recorded."""
    import os

    from ctfrpu.training.runner import RunInterrupted

    def sigint_on_insert(sql):
        if sql.startswith("INSERT INTO runs"):
            os.kill(os.getpid(), signal.SIGINT)

    with Store(tmp_path / "s.db") as store:
        real = store._db
        store._db = HookedConnection(real, before=sigint_on_insert)
        with pytest.raises(RunInterrupted) as stop:
            execute_run(_cfg("fp"), store, progress=False, dataset=synthetic)
        store._db = real
        (run,) = store.list()
        assert stop.value.run_id == run.id and run.status == "interrupted" and run.epochs == []


def test_store_writes_do_not_nest(tmp_path):
    with Store(tmp_path / "s.db") as store:
        rid = store.start_run({"seed": 0}, "h")
        with pytest.raises(RuntimeError, match="do not nest"):
            with store._tx():
                store.finish_run(rid, "finished")
        assert store.get(rid).status == "running" and not store._db.in_transaction


def test_sigterm_exits_143_and_the_hint_names_the_store(tmp_path, cli_env):
    proc = subprocess.Popen(_train(cli_env), env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_epochs(cli_env["CTFRPU_STORE"], 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    shown = subprocess.run([CTFRPU, "runs", "show", "1"], env=cli_env, capture_output=True, text=True, check=True)
    assert f"ctfrpu train --resume 1 --store {cli_env['CTFRPU_STORE']}" in shown.stdout


def test_sweep_task_continues_from_its_checkpoint(tmp_path, synthetic, monkeypatch):
    """A sweep run cut short (kill -9 of the sweep) resumes from sweep-<hash>.ckpt on the rerun."""
    from ctfrpu.sweep import worker

    cfg = _cfg("ideal")
    clean = train_run(cfg, synthetic)
    path = tmp_path / f"sweep-{cfg.hash()}.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, synthetic, on_epoch=_StopAfter(3), checkpoint=path)
    loaded = []
    real_load = ckpt.load
    monkeypatch.setattr(ckpt, "load", lambda p, h: loaded.append(real_load(p, h)) or loaded[-1])
    monkeypatch.setitem(worker._DATASETS, ("synthetic", None), synthetic)
    out = worker.run_task(cfg.to_dict(), None, checkpoint_dir=str(tmp_path))
    assert out["status"] == "finished", out["error"]
    assert loaded and all(p["epoch"] == 3 for p in loaded)  # it started from epoch 3's state
    assert _strip(out["epochs"]) == _strip(clean["epochs"])
    assert not path.exists()


def test_sweep_task_starts_over_from_an_unreadable_checkpoint(tmp_path, synthetic, monkeypatch):
    from ctfrpu.sweep import worker

    cfg = _cfg("fp")
    path = tmp_path / f"sweep-{cfg.hash()}.ckpt"
    path.write_bytes(b"torn")
    monkeypatch.setitem(worker._DATASETS, ("synthetic", None), synthetic)
    out = worker.run_task(cfg.to_dict(), None, checkpoint_dir=str(tmp_path))
    assert out["status"] == "finished", out["error"]
    assert _strip(out["epochs"]) == _strip(train_run(cfg, synthetic)["epochs"]) and not path.exists()


def test_ctrl_c_during_a_checkpoint_write_keeps_the_previous_one_and_leaves_no_debris(tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    state = {"w": np.arange(3.0)}
    ckpt.save(path, "h", 1, [{"epoch": 1}], state, {}, 1.0)
    before = path.read_bytes()

    def interrupted_fsync(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(ckpt.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(path, "h", 2, [{"epoch": 1}, {"epoch": 2}], state, {}, 2.0)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]
