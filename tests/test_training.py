"""FP training: learns, is bit-reproducible, and the CLI records runs and interruptions."""

import json
import sys
from pathlib import Path
import signal
import subprocess
import time

import numpy as np
import pytest

from ctfrpu.config import validate
from ctfrpu.data import load_dataset
from ctfrpu.store import Store
from ctfrpu.training.engine import FloatTile
from ctfrpu.training.runner import train_run

CTFRPU = str(Path(sys.executable).with_name("ctfrpu"))

SMALL = {"data": {"dataset": "synthetic", "train_limit": 600, "test_limit": 300},
         "model": {"hidden": [32]}, "optim": {"epochs": 2, "lr": 0.1}}


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic")


def test_float_tile_update_is_sgd():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 4))
    tile = FloatTile(w)
    x, d = rng.normal(size=4), rng.normal(size=3)
    tile.update(x, d, 0.1)
    np.testing.assert_allclose(tile.weights, w - 0.1 * np.outer(d, x))
    np.testing.assert_allclose(tile.forward(x), tile.weights @ x)
    np.testing.assert_allclose(tile.backward(d), tile.weights.T @ d)


def test_gradient_matches_finite_differences(synthetic):
    """One SGD step of the hand-written backward equals -lr * numerical gradient."""
    from ctfrpu.training.engine import MLP

    rng = np.random.default_rng(1)
    w1, w2 = rng.normal(scale=0.3, size=(5, 6)), rng.normal(scale=0.3, size=(3, 5))
    b1, b2 = rng.normal(size=5), rng.normal(size=3)
    x, label = rng.random(6), 2

    def loss(w1_, w2_):
        m = MLP([FloatTile(w1_), FloatTile(w2_)], [b1, b2])
        z = m.logits(x[None])[0]
        return np.log(np.exp(z - z.max()).sum()) + z.max() - z[label]

    num = np.zeros_like(w1)
    eps = 1e-6
    for idx in np.ndindex(w1.shape):
        wp, wm = w1.copy(), w1.copy()
        wp[idx] += eps
        wm[idx] -= eps
        num[idx] = (loss(wp, w2) - loss(wm, w2)) / (2 * eps)
    m = MLP([FloatTile(w1), FloatTile(w2)], [b1, b2])
    m.train_step(x, label, lr=1.0)
    np.testing.assert_allclose(w1 - m.tiles[0].weights, num, rtol=1e-5, atol=1e-8)


def test_learns_and_is_bit_reproducible(synthetic):
    cfg = validate(SMALL)
    a = train_run(cfg, synthetic)
    b = train_run(cfg, synthetic)
    assert a["epochs"][-1]["test_accuracy"] > 0.4  # 10 classes: chance is 0.1
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]
    assert a["final"]["test_accuracy"] == b["final"]["test_accuracy"]
    c = train_run(validate({**SMALL, "seed": 1}), synthetic)
    assert c["final"]["train_loss"] != a["final"]["train_loss"]


def test_minibatch_and_validation_split(synthetic):
    cfg = validate({**SMALL, "optim": {"epochs": 1, "lr": 0.1, "batch_size": 8},
                    "data": {**SMALL["data"], "val_size": 100}})
    res = train_run(cfg, synthetic)
    assert "val_accuracy" in res["final"] and res["final"]["train_samples"] == 600


def _train_cmd(*extra):
    return [CTFRPU, "train", "--dataset", "synthetic", "--hidden", "32", "--train-limit", "400",
            "--test-limit", "200", "--lr", "0.05", *extra]


@pytest.mark.slow
def test_cli_json_twice_identical_and_stored(cli_env):
    outs = []
    for _ in range(2):
        p = subprocess.run(_train_cmd("--epochs", "1", "--seed", "0", "--json"), capture_output=True,
                           text=True, env=cli_env, check=True)
        outs.append(json.loads(p.stdout))
    assert outs[0]["test_accuracy"] == outs[1]["test_accuracy"]
    assert {"run_id", "config", "test_accuracy"} <= outs[0].keys()
    with Store(cli_env["CTFRPU_STORE"]) as s:
        runs = s.list()
    assert [r.status for r in runs] == ["finished", "finished"]
    assert runs[0].config == outs[0]["config"] and len(runs[0].epochs) == 1
    shown = subprocess.run([CTFRPU, "runs", "show", str(runs[0].id), "--json"], capture_output=True,
                           text=True, env=cli_env, check=True)
    assert json.loads(shown.stdout)["final"]["test_accuracy"] == outs[0]["test_accuracy"]
    listed = subprocess.run([CTFRPU, "runs", "list"], capture_output=True, text=True, env=cli_env, check=True)
    assert "finished" in listed.stdout


@pytest.mark.parametrize("args", [["--epochs", "-1"], ["--lr", "nan"], ["--dataset", "cifar"],
                                  ["--set", "optim.nope=1"], ["--batch-size", "0"]])
def test_cli_bad_input_one_line(cli_env, args):
    p = subprocess.run([CTFRPU, "train", *args], capture_output=True, text=True, env=cli_env)
    assert p.returncode != 0
    assert p.stderr.strip().count("\n") == 0 and p.stderr.startswith("error:")


def test_ctrl_c_marks_run_interrupted(cli_env):
    proc = subprocess.Popen(_train_cmd("--epochs", "500", "--no-progress"), env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    epochs = 0
    while time.time() < deadline and epochs < 1:
        time.sleep(0.3)
        try:
            with Store(cli_env["CTFRPU_STORE"]) as s:
                runs = s.list()
            epochs = len(runs[0].epochs) if runs else 0
        except Exception:
            pass
    assert epochs >= 1, "training never finished an epoch"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    with Store(cli_env["CTFRPU_STORE"]) as s:
        (run,) = s.list()
    assert run.status == "interrupted" and len(run.epochs) >= 1
