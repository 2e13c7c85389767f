"""OUR 2 x 2 ablation update: per cell E(N_b) + [exact(N_sigma) - E(N_sigma)].

Its mean must be the bias design's mean, its variance the noise design's exact variance, and with
N_b = N_sigma it must be the exact update itself (bit for bit)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ctfrpu.config import IOConfig, UpdateConfig, validate
from ctfrpu.design.helper import train_moments
from ctfrpu.devices import CTFDevice, IdealDevice, PulseTrain
from ctfrpu.errors import CtfrpuError
from ctfrpu.tile import AnalogTile

Z = 5.0
DEV = CTFDevice(kappa_dtod=0.0, window_dtod=0.0, bound_exponent=64.0, dv_std=0.1)
T_ON, GAP = 5e-3, 1e-6


def _train(n):
    return PulseTrain.from_on_time(n, T_ON, GAP)


@pytest.mark.parametrize("timing", ["slot", "train"])
def test_equal_designs_give_the_exact_update_bit_for_bit(timing):
    """Why the diagonal arms of the 2 x 2 ablation reuse the grid's exact runs (factorial_config)."""
    rng = np.random.default_rng(0)
    x, d = rng.uniform(0, 1, (20, 12)), rng.normal(0, 0.3, (20, 7))
    mk = lambda mode: AnalogTile(7, 12, CTFDevice(), _train(200), UpdateConfig(mode=mode, timing=timing),  # noqa: E731
                                 IOConfig(), np.random.default_rng(4), bias_train=_train(200))
    a, b = mk("exact"), mk("factorial")
    a.update(x, d, 0.05)
    b.update(x, d, 0.05)
    assert np.array_equal(a.weights, b.weights)
    assert a.stats == b.stats


@pytest.mark.parametrize("n_b,n_s", [(100, 1000), (1000, 100)])
def test_mean_of_bias_design_and_variance_of_noise_design(n_b, n_s):
    tb, ts = _train(n_b), _train(n_s)
    tile = AnalogTile(1, 1, DEV, ts, UpdateConfig(mode="factorial"), IOConfig(), np.random.default_rng(1),
                      bias_train=tb)
    lr = 0.3 * n_s * tile.dw_min
    p_s = lr / (n_s * DEV.nominal_dw(ts.pw))
    p_b = lr / (n_b * DEV.nominal_dw(tb.pw))
    reps = 5000
    dw = np.empty(reps)
    for r in range(reps):
        tile.set_weights(np.zeros((1, 1)))
        tile.update(np.array([1.0]), np.array([-1.0]), lr)
        dw[r] = tile.weights[0, 0]
    m_b, _ = train_moments(DEV, tb, np.array([p_b]))
    _, v_s = train_moments(DEV, ts, np.array([p_s]))
    se = math.sqrt(dw.var() / reps)
    assert abs(dw.mean() - float(m_b[0])) < Z * se
    m4 = np.mean((dw - dw.mean()) ** 4)
    assert abs(dw.var() - float(v_s[0])) < Z * math.sqrt((m4 - dw.var() ** 2) / reps)


def test_factorial_from_config_and_its_errors():
    cfg = validate({"device": {"kind": "ctf"}, "pulses": {"n": 300}, "update": {"mode": "factorial", "bias_pulses": 100}})
    tile = AnalogTile.from_config(cfg, np.zeros((3, 4)), np.random.default_rng(0))
    assert tile.train.n == 300 and tile.bias_train.n == 100 and math.isclose(tile.bias_train.pw, T_ON / 100)
    with pytest.raises(CtfrpuError, match="needs update.bias_pulses"):
        AnalogTile.from_config(validate({"device": {"kind": "ctf"}, "update": {"mode": "factorial"}}),
                               np.zeros((3, 4)), np.random.default_rng(0))
    with pytest.raises(CtfrpuError, match="not available for the ideal device"):
        AnalogTile(2, 2, IdealDevice(), _train(10), UpdateConfig(mode="factorial"), IOConfig(),
                   np.random.default_rng(0), bias_train=_train(20))


def test_factorial_arm_configs_are_paired_and_classified():
    from ctfrpu.experiments.ablation import factorial_cell, factorial_configs

    cfgs = factorial_configs({"data": {"dataset": "synthetic"}, "pulses": {"gap": 1e-5}}, 100, 1000, seeds=(0, 1))
    cells = [factorial_cell(c.to_dict(), 100, 1000) for c in cfgs]
    assert sorted(set(cells)) == [("large", "large"), ("large", "small"), ("small", "large"), ("small", "small")]
    assert sorted(c.seed for c in cfgs) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert all(c.pulses.gap == 1e-5 and c.compensation.kind == "none" for c in cfgs)
    with pytest.raises(CtfrpuError, match="N_small < N_large"):
        factorial_configs({}, 1000, 100)


@pytest.mark.parametrize("timing", ["slot", "train"])
def test_fused_mean_pass_is_the_difference_of_the_two_expected_means(timing):
    """The factorial's one pass over the records (both designs, one saturation per cell) gives, bit
    for bit, E_b - E_sigma of the expected mode's closed form (ctf_mean_dvt) at each cell's V_T --
    the formula exists once; cells active in only one design (x_i = 0, d_j = 0 elsewhere) included."""
    from ctfrpu.devices import ctf_update as cu
    from ctfrpu.kernels.cells import C_HI, C_KS, C_LO, C_VT

    rng = np.random.default_rng(5)
    tile = AnalogTile(9, 13, CTFDevice(), _train(1000), UpdateConfig(mode="factorial", timing=timing), IOConfig(),
                      np.random.default_rng(2), bias_train=_train(100))
    tile.set_weights(rng.uniform(-0.5, 0.5, (9, 13)))
    x, d = rng.uniform(0, 1, 13), rng.normal(0, 0.2, 9)
    x[::4], d[::3] = 0.0, 0.0
    plan, bplan = tile._plan, tile._bias_plan
    lrg = tile._lrg(0.05)
    ctl = tile._ctl(lrg)
    ctl_b = ctl[:4] + (float(plan.device.nominal_dw(bplan.train.pw)), int(bplan.train.n)) + ctl[6:]
    pb, qb, corr = np.empty(13), np.empty(9), np.full((9, 13), np.nan)
    cu._mean_pass(x, d, ctl_b, ctl, tile._cells, bplan._cst_mean, plan._cst_mean, plan._dev[1], pb, qb,
                  tile._bufs.args, corr)
    p, q, sx, sd = tile._bufs.args[:4]
    cells, mi = tile._cells, plan._dev[1]
    n_active = 0
    for j in range(9):
        for i in range(13):
            if x[i] == 0.0 or d[j] == 0.0:
                continue
            n_active += 1
            s = sx[i] * sd[j]
            c = cells[j, i]
            e_b = cu.ctf_mean_dvt(pb[i] * qb[j], 100, s, c[C_VT], c[C_KS], c[C_LO], c[C_HI], bplan._cst_mean, mi)
            e_s = cu.ctf_mean_dvt(p[i] * q[j], 1000, s, c[C_VT], c[C_KS], c[C_LO], c[C_HI], plan._cst_mean, mi)
            assert corr[j, i] == e_b - e_s, (j, i)
    assert n_active > 50
