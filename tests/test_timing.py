"""Timing models (slot, burst, train): each against its own analytic mean and variance.

One CTF cell at the window centre (s = 1 exactly, no device-to-device spread) gets one update of a
train with per-slot coincidence probability P; the weights are reprogrammed to 0 (fully relaxed)
before every update, so the R updates are independent draws of one train's weight change. The
exact mode's sample mean and variance are compared with the design helper's exact moment
recursion for that timing (tolerances: 5 standard errors from the sample size and the sample
fourth moment); the expected mode must equal the analytic mean to rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ctfrpu.config import IOConfig, UpdateConfig
from ctfrpu.design.helper import train_moments
from ctfrpu.devices import CTFDevice, PulseTrain
from ctfrpu.devices.timing import TIMINGS, fully_on_mean_e, timing_model
from ctfrpu.errors import CtfrpuError
from ctfrpu.tile import AnalogTile

Z = 5.0
DEV = CTFDevice(kappa_dtod=0.0, window_dtod=0.0, bound_exponent=64.0, dv_std=0.1, tau_on_p=8e-6, tau_off=10e-6)
TRAIN = PulseTrain(50, 4e-6, 2e-6)
P = 0.3


def _tile(mode: str, timing: str, seed: int = 0, device=DEV) -> AnalogTile:
    return AnalogTile(1, 1, device, TRAIN, UpdateConfig(mode=mode, timing=timing), IOConfig(),
                      np.random.default_rng(seed))


def _lr_for(tile: AnalogTile, prob: float) -> float:
    # update management with |x| = |d| = 1: p = q = sqrt(AB), P = AB = lr / (N dw_min)
    return prob * TRAIN.n * tile.dw_min


def _draws(mode: str, timing: str, reps: int, prob: float = P, device=DEV) -> np.ndarray:
    tile = _tile(mode, timing, device=device)
    lr = _lr_for(tile, prob)
    x, d = np.array([1.0]), np.array([-1.0])           # -sign(x d) = +1: program
    out = np.empty(reps)
    for r in range(reps):
        tile.set_weights(np.zeros((1, 1)))
        tile.update(x, d, lr)
        out[r] = tile.weights[0, 0]
    return out


@pytest.mark.parametrize("timing", list(TIMINGS))
def test_exact_mode_matches_the_timing_models_mean_and_variance(timing):
    reps = 6000
    dw = _draws("exact", timing, reps)
    mean, var = train_moments(DEV, TRAIN, np.array([P]), timing=timing)
    mean, var = float(mean[0]), float(var[0])
    se_mean = math.sqrt(dw.var() / reps)
    assert abs(dw.mean() - mean) < Z * se_mean, (dw.mean(), mean, se_mean)
    m4 = np.mean((dw - dw.mean()) ** 4)
    se_var = math.sqrt(max(m4 - dw.var() ** 2, 0.0) / reps)
    assert abs(dw.var() - var) < Z * se_var, (dw.var(), var, se_var)


@pytest.mark.parametrize("timing", list(TIMINGS))
def test_expected_mode_is_the_analytic_mean(timing):
    dw = _draws("expected", timing, 1)
    mean, _ = train_moments(DEV, TRAIN, np.array([P]), timing=timing)
    assert math.isclose(dw[0], float(mean[0]), rel_tol=1e-9)


@pytest.mark.parametrize("timing", list(TIMINGS))
def test_gaussian_mode_variance_matches(timing):
    reps = 4000
    dw = _draws("gaussian", timing, reps)
    mean, var = train_moments(DEV, TRAIN, np.array([P]), timing=timing)
    assert abs(dw.mean() - float(mean[0])) < Z * math.sqrt(float(var[0]) / reps)
    # Gaussian: Var of the sample variance is 2 var^2 / (reps - 1)
    assert abs(dw.var() - float(var[0])) < Z * float(var[0]) * math.sqrt(2.0 / (reps - 1))


def test_all_timings_agree_for_a_fully_on_train():
    """At P = 1 every slot fires: slot, burst and train timing describe the same pulse sequence."""
    means = [float(train_moments(DEV, TRAIN, np.array([1.0]), timing=t)[0][0]) for t in TIMINGS]
    assert max(means) - min(means) < 1e-12 * abs(means[0])
    # without cycle-to-cycle noise the exact mode gives that same change for every timing (train
    # timing: N times the per-pulse mean of the fully-ON train, which is the train's own change)
    dev0 = CTFDevice(kappa_dtod=0.0, window_dtod=0.0, bound_exponent=64.0, dv_std=0.0, tau_on_p=8e-6, tau_off=10e-6)
    ex = [float(_draws("exact", t, 1, prob=1.0, device=dev0)[0]) for t in TIMINGS]
    assert max(ex) - min(ex) < 1e-9 * abs(ex[0])
    assert abs(ex[0] - means[0]) < 1e-9 * abs(means[0])


def test_burst_relaxes_less_than_slot_and_train_has_no_spread_from_gaps():
    m_slot, v_slot = (float(a[0]) for a in train_moments(DEV, TRAIN, np.array([P]), timing="slot"))
    m_burst, _ = (float(a[0]) for a in train_moments(DEV, TRAIN, np.array([P]), timing="burst"))
    assert m_burst > m_slot                      # back to back: e has less time to relax
    dev0 = CTFDevice(kappa_dtod=0.0, window_dtod=0.0, bound_exponent=64.0, dv_std=0.0)
    m_tr, v_tr = (float(a[0]) for a in train_moments(dev0, TRAIN, np.array([P]), timing="train"))
    step = m_tr / (TRAIN.n * P)                  # every pulse the same mean step: binomial variance
    assert math.isclose(v_tr, step ** 2 * TRAIN.n * P * (1 - P), rel_tol=1e-9)


def test_fully_on_mean_e_closed_form():
    c, d_gap, n = 0.6, 0.9, 37
    e, acc = 0.0, 0.0
    for _ in range(n):
        acc += e
        e = d_gap * (1 - (1 - e) * c)
    assert math.isclose(fully_on_mean_e(c, d_gap, n), acc / n, rel_tol=1e-12)


def test_unknown_timing_is_a_one_line_error():
    with pytest.raises(CtfrpuError, match="unknown timing model 'bogus'; choose one of slot, burst, train"):
        timing_model("bogus")
    with pytest.raises(CtfrpuError, match="unknown timing model"):
        _tile("exact", "bogus")
