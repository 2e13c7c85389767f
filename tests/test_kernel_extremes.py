"""Regression tests for the int64 overflow in the train sampler (issue 9) and its relatives.

The skip of a sparse unit was ``floor(E / -log(1 - p))`` as an int64: for p below ~1e-18 it
wrapped to a negative slot, kept the unit live forever and indexed ``smap`` out of bounds -- a
segfault in training, or a hang while the tile grew its buffers. A pure-Python replay does not
show it (Python ints do not overflow), so these tests run the COMPILED kernels and refuse to run
with the JIT off.
"""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctfrpu.config import IOConfig, UpdateConfig
from ctfrpu.devices import CTFDevice, IdealDevice, PulseTrain
from ctfrpu.errors import CtfrpuError
from ctfrpu.kernels import rng as krng
from ctfrpu.kernels import trains as kt
from ctfrpu.tile import AnalogTile

from conftest import CTFRPU

TINY = [0.0, 5e-324, 1e-300, 1e-100, 1e-42, 1e-30, 5.6e-19, 1e-18, 1e-17, 1e-12]


@pytest.fixture(autouse=True)
def _compiled():
    if not hasattr(kt.draw_events, "py_func") or kt.draw_events.py_func is kt.draw_events:
        pytest.skip("needs the compiled kernels (NUMBA_DISABLE_JIT is set)")


@pytest.mark.parametrize("p", TINY)
def test_draw_events_tiny_probability_never_fires_and_stays_in_bounds(p):
    m = 1000
    prob = np.array([p, 0.3, p, 0.01, p])
    smap = np.arange(m, dtype=np.int32)
    for seed in range(20):
        rs = krng.new_state()
        krng.seed_stream(rs, 1234, seed)
        cap = (m + 1) * prob.size
        ev_u = np.zeros(cap, dtype=np.int32)
        ev_s = np.zeros(cap, dtype=np.int32)
        scratch = (np.zeros(prob.size, np.int32), np.zeros(prob.size, np.uint64), np.zeros(prob.size))
        k = kt.draw_events(prob, m, smap, rs, *scratch, ev_u, ev_s)
        assert 0 <= k <= cap
        assert np.all((ev_s[:k] >= 0) & (ev_s[:k] < m))
        # P(any pulse of a unit with p <= 1e-12 in 1000 slots) <= 1e-9 per unit and seed
        assert not np.any(np.isin(ev_u[:k], (0, 2, 4)))


def _tile(device, n=100, um=True, blm=False, mode="exact", seed=0):
    train = PulseTrain.from_on_time(n, 5e-3, 1e-6)
    upd = UpdateConfig(mode=mode, update_management=um, update_bl_management=blm)
    return AnalogTile(10, 16, device, train, upd, IOConfig(), np.random.default_rng(seed))


@pytest.mark.parametrize("device", [IdealDevice(rate=3000.0), CTFDevice()], ids=["ideal", "ctf"])
@pytest.mark.parametrize("mode", ["exact", "expected", "gaussian"])
def test_tile_update_with_probabilities_down_to_zero(device, mode):
    tile = _tile(device, mode=mode)
    rng = np.random.default_rng(1)
    for scale_d in (1.0, 1e-18, 1e-30, 1e-150, 1e-300, 5e-324, 0.0):
        x = rng.uniform(0, 1, 16)
        d = rng.normal(0, 1, 10) * scale_d
        d[0] = 0.5                            # one large delta: update management puts the rest near 0
        for lr in (0.1, 1e-30, 1e-300):
            tile.update(x, d, lr)
    assert np.all(np.isfinite(tile.weights))


_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
_mag = st.sampled_from([0.0, 5e-324, 1e-300, 1e-30, 1e-18, 1e-6, 1.0, 1e6, 1e30, 1e300])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(xs=st.lists(_mag, min_size=8, max_size=8), ds=st.lists(_mag, min_size=4, max_size=4),
       sign=st.integers(0, 255), lr=st.sampled_from([1e-300, 1e-30, 1e-3, 0.1, 10.0, 1e30]),
       kappa=st.sampled_from([1e-30, 1.0, 200.0, 1e40]), v_unit=st.sampled_from([1e-300, 1e-3, 2.0, 1e30]),
       dv_std=st.sampled_from([0.0, 0.1, 1e6]), a=st.sampled_from([0.0, 1.0, 1e300]))
