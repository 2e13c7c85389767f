"""Compensation (our gain rule) and the design helper (our exact moment recursion).

Statistical checks use fixed seeds and tolerances of Z standard errors estimated from the sample.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess

import numpy as np
import pytest

from ctfrpu.config import IOConfig, RunConfig, UpdateConfig, validate
from ctfrpu.design.compensation import U_TYP, base_probability, compensation_gain, efficiency, gain_for
from ctfrpu.design.helper import (design_grid, evaluate_design, matched_noise_scale, recommend, train_moments)
from ctfrpu.devices import CTFDevice, IdealDevice, PulseTrain
from ctfrpu.errors import CtfrpuError
from ctfrpu.experiments.update_stats import LayerPairs, mean_update_error

from conftest import CTFRPU

Z = 5.0
NOMINAL = {"kappa_dtod": 0.0, "window_dtod": 0.0}


def train(n, gap=1e-6, t_on=5e-3):
    return PulseTrain.from_on_time(n, t_on, gap)


# ------------------------------------------------------------------------------ the gain rule


@pytest.mark.parametrize("n", [100, 300, 1000, 3000])
@pytest.mark.parametrize("gap", [1e-7, 1e-4])
def test_gain_removes_bias_at_typical_probability(n, gap):
    dev = CTFDevice()
    tr = train(n, gap)
    cfg = RunConfig()
    g = compensation_gain(dev, tr, cfg)
    p0 = base_probability(dev, tr, cfg.optim.lr, U_TYP)
    # symmetric preset: g r(g P_typ) = 1 exactly (fixed point)
    assert g * float(efficiency(dev, tr, g * p0, +1.0)) == pytest.approx(1.0, rel=1e-8)
    assert g > 1.0


def test_gain_is_one_for_ideal_and_least_squares_for_asymmetric():
    tr = train(1000)
    assert compensation_gain(IdealDevice(), tr, RunConfig()) == 1.0
    dev = CTFDevice(t_d_e=0.5e-6)  # erase more efficient than program
    g, _, p = gain_for(dev, tr, 0.01)
    rp, rm = float(efficiency(dev, tr, p, 1.0)), float(efficiency(dev, tr, p, -1.0))
    assert rm > rp
    assert g == pytest.approx((rp + rm) / (rp ** 2 + rm ** 2), rel=1e-8)


def test_gain_error_when_device_programs_nothing():
    dev = CTFDevice(t_d_p=10e-6, t_d_e=10e-6)  # pulses of 5 us never pass the onset delay
    with pytest.raises(CtfrpuError, match="programs nothing"):
        compensation_gain(dev, train(1000), RunConfig())


# ------------------------------------------------------------------------------ device-level cut


def _pairs(seed=0, n_pairs=6, n_in=60, n_out=10):
    """Realistic-looking pairs: sparse inputs in [0, 1] (pixels / sigmoid outputs), errors like a
    softmax output minus a one-hot target."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n_pairs, n_in)) * (rng.uniform(size=(n_pairs, n_in)) < 0.4)
    z = rng.normal(size=(n_pairs, n_out))
    d = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    d[np.arange(n_pairs), rng.integers(0, n_out, n_pairs)] -= 1.0
    return LayerPairs(0, rng.uniform(-0.05, 0.05, (n_out, n_in)), x, d)


@pytest.mark.parametrize("n, lr, comp_max, cut_min", [(100, 0.01, 0.01, 10), (1000, 0.01, 0.02, 20),
                                                     (100, 0.05, 0.01, 10), (1000, 0.05, 0.05, 8)])
def test_compensation_cuts_mean_update_error(n, lr, comp_max, cut_min):
    pairs = _pairs()
    base = {"optim": {"lr": lr}, "pulses": {"n": n, "gap": "1us"}, "device": {"kind": "ctf", "params": NOMINAL}}
    err_raw = mean_update_error(validate(base), pairs)
    err_comp = mean_update_error(validate(dict(base, compensation={"kind": "gain"})), pairs)
    dev = CTFDevice(**NOMINAL)
    r0 = float(efficiency(dev, train(n), 1e-9))
    r_max = float(efficiency(dev, train(n), base_probability(dev, train(n), lr, 1.0)))
    # uncompensated: the mean update is r(P) times SGD, r between its P -> 0 limit and r(P_max)
    assert 1 - r_max - 1e-3 <= err_raw <= 1 - r0 + 1e-3
    # compensated: what is left is the P-dependence of r (r(g P) g - 1) and the saturation
    assert err_comp < comp_max
    assert err_raw / err_comp > cut_min
    print(f"N={n}, lr={lr}: relative error of E[dW] vs SGD {err_raw:.4f} -> {err_comp:.4f} with compensation")


# ------------------------------------------------------------------------------ design helper


