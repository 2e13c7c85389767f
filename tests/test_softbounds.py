"""The soft-bounds device: the worked example of a device plug-in (one file + its registry line).

Physics alone, then the tile (exact / expected / Gaussian modes against the device's own mean
and variance), then end to end through the CLI -- with no change to the tile, the kernels, the
config or the CLI.
"""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from ctfrpu.config import IOConfig, UpdateConfig
from ctfrpu.devices import PulseTrain, build_device, device_kinds
from ctfrpu.devices.softbounds import SoftBoundsDevice
from ctfrpu.errors import CtfrpuError
from ctfrpu.tile import AnalogTile

from conftest import CTFRPU

Z = 5.0


def test_registered_and_built_from_a_config():
    assert "softbounds" in device_kinds()
    dev = build_device("softbounds", None, {"rate": 100.0, "w_max": 0.5})
    assert isinstance(dev, SoftBoundsDevice) and dev.w_max == 0.5
    with pytest.raises(CtfrpuError, match="w_min < 0 < w_max"):
        SoftBoundsDevice(w_min=0.2)
    with pytest.raises(CtfrpuError, match="unknown softbounds device parameter 'bogus'"):
        build_device("softbounds", None, {"bogus": 1.0})


def test_step_shrinks_linearly_towards_the_bounds():
    dev = SoftBoundsDevice(rate=1000.0, w_min=-1.0, w_max=1.0)
    st = dev.init_state((3,), np.random.default_rng(0), np.array([-0.5, 0.0, 0.5]))
    up = dev.apply_pulses(st, np.zeros((3, 1)), np.full((3, 1), 1e-4), np.ones((3, 1)))
    down = dev.apply_pulses(st, np.zeros((3, 1)), np.full((3, 1), 1e-4), -np.ones((3, 1)))
    dw0 = 1000.0 * 1e-4
    np.testing.assert_allclose(up.w - st.w, dw0 * (1 - st.w / 1.0), rtol=1e-12)
    np.testing.assert_allclose(down.w - st.w, -dw0 * (1 - st.w / -1.0), rtol=1e-12)
    # many up pulses approach, never pass, the bound
    many = dev.apply_pulses(st, np.zeros((3, 400)), np.full((3, 400), 1e-4), np.ones((3, 400)))
    assert np.all(many.w < 1.0) and np.all(many.w > 0.99)


def _draws(mode: str, reps: int, w0: float, prob: float = 0.3):
    dev = SoftBoundsDevice(rate=200.0, dw_min_std=0.2)
    train = PulseTrain(40, 5e-6, 1e-6)
    tile = AnalogTile(1, 1, dev, train, UpdateConfig(mode=mode), IOConfig(), np.random.default_rng(3))
    lr = prob * train.n * tile.dw_min
    out = np.empty(reps)
    for r in range(reps):
        tile.set_weights(np.full((1, 1), w0))
        tile.update(np.array([1.0]), np.array([-1.0]), lr)
        out[r] = tile.weights[0, 0] - w0
    return out, dev.rate * train.pw * (1 - w0 / dev.w_max), train.n, prob, dev.dw_min_std


@pytest.mark.parametrize("w0", [0.0, 0.6])
def test_exact_mode_mean_and_variance(w0):
    # counts K ~ Binomial(N, P); each step dw_c (1 - w/w_max)(1 + std xi), w moving during the train:
    # the small-step limit of the mean is N P step(w0); dw_c = 1e-3 keeps the drift below 1e-4 relative
    reps = 5000
    dw, step, n, p, std = _draws("exact", reps, w0)
    mean_ref = n * p * step
    var_ref = step ** 2 * n * p * (1 - p + std ** 2)
    se = math.sqrt(dw.var() / reps)
    assert abs(dw.mean() - mean_ref) < Z * se + 1e-3 * abs(mean_ref)
    assert abs(dw.var() - var_ref) < Z * var_ref * math.sqrt(2.0 / reps) * 1.5 + 1e-3 * var_ref


@pytest.mark.parametrize("w0", [0.0, 0.6])
def test_expected_and_gaussian_modes(w0):
    dw, step, n, p, std = _draws("expected", 1, w0)
    assert math.isclose(dw[0], n * p * step, rel_tol=1e-12)
    reps = 4000
    dg, step, n, p, std = _draws("gaussian", reps, w0)
    var_ref = step ** 2 * n * p * (1 - p + std ** 2)
    assert abs(dg.mean() - n * p * step) < Z * math.sqrt(var_ref / reps)
    assert abs(dg.var() - var_ref) < Z * var_ref * math.sqrt(2.0 / (reps - 1))


def test_trace_and_checkpoint_round_trip():
    dev = SoftBoundsDevice(dw_min_dtod=0.1)
    mk = lambda: AnalogTile(6, 5, dev, PulseTrain(30, 5e-6, 1e-6), UpdateConfig(), IOConfig(),  # noqa: E731
                            np.random.default_rng(1))
    a, b = mk(), mk()
    rng = np.random.default_rng(2)
    x, d = rng.uniform(0, 1, (4, 5)), rng.normal(0, 0.3, (4, 6))
    a.update(x[:2], d[:2], 0.1)
    b.load_state_dict(a.state_dict())
    a.update(x[2:], d[2:], 0.1)
    b.update(x[2:], d[2:], 0.1)
    assert np.array_equal(a.weights, b.weights)
    before = a.get_weights()
    ev = a.trace_update(x[0], d[0], 0.1)
    assert len(ev) == a.stats["pulses"] - b.stats["pulses"]
    np.testing.assert_allclose(before[ev["col"], ev["row"]] * 0 + np.bincount(
        ev["col"] * 5 + ev["row"], weights=ev["dw"], minlength=30).reshape(6, 5)[ev["col"], ev["row"]],
        (a.get_weights() - before)[ev["col"], ev["row"]], atol=1e-15)


def test_trains_end_to_end_from_the_cli(cli_env):
    res = subprocess.run([CTFRPU, "train", "--dataset", "synthetic", "--train-limit", "200", "--hidden", "16",
                          "--epochs", "1", "--device", "softbounds", "--pulses", "50", "--lr", "0.1", "--json"],
                         env=cli_env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-1500:]
    out = json.loads(res.stdout)
    assert out["final"]["test_accuracy"] > 0.15        # 10 classes: learning, not chance


def test_device_params_cli_knows_every_registered_kind(cli_env):
    import subprocess
    import sys

    from ctfrpu.devices import DEVICES

    for kind, cls in DEVICES.items():
        r = subprocess.run([sys.executable, "-m", "ctfrpu.cli.main", "device", "params", "--device", kind],
                           capture_output=True, text=True, env=cli_env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0].startswith(cls.title)
        assert "derived:" in r.stdout.splitlines()[-1]
