"""Compensation by pulse-width stretch (OUR rule, eq. (3) of ctfrpu.design.compensation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ctfrpu.config import validate
from ctfrpu.design.compensation import compensated_design, stretch_for
from ctfrpu.design.helper import evaluate_design, train_moments
from ctfrpu.devices import CTFDevice, IdealDevice, PulseTrain
from ctfrpu.errors import CtfrpuError
from ctfrpu.tile import AnalogTile

SYM = CTFDevice(kappa_dtod=0.0, window_dtod=0.0, bound_exponent=64.0, dv_std=0.0)


@pytest.mark.parametrize("timing", ["slot", "burst", "train"])
def test_stretch_removes_the_mean_bias_at_the_typical_cell(timing):
    train = PulseTrain.from_on_time(1000, 5e-3, 1e-6)
    lr, u = 0.1, 0.2
    k, tk = stretch_for(SYM, train, lr, u, timing)
    assert k > 1.2 and tk.n == train.n and math.isclose(tk.pw, k * train.pw) and tk.gap == train.gap
    p0 = lr * u / (train.n * SYM.nominal_dw(train.pw))
    mean, _ = train_moments(SYM, tk, np.array([p0]), timing=timing)
    assert math.isclose(float(mean[0]), lr * u, rel_tol=1e-8)       # symmetric polarities: exact
    pt = evaluate_design(SYM, train, lr, u, u_gain=u, timing=timing)
    assert abs(pt.bias_stretch) < 1e-8 and pt.bias < -0.2


def test_stretch_keeps_the_pulse_count_gain_raises_it():
    train = PulseTrain.from_on_time(1000, 5e-3, 1e-6)
    pt = evaluate_design(SYM, train, 0.1, 0.2, u_gain=0.2, timing="train")
    # same P: relative counting variance (1 - P)/(N P) unchanged; the gain's larger P lowers it
    assert pt.variance_comp < pt.variance_stretch
    assert math.isclose(pt.variance_stretch, evaluate_design(SYM, PulseTrain.from_on_time(1000, 5e-3, 1e-4), 0.1,
                                                             0.2, u_gain=0.2, timing="train").variance_stretch,
                        rel_tol=1e-6)      # train timing + stretch: the gap no longer moves the noise


def test_tile_from_config_applies_the_stretch():
    cfg = validate({"device": {"kind": "ctf"}, "pulses": {"n": 300}, "optim": {"lr": 0.1},
                    "compensation": {"kind": "stretch"}})
    tile = AnalogTile.from_config(cfg, np.zeros((4, 3)), np.random.default_rng(0))
    k, tk = stretch_for(CTFDevice(), PulseTrain.from_config(cfg.pulses), 0.1, cfg.compensation.u_typ)
    assert tile.train == tk and math.isclose(tile.gain, k)
    # A*B = lr k / (N dw_min(k pw)) = lr / (N dw_min(pw)): the probabilities of the unstretched design
    assert math.isclose(tile.gain / (tile.train.n * tile.dw_min),
                        1.0 / (300 * CTFDevice().nominal_dw(PulseTrain.from_config(cfg.pulses).pw)), rel_tol=1e-12)
    ideal_train, g = compensated_design(IdealDevice(), PulseTrain.from_config(cfg.pulses), cfg)
    assert g == 1.0 and ideal_train.pw == PulseTrain.from_config(cfg.pulses).pw


def test_unknown_compensation_kind_is_refused():
    with pytest.raises(CtfrpuError, match="compensation.kind"):
        validate({"compensation": {"kind": "bogus"}})