@pytest.mark.parametrize("gap", [0.0, 1e-6, 1e-4])
def test_moment_mean_matches_closed_form(gap):
    dev = CTFDevice()
    tr = train(300, gap)
    p = np.array([1e-3, 0.05, 0.3, 0.9])
    mean, var = train_moments(dev, tr, p, sign=1.0)
    ref = dev.expected_train_dvt(np.full(4, dev.vt_ref), p, np.ones(4), tr) / dev.v_unit
    np.testing.assert_allclose(mean, ref, rtol=1e-10)
    assert np.all(var > 0)


def test_ideal_moments_are_binomial():
    dev = IdealDevice()
    tr = train(200)
    p = np.array([0.01, 0.5])
    mean, var = train_moments(dev, tr, p)
    dw = dev.nominal_dw(tr.pw)
    np.testing.assert_allclose(mean, 200 * p * dw, rtol=1e-12)
    np.testing.assert_allclose(var, 200 * p * (1 - p) * dw ** 2, rtol=1e-10)


def _mc_tile(device, tr, lr, reps, seed=1):
    """dW of `reps` single-cell updates from the same state (x = 1, d = 0.1)."""
    from ctfrpu.tile import AnalogTile

    tile = AnalogTile(1, 1, device, tr, UpdateConfig(mode="exact"), IOConfig(), np.random.default_rng(seed))
    out = np.empty(reps)
    x, d = np.array([1.0]), np.array([0.1])
    for k in range(reps):
        tile.set_weights(np.zeros((1, 1)))
        tile.update(x, d, lr)
        out[k] = tile.weights[0, 0]
    return out


@pytest.mark.parametrize("n, gap", [(1000, 1e-7), (300, 1e-6)])
def test_predicted_variance_matches_tile_monte_carlo(n, gap):
    dev = CTFDevice(**NOMINAL)
    tr = train(n, gap)
    lr = 0.1                       # P = lr |x d| / (N dw_min) = 0.01 at N dw_min = 1
    p = base_probability(dev, tr, lr, 0.1)
    mean, var = train_moments(dev, tr, np.array([p]), sign=-1.0)   # x d > 0: depression
    dw = -_mc_tile(dev, tr, lr, 4000)
    m, v = dw.mean(), dw.var(ddof=1)
    m4 = np.mean((dw - m) ** 4)
    assert abs(m - mean[0]) < Z * math.sqrt(v / len(dw))
    assert abs(v - var[0]) < Z * math.sqrt((m4 - v ** 2) / len(dw))
    # and the e-history + cycle-to-cycle noise is visible on top of pure counting noise
    assert var[0] > mean[0] ** 2 * (1 - p) / (n * p)


def test_design_grid_and_recommendation():
    pts = design_grid(CTFDevice(), [100, 1000, 3000], [1e-7, 1e-4])
    assert len(pts) == 6
    for p in pts:
        assert p.bias == pytest.approx(p.efficiency - 1)
        assert abs(p.bias_comp) < 0.05
        assert p.variance > 0 and p.variance_comp > 0
    # compensation raises the number of pulses by g: relative variance falls roughly by 1/g
    p = next(q for q in pts if q.n == 3000)
    assert p.variance_comp < p.counting_variance
    best = recommend(pts)
    assert best.score_comp == min(q.score_comp for q in pts)
    raw = recommend(pts, compensated=False)
    assert raw.score == min(q.score for q in pts)


def test_matched_noise_scale_equals_variance_ratio():
    ctf, ideal = CTFDevice(), IdealDevice()
    tr = train(1000)
    s = matched_noise_scale(ctf, ideal, tr, lr=0.05, u=0.2)
    p = base_probability(ctf, tr, 0.05, 0.2)
    _, vc = train_moments(ctf, tr, [p])
    _, vi = train_moments(ideal, tr, [p])
    assert s == pytest.approx(math.sqrt(vc[0] / vi[0]))
    assert 0 < s < 1                # the CTF programs less per pulse: less absolute noise


def test_design_errors():
    with pytest.raises(CtfrpuError):
        design_grid(CTFDevice(), [], [1e-6])
    with pytest.raises(CtfrpuError, match="> 1"):
        evaluate_design(CTFDevice(), train(10), lr=50.0, u=1.0)
    with pytest.raises(CtfrpuError):
        train_moments(CTFDevice(), train(10), [1.5])


def test_design_cli(cli_env):
    res = subprocess.run([CTFRPU, "design", "--pulses", "100,1000", "--gaps", "1us,100us"],
                         capture_output=True, text=True, env=cli_env)
    assert res.returncode == 0, res.stderr
    assert "recommended (compensated): N =" in res.stdout
    assert "OUR" in res.stdout
    bad = subprocess.run([CTFRPU, "design", "--gaps", "1 parsec"], capture_output=True, text=True, env=cli_env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
