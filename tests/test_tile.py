"""AnalogTile: statistics of the stochastic update against analytic mean/variance/covariance,
mode consistency (exact / expected / gaussian), the CTF pulse history against the device's own
closed form, reproducibility, bad input and the periphery.

Statistical checks: R repeated updates of a small tile from the same weights, fixed seeds,
tolerance Z standard errors estimated from the sample (mean: sqrt(var / R); variance and
covariance: sqrt(Var[product terms] / R))."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ctfrpu.kernels.bundle as bundle_mod
from ctfrpu.config import IOConfig, UpdateConfig
from ctfrpu.devices import CTFDevice, IdealDevice, PulseTrain
from ctfrpu.errors import CtfrpuError
from ctfrpu.tile import EVENT_DTYPE_CTF, EVENT_DTYPE_IDEAL, AnalogTile

Z = 5.0

X = np.array([0.9, -0.5, 0.2])             # 3 inputs (rows)
D = np.array([0.7, -0.3, 0.1, 0.0])        # 4 outputs (columns), one silent
TRAIN = PulseTrain(100, 5e-6, 1e-6)        # dw_min = 200/s * 5 us = 0.001 for the ideal device


def make(device=None, mode="exact", um=False, blm=False, seed=0, train=TRAIN, io=None, shape=(4, 3), **kw):
    return AnalogTile(shape[0], shape[1], device or IdealDevice(), train,
                      UpdateConfig(mode=mode, update_management=um, update_bl_management=blm),
                      io or IOConfig(), np.random.default_rng(seed), **kw)


def repeat(tile, x, d, lr, reps, w0=None):
    """dW of `reps` updates, each from the same weights w0 (default 0)."""
    w0 = np.zeros(tile.weights.shape) if w0 is None else w0
    out = np.empty((reps,) + tile.weights.shape)
    for r in range(reps):
        tile.set_weights(w0)
        tile.update(x, d, lr)
        out[r] = tile.weights - w0
    return out


def se_mean(samples):
    return np.sqrt(samples.var(0) / samples.shape[0])


def check_var(samples, var):
    c = samples - samples.mean(0)
    se = np.sqrt(np.var(c ** 2, axis=0) / samples.shape[0])
    assert np.all(np.abs(np.mean(c ** 2, 0) - var) <= Z * se + 1e-18), (np.mean(c ** 2, 0), var)


# -- ideal device, exact mode: mean, variance, covariance ------------------------------------

def test_ideal_exact_mean_variance_covariance():
    """lr = N dw_min makes A B = 1; without update management A = B = 1: p = |x|, q = |d|.
    K_ij ~ Binomial(N, p_i q_j): E[dw] = -lr x d, Var = dw^2 N pq (1 - pq). Two cells of one row
    share the row train: Cov = dw^2 N (p q1 q2 - p^2 q1 q2) s1 s2 (s = cell signs); one column:
    dw^2 N (q p1 p2 - q^2 p1 p2) s1 s2; different row and column: 0."""
    tile = make()
    dw, n = tile.dw_min, TRAIN.n
    lr = n * dw
    reps = 4000
    s = repeat(tile, X, D, lr, reps)
    p, q = np.abs(X), np.abs(D)
    P = np.outer(q, p)
    mean = -lr * np.outer(D, X)
    assert np.all(np.abs(s.mean(0) - mean) <= Z * se_mean(s) + 1e-15)
    check_var(s, dw ** 2 * n * P * (1 - P))
    assert np.all(s[:, 3, :] == 0)                       # d_j = 0: no pulses
    sign = -np.sign(np.outer(D, X))

    def cov_check(a, b, expected):
        ca, cb = a - a.mean(), b - b.mean()
        prod = ca * cb
        assert abs(prod.mean() - expected) <= Z * prod.std() / math.sqrt(reps), (prod.mean(), expected)

    # same row i = 0, columns 0 and 1
    i, j1, j2 = 0, 0, 1
    cov_row = dw ** 2 * n * (p[i] * q[j1] * q[j2] - p[i] ** 2 * q[j1] * q[j2]) * sign[j1, i] * sign[j2, i]
    cov_check(s[:, j1, i], s[:, j2, i], cov_row)
    assert abs(cov_row) > 5 * dw ** 2 * math.sqrt(n) / math.sqrt(reps)   # the check has power
    # same column j = 0, rows 0 and 1
    j, i1, i2 = 0, 0, 1
    cov_col = dw ** 2 * n * (q[j] * p[i1] * p[i2] - q[j] ** 2 * p[i1] * p[i2]) * sign[j, i1] * sign[j, i2]
    cov_check(s[:, j, i1], s[:, j, i2], cov_col)
    cov_check(s[:, 0, 0], s[:, 1, 1], 0.0)


def test_ideal_exact_mean_with_update_management_and_gain():
    """E[dW] = -lr gain outer(d, x) whatever the A/B split (update management on)."""
    tile = make(um=True, gain=1.7)
    lr = 0.05
    s = repeat(tile, X, D, lr, 3000)
    assert np.all(np.abs(s.mean(0) - (-lr * 1.7 * np.outer(D, X))) <= Z * se_mean(s) + 1e-15)


def test_bl_management_keeps_the_mean():
    """BL = ceil(lr max|x| max|d| / dw_min) slots; the mean stays -lr x d, and the train is
    shorter (no pulse beyond slot BL-1)."""
    tile = make(um=True, blm=True, seed=4)
    lr = 0.02                                  # BL = ceil(0.02 * 0.9 * 0.7 / 0.001) = 13
    s = repeat(tile, X, D, lr, 3000)
    assert np.all(np.abs(s.mean(0) + lr * np.outer(D, X)) <= Z * se_mean(s) + 1e-15)
    ev = tile.trace_update(X, D, lr)
    assert ev["slot"].max() < math.ceil(lr * 0.9 * 0.7 / tile.dw_min) == 13


def test_expected_mode_ideal_is_exact_sgd_and_gaussian_matches_moments():
    lr = TRAIN.n * 0.001 * 0.8
    tile = make(mode="expected")
    tile.update(X, D, lr)
    np.testing.assert_allclose(tile.weights, -lr * np.outer(D, X), rtol=1e-12, atol=1e-16)
    dev = IdealDevice(dw_min_std=0.3)
    g = repeat(make(dev, mode="gaussian", seed=2), X, D, lr, 4000)
    e = repeat(make(dev, mode="exact", seed=3), X, D, lr, 4000)
    P = 0.8 * np.outer(np.abs(D), np.abs(X))
    var = 0.001 ** 2 * TRAIN.n * P * (1 - P + 0.09)      # counting + cycle-to-cycle
    for s in (g, e):
        assert np.all(np.abs(s.mean(0) + lr * np.outer(D, X)) <= Z * se_mean(s) + 1e-15)
        check_var(s, var)


# -- CTF ----------------------------------------------------------------------------------------

CTF_QUIET = dict(kappa_dtod=0.0, window_dtod=0.0, dv_std=0.0)


def test_ctf_all_slots_fire_equals_regular_train_closed_form():
    """p = q = 1 (A = B = 1 via lr = N dw_min, |x| = |d| = 1, no update management): every cell
    gets N pulses at t = k period -- exactly the device's apply_pulses of a regular train,
    with its device-to-device spread."""
    dev = CTFDevice(dv_std=0.0)
    train = PulseTrain(40, 2e-6, 0.5e-6)
    tile = make(dev, train=train, seed=11)
    start = tile.state.copy()
    x = np.array([1.0, -1.0, 1.0])
    d = np.array([1.0, -1.0, -1.0, 1.0])
    tile.update(x, d, train.n * tile.dw_min)
    sign = -np.sign(np.outer(d, x))[..., None] * np.ones(train.n)
    ref = dev.apply_pulses(start, train.slot_times(), train.pw, sign)
    np.testing.assert_allclose(tile.state.vt, ref.vt, rtol=0, atol=1e-13)
    np.testing.assert_allclose(tile.state.e, ref.e, rtol=0, atol=1e-13)
    np.testing.assert_allclose(tile.weights, ref.w, rtol=0, atol=1e-13)
    assert tile.stats["pulses"] == 12 * train.n


def _events_to_pulses(ev, shape, t_offset=0.0):
    k = max(np.bincount(ev["col"] * shape[1] + ev["row"]).max(), 1)
    times = np.zeros(shape + (k,))
    signs = np.zeros(shape + (k,))
    for j in range(shape[0]):
        for i in range(shape[1]):
            e = ev[(ev["row"] == i) & (ev["col"] == j)]
            assert np.all(np.diff(e["slot"]) > 0)              # each cell's pulses in time order
            times[j, i, :len(e)] = e["time_s"] + t_offset
            signs[j, i, :len(e)] = e["sign"]
            times[j, i, len(e):] = (e["time_s"][-1] if len(e) else 0.0) + t_offset + 1.0
    return times, signs


@pytest.mark.parametrize("carry", [False, True])
def test_ctf_random_trains_equal_device_pulse_history(carry):
    """The traced pulses of two consecutive updates, replayed through the device's own
    apply_pulses (per-cell times, relaxation over each real gap), give the kernel's state. With
    carry_enhancement the second update starts from the first's relaxed e (trains back to back:
    update u starts at u * train.duration); without, from e = 0."""
    dev = CTFDevice(dv_std=0.0, tau_off=30e-6, carry_enhancement=carry)
    train = PulseTrain(60, 2e-6, 0.3e-6)
    tile = make(dev, train=train, um=True, seed=5, shape=(6, 5))
    rng = np.random.default_rng(0)
    x, d = rng.uniform(-1, 1, 5), rng.uniform(-1, 1, 6)
    lr = 0.6 * train.n * tile.dw_min
    ref = tile.state.copy()
    for u in range(2):
        ev = tile.trace_update(x, d, lr)
        assert ev.dtype == EVENT_DTYPE_CTF and len(ev) == tile.stats["pulses"] - (0 if u == 0 else n0)
        n0 = tile.stats["pulses"]
        times, signs = _events_to_pulses(ev, (6, 5), u * train.duration)
        if not carry:
            ref = ref.replace(e=np.zeros((6, 5)))
        before = ref.vt.copy()
        ref = dev.apply_pulses(ref, times, train.pw, signs)
        np.testing.assert_allclose(tile.state.vt, ref.vt, rtol=0, atol=1e-13)
        pulsed = np.zeros((6, 5), dtype=bool)
        pulsed[ev["col"], ev["row"]] = True
        # state.e is the enhancement at the end of a cell's last pulse (ignored by the next update
        # without carry); compare it where this update pulsed
        np.testing.assert_allclose(tile.state.e[pulsed], ref.e[pulsed], rtol=0, atol=1e-13)
        if carry:
            np.testing.assert_allclose(tile.state.e, ref.e, rtol=0, atol=1e-13)
        # the events' own dV and dw add up to the cells' change
        dv = np.zeros((6, 5))
        np.add.at(dv, (ev["col"], ev["row"]), ev["dvt_V"])
        np.testing.assert_allclose(dv, ref.vt - before, atol=1e-12)
    assert np.any(ev["e0"] > 0.05)                                 # relaxation really exercised


def test_ctf_expected_equals_exact_mean_and_device_formula():
    """Expected mode = device.expected_train_dw (exactly); = mean of the exact mode (statistically;
    small updates at the window centre so that s hardly moves within a train)."""
    dev = CTFDevice(kappa_dtod=0.1, window_dtod=0.05, dv_std=0.1)
    lr = TRAIN.n * 0.001 * 0.8
    te = make(dev, mode="expected", seed=9)
    start = te.state.copy()
    te.update(X, D, lr)
    P = 0.8 * np.outer(np.abs(D), np.abs(X))
    ref = dev.expected_train_dw(start, P, -np.sign(np.outer(D, X)), TRAIN)
    np.testing.assert_allclose(te.weights - start.w, ref, rtol=1e-11, atol=1e-16)
    tx = make(dev, mode="exact", seed=9)                        # same seed: same d2d draws
    assert np.array_equal(tx.state.rate_scale, start.rate_scale)
    s = repeat(tx, X, D, lr, 3000, w0=start.w)
    bias_bound = 0.01 * np.abs(ref)                               # s frozen vs s following V_T
    assert np.all(np.abs(s.mean(0) - ref) <= Z * se_mean(s) + bias_bound + 1e-15)


@pytest.mark.parametrize("train", [PulseTrain(100, 5e-6, 1e-6), PulseTrain(100, 2e-6, 0.0)])
def test_ctf_gaussian_variance_matches_exact(train):
    """Gaussian mode's variance (second-moment recursion) equals the exact mode's, also for short
    pulses at zero gap where step sizes vary strongly with the random gaps."""
    dev = CTFDevice(**{**CTF_QUIET, "dv_std": 0.1})
    lr = train.n * dev.nominal_dw(train.pw) * 0.8
    reps = 3000
    ex = repeat(make(dev, mode="exact", train=train, seed=1), X, D, lr, reps)
    ga = repeat(make(dev, mode="gaussian", train=train, seed=2), X, D, lr, reps)
    live = np.abs(np.outer(D, X)) > 0
    ve, vg = ex.var(0)[live], ga.var(0)[live]
    # ratio of two independent sample variances: SE ~ sqrt(2 (kurt-ish) / R) each
    assert np.all(np.abs(ve / vg - 1) < Z * math.sqrt(2 * 2.0 / reps)), ve / vg
    assert np.all(np.abs(ga.mean(0) - ex.mean(0)) <= Z * np.sqrt((ex.var(0) + ga.var(0)) / reps) + 1e-15)


# -- reproducibility, API ----------------------------------------------------------------------

@pytest.mark.parametrize("device", [IdealDevice(dw_min_std=0.2), CTFDevice()])
@pytest.mark.parametrize("mode", ["exact", "gaussian"])
def test_same_seed_same_weights_different_seed_different(device, mode):
    rng = np.random.default_rng(0)
    xs, ds = rng.uniform(0, 1, (20, 3)), rng.normal(0, 0.1, (20, 4))
    out = []
    for seed in (1, 1, 2):
        t = make(device, mode=mode, um=True, seed=seed)
        for b in range(20):
            t.update(xs[b], ds[b], 0.05)
        out.append(t.get_weights())
    assert np.array_equal(out[0], out[1])
    assert not np.array_equal(out[0], out[2])


@pytest.mark.parametrize("device", [IdealDevice(dw_min_std=0.2), CTFDevice()])
def test_batch_equals_samples_in_order_and_trace_equals_update(device):
    rng = np.random.default_rng(1)
    xs, ds = rng.uniform(0, 1, (6, 3)), rng.normal(0, 0.1, (6, 4))
    a, b, c = (make(device, um=True, seed=3) for _ in range(3))
    a.update(xs, ds, 0.05)
    for k in range(6):
        b.update(xs[k], ds[k], 0.05)
        ev = c.trace_update(xs[k], ds[k], 0.05)
        assert ev.dtype == (EVENT_DTYPE_IDEAL if device.kind == "ideal" else EVENT_DTYPE_CTF)
    assert np.array_equal(a.weights, b.weights)
    assert np.array_equal(a.weights, c.weights)
    assert a.stats == b.stats == c.stats
    assert a.clock == pytest.approx(6 * TRAIN.duration)


def test_trace_events_content_ideal():
    t = make(IdealDevice(w_min=-5, w_max=5), um=True, seed=7)
    ev = t.trace_update(X, D, 0.05)
    assert len(ev) == t.stats["pulses"] > 0
    np.testing.assert_allclose(ev["time_s"], ev["slot"] * TRAIN.period)
    assert np.all(ev["sign"] == -np.sign(D[ev["col"]] * X[ev["row"]]))
    assert np.all(ev["col"] != 3)
    dw = np.zeros((4, 3))
    np.add.at(dw, (ev["col"], ev["row"]), ev["dw"])
    np.testing.assert_allclose(dw, t.weights, atol=1e-15)
    assert np.all(np.abs(ev["dw"]) == pytest.approx(t.dw_min))


def test_buffer_growth_gives_identical_result(monkeypatch):
    big = make(um=True, seed=5, shape=(30, 40))
    monkeypatch.setattr(bundle_mod, "INITIAL_CAPACITY", 4)
    small = make(um=True, seed=5, shape=(30, 40))
    assert small._bufs.cap_r == 4
    rng = np.random.default_rng(2)
    xs, ds = rng.uniform(0, 1, (5, 40)), rng.normal(0, 0.1, (5, 30))
    big.update(xs, ds, 0.1)
    small.update(xs, ds, 0.1)
    assert small._bufs.cap_r > 4 and small._bufs.cap_c > 4
    assert np.array_equal(big.weights, small.weights)


def test_weights_view_is_live_and_read_only():
    t = make(um=True)
    w = t.weights
    assert w.flags.c_contiguous and w.dtype == np.float64 and not w.flags.writeable
    t.update(X, D, 0.05)
    assert np.array_equal(w, t.weights) and np.any(w != 0)
    t.set_weights(np.full((4, 3), 7.0))                       # clipped to the window
    assert np.all(t.get_weights() == 1.0)
    c = make(CTFDevice(), um=True)
    c.set_weights(np.full((4, 3), 0.3))
    np.testing.assert_allclose(c.weights, 0.3)
    np.testing.assert_allclose(c.state.vt, c.device.vt_ref + 0.3 * c.device.v_unit)


def test_probability_clipping_with_update_management_is_counted():
    t = make(um=True)
    t.update(X, D, 1e4)                                       # even a full train is too little
    assert t.stats["clipped"] == 1
    assert np.all(np.abs(t.weights[:3]) > 0)


# -- bad input ----------------------------------------------------------------------------------

def test_bad_input_errors():
    with pytest.raises(CtfrpuError):
        PulseTrain(0, 5e-6, 1e-6)
    with pytest.raises(CtfrpuError):
        PulseTrain(10, 5e-6, -1e-6)
    t = make()
    w0 = t.get_weights()
    with pytest.raises(CtfrpuError, match="above 1 without update management"):
        t.update(X, D, 10 * TRAIN.n * t.dw_min)
    with pytest.raises(CtfrpuError, match="x contains NaN"):
        t.update(np.array([np.nan, 0, 0]), D, 0.01)
    with pytest.raises(CtfrpuError, match="d contains NaN or inf"):
        t.update(X, np.array([0, np.inf, 0, 0]), 0.01)
    with pytest.raises(CtfrpuError, match=r"sample 1"):     # whole batch checked first
        t.update(np.stack([X, X]), np.stack([D, [np.nan] * 4]), 0.01)
    assert np.array_equal(t.get_weights(), w0)               # nothing applied
    for bad_lr in (-0.1, float("nan"), float("inf"), "0.1"):
        with pytest.raises(CtfrpuError, match="lr"):
            t.update(X, D, bad_lr)
    with pytest.raises(CtfrpuError, match="shapes"):
        t.update(X[:2], D, 0.01)
    with pytest.raises(CtfrpuError, match="gain"):
        t.gain = 0.0
    with pytest.raises(CtfrpuError, match="NaN"):
        t.forward(np.array([np.nan, 0, 0]))
    with pytest.raises(CtfrpuError, match="shape"):
        t.backward(np.zeros(3))
    with pytest.raises(CtfrpuError, match="exact"):
        make(mode="expected").trace_update(X, D, 0.01)
    with pytest.raises(CtfrpuError, match="w0"):
        make(w0=np.zeros((3, 4)))
    with pytest.raises(CtfrpuError, match="device"):
        AnalogTile(2, 2, object(), TRAIN, UpdateConfig(), IOConfig(), np.random.default_rng(0))
    for mode in ("expected", "gaussian"):
        with pytest.raises(CtfrpuError, match="NaN"):
            make(CTFDevice(), mode=mode).update(X, np.array([0, np.nan, 0, 0]), 0.01)


# -- forward / backward --------------------------------------------------------------------------

def test_forward_backward_ideal_and_periphery():
    rng = np.random.default_rng(0)
    w0 = rng.uniform(-0.5, 0.5, (4, 3))
    t = make(w0=w0)
    x = rng.uniform(-1, 1, (5, 3))
    d = rng.uniform(-1, 1, (5, 4))
    np.testing.assert_allclose(t.forward(x), x @ w0.T)
    np.testing.assert_allclose(t.forward(x[0]), w0 @ x[0])
    np.testing.assert_allclose(t.backward(d), d @ w0)
    q = make(w0=w0, io=IOConfig(inp_res=0.25))
    alpha = np.abs(x).max(1, keepdims=True)
    xq = np.round(x / alpha / 0.25) * 0.25 * alpha
    np.testing.assert_allclose(q.forward(x), xq @ w0.T, atol=1e-15)
    o = make(w0=w0, io=IOConfig(out_res=0.1))
    y = o.forward(x) / alpha
    np.testing.assert_allclose(y, np.round(y / 0.1) * 0.1, atol=1e-12)
    nz = make(w0=w0, io=IOConfig(out_noise=0.05), seed=3)
    xs = np.tile(x[:1], (4000, 1))
    err = nz.forward(xs) - xs @ w0.T
    a = np.abs(x[0]).max()
    assert abs(err.std() - 0.05 * a) < Z * 0.05 * a / math.sqrt(2 * err.size)
    assert abs(err.mean()) < Z * 0.05 * a / math.sqrt(err.size)
