"""Pulse-train design (ctfrpu.devices.pulses): geometry, the two modes, validation, units."""

import math

import numpy as np
import pytest

from ctfrpu.devices import PulseTrain
from ctfrpu.errors import CtfrpuError
from ctfrpu.units import parse_time


def test_geometry():
    tr = PulseTrain(4, 2e-6, 1e-6)
    assert tr.period == pytest.approx(3e-6)
    assert tr.on_time == pytest.approx(8e-6)
    assert tr.duration == pytest.approx(12e-6)
    np.testing.assert_allclose(tr.slot_times(), [0, 3e-6, 6e-6, 9e-6])
    assert tr.describe() == "N=4, pw=2us, t_gap=1us"


@pytest.mark.parametrize("n", [1, 3, 7, 1000])
def test_on_time_mode_conserves_on_time(n):
    tr = PulseTrain.from_on_time(n, 5e-3, 1e-6)
    assert tr.n == n
    assert tr.pw == pytest.approx(5e-3 / n)
    assert tr.on_time == pytest.approx(5e-3, rel=1e-12)


def test_numpy_scalars_become_python_numbers():
    tr = PulseTrain(np.int64(3), np.float32(2e-6), np.float64(0.0))
    assert type(tr.n) is int and type(tr.pw) is float and type(tr.gap) is float
    assert tr.gap == 0.0                      # zero gap is allowed (back-to-back pulses)


BAD = [
    (0, 1e-6, 0.0), (-3, 1e-6, 0.0), (2.0, 1e-6, 0.0), (True, 1e-6, 0.0), ("3", 1e-6, 0.0),
    (2, 0.0, 0.0), (2, -1e-6, 0.0), (2, math.inf, 0.0), (2, math.nan, 0.0), (2, True, 0.0), (2, "1us", 0.0),
    (2, 1e-6, -1e-9), (2, 1e-6, math.inf), (2, 1e-6, math.nan), (2, 1e-6, None),
]


@pytest.mark.parametrize("n,pw,gap", BAD)
def test_invalid_designs_are_one_line_errors(n, pw, gap):
    with pytest.raises(CtfrpuError) as exc:
        PulseTrain(n, pw, gap)
    assert "\n" not in str(exc.value) and str(exc.value).startswith("pulse train:")


@pytest.mark.parametrize("n,t_on", [(0, 1e-3), (2, 0.0), (2, -1e-3), (2, math.nan), (2, math.inf), (2, "1ms"),
                                    (1.5, 1e-3)])
def test_invalid_on_time_designs(n, t_on):
    with pytest.raises(CtfrpuError) as exc:
        PulseTrain.from_on_time(n, t_on, 1e-6)
    assert "\n" not in str(exc.value)


def test_units_parse_to_seconds():
    assert parse_time("2us") == pytest.approx(2e-6)
    assert parse_time("500ns") == pytest.approx(5e-7)
    assert parse_time("1ms") == pytest.approx(1e-3)
    assert parse_time(3e-6) == 3e-6
    for bad in ("2 parsecs", "inf", "nan", "", True):
        with pytest.raises(CtfrpuError):
            parse_time(bad)


def test_from_config_accepts_units_in_both_modes():
    from ctfrpu.config import PulseConfig

    tr = PulseTrain.from_config(PulseConfig(n=100, gap="2us", t_on="1ms"))
    assert (tr.n, tr.pw, tr.gap) == (100, pytest.approx(1e-5), pytest.approx(2e-6))
    tr = PulseTrain.from_config(PulseConfig(n=10, gap="500ns", mode="fixed_pw", pw="3us"))
    assert (tr.n, tr.pw, tr.gap) == (10, pytest.approx(3e-6), pytest.approx(5e-7))