def test_property_extreme_inputs_terminate_with_finite_weights(xs, ds, sign, lr, kappa, v_unit, dv_std, a):
    x = np.array(xs) * np.where((sign >> np.arange(8)) & 1, 1.0, -1.0)
    d = np.array(ds) * np.where((sign >> np.arange(4)) & 1, -1.0, 1.0)
    dev = CTFDevice(kappa_p=kappa, kappa_e=kappa, v_unit=v_unit, dv_std=dv_std, a_p=a, a_e=a)
    for device in (dev, IdealDevice(rate=kappa if kappa < 1e30 else 1e30, dw_min_std=min(dv_std, 1e3))):
        try:
            tile = AnalogTile(4, 8, device, PulseTrain.from_on_time(50, 5e-3, 1e-6), UpdateConfig(),
                              IOConfig(), np.random.default_rng(0))
        except CtfrpuError as err:          # a step per pulse of 0 or inf is refused up front
            assert "dw_min" in str(err)
            continue
        for _ in range(3):
            tile.update(x, d, lr)
        assert np.all(np.isfinite(tile.weights))


# The commands of issue 9 that crashed (exit 139) or hung before the fix; each must run to the end.
SYNTH = ["--dataset", "synthetic", "--train-limit", "50", "--hidden", "16", "--epochs", "1"]
COMMANDS = [
    pytest.param(["--dataset", "mnist", "--train-limit", "5", "--lr", "10", "--device", "ideal", "--epochs", "1"],
                 marks=pytest.mark.realdata, id="mnist-lr10-ideal"),
    pytest.param(["--dataset", "mnist", "--train-limit", "5", "--lr", "10", "--device", "ctf", "--epochs", "1"],
                 marks=pytest.mark.realdata, id="mnist-lr10-ctf"),
    pytest.param(SYNTH + ["--device", "ideal", "--lr", "1e-40"], id="lr1e-40"),
    pytest.param(SYNTH + ["--device", "ideal", "--lr", "1e-30"], id="lr1e-30"),
    pytest.param(SYNTH + ["--device", "ctf", "--set", "device.params.kappa_p=1e40"], id="kappa_p1e40"),
    pytest.param(SYNTH + ["--device", "ctf", "--set", "device.params.a_p=1e300"], id="a_p1e300"),
    pytest.param(SYNTH + ["--device", "ctf", "--set", "device.params.v_unit=1e-300"], id="v_unit1e-300"),
    pytest.param(SYNTH + ["--device", "ctf", "--set", "device.params.dv_std=1e6"], id="dv_std1e6"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args", COMMANDS)
def test_issue9_crash_and_hang_commands_finish(args, cli_env):
    try:
        res = subprocess.run([CTFRPU, "train", *args, "--json"], env=cli_env, capture_output=True, text=True,
                             timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ctfrpu train {' '.join(args)} hung (> 180 s)")
    # finished (0), stopped as diverged (1, one-line warnings ending with the divergence), or a one-line
    # error (2) -- never a signal (negative: the old segfault) or a traceback. A diverging run may also
    # warn, one line, that its pulse probabilities were clipped (lr 10 wants more than a full train).
    assert res.returncode in (0, 1, 2), (res.returncode, res.stderr[-2000:])
    if res.returncode == 1:
        lines = res.stderr.strip().splitlines()
        assert all(line.startswith("warning: ") for line in lines), lines
        assert "diverged" in lines[-1], lines
        assert all("diverged" in line or "clipped" in line for line in lines), lines
    assert "Traceback" not in res.stderr
    if res.returncode == 2:
        assert res.stderr.strip().startswith("error:") and len(res.stderr.strip().splitlines()) == 1
