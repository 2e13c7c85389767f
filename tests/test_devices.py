"""Devices: the CTF closed form against the ODEs, the exact train mean against Monte Carlo, the
preset's three trends, program-time conservation of the ideal device, properties (hypothesis),
the numba path against the numpy path, and parameter validation."""

import dataclasses
import math
import tomllib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from ctfrpu.devices import CTFDevice, IdealDevice, PulseTrain, build_device
from ctfrpu.devices.ctf import PRESET_NAME, TIME_FIELDS, preset_path, pulse_math
from ctfrpu.devices.ctf_fast import apply_pulses_fast, train_dvt
from ctfrpu.errors import CtfrpuError
from ctfrpu.lab.response import noise_free, response

QUIET = dict(kappa_dtod=0.0, window_dtod=0.0, dv_std=0.0)


def _sat(dev, vt, sign):
    u = (vt - dev.vt_min) / (dev.vt_max - dev.vt_min)
    m = dev.bound_exponent
    return ((1 - u ** m) if sign > 0 else (1 - (1 - u) ** m)) / (1 - 0.5 ** m)


# -- closed form against the ODEs --------------------------------------------------------------------

@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("pw", [0.5e-6, 1.3e-6, 2e-6, 5e-6, 40e-6])
@pytest.mark.parametrize("e0", [0.0, 0.37, 0.95])
def test_closed_form_matches_ode_integration(sign, pw, e0):
    """One pulse: solve de/dt = (1-e)/tau_on, dV/dt = +/- kappa (1 + a e) s numerically (s held at
    its start value, nothing during t_d) and compare with pulse_math."""
    dev = CTFDevice(a_p=1.7, kappa_p=150.0, tau_on_p=2.5e-6, t_d_p=1.1e-6,
                    a_e=0.6, kappa_e=260.0, tau_on_e=4e-6, t_d_e=0.7e-6)
    vt0, kscale = 3.4, 0.9
    kappa, a, tau_on, t_d = ((dev.kappa_p, dev.a_p, dev.tau_on_p, dev.t_d_p) if sign > 0
                             else (dev.kappa_e, dev.a_e, dev.tau_on_e, dev.t_d_e))
    s = _sat(dev, vt0, sign)
    w = max(pw - t_d, 0.0)
    if w > 0:
        sol = solve_ivp(lambda t, y: [(1 - y[0]) / tau_on, sign * kappa * kscale * s * (1 + a * y[0])],
                        (0.0, w), [e0, vt0], method="DOP853", rtol=1e-12, atol=1e-15)
        e_ode, vt_ode = sol.y[0, -1], sol.y[1, -1]
    else:
        e_ode, vt_ode = e0, vt0
    vt, e = pulse_math(np.array([vt0]), np.array([e0]), pw, sign, kscale, dev.vt_min, dev.vt_max,
                       dev.kernel_params(), 0.0)
    assert e[0] == pytest.approx(e_ode, abs=1e-10)
    assert vt[0] - vt0 == pytest.approx(vt_ode - vt0, rel=1e-8, abs=1e-15)


@pytest.mark.parametrize("t_off", [0.0, 1e-6, 20e-6, 1e-3])
def test_relaxation_matches_ode(t_off):
    dev = CTFDevice()
    e0 = 0.8
    if t_off > 0:
        sol = solve_ivp(lambda t, y: [-y[0] / dev.tau_off], (0, t_off), [e0], rtol=1e-12, atol=1e-15)
        ref = sol.y[0, -1]
    else:
        ref = e0
    assert dev.relax(np.array([e0]), np.array([t_off]))[0] == pytest.approx(ref, rel=1e-8, abs=1e-14)


def test_long_pulse_limit_is_the_ideal_rate():
    dev = CTFDevice(**QUIET)
    pw = 5e-3                                   # >> tau_on, t_d
    vt, _ = pulse_math(np.array([dev.vt_ref]), np.array([0.0]), pw, 1.0, 1.0, dev.vt_min, dev.vt_max,
                       dev.kernel_params(), 0.0)
    ideal = dev.kappa_p * (1 + dev.a_p) * pw
    loss = dev.kappa_p * ((1 + dev.a_p) * dev.t_d_p + dev.a_p * dev.tau_on_p)   # asymptotic offset
    assert vt[0] - dev.vt_ref == pytest.approx(ideal - loss, rel=1e-9)


# -- exact train mean against Monte Carlo -------------------------------------------------------------

@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_expected_train_dvt_matches_monte_carlo(sign):
    """Cells with Bernoulli(P) slot patterns; mean dV_T within 4 standard errors of the exact mean."""
    dev = CTFDevice(**QUIET)
    rng = np.random.default_rng(12345)
    n_cells, n_slots, pw = 6000, 16, 3e-6
    vt0 = dev.vt_min + (0.3 if sign > 0 else 0.7) * (dev.vt_max - dev.vt_min)   # where s is nearly flat
    for prob in (0.15, 0.5, 0.9):
        for gap in (0.5e-6, 10e-6, 200e-6):
            train = PulseTrain(n_slots, pw, gap)
            state = dev.init_state((n_cells,), rng)
            state = state.replace(vt=np.full(n_cells, vt0), w=np.full(n_cells, (vt0 - dev.vt_ref) / dev.v_unit))
            fires = rng.random((n_cells, n_slots)) < prob
            out = dev.apply_pulses(state, train.slot_times(), pw, sign * fires)
            dv = out.vt - vt0
            exact = float(dev.expected_train_dvt(np.array(vt0), prob, np.array(sign), train))
            se = dv.std(ddof=1) / math.sqrt(n_cells)
            assert abs(dv.mean() - exact) < 4 * se + 1e-9 * abs(exact), (prob, gap, dv.mean(), exact, se)


def test_expected_train_deterministic_case_and_efficiency():
    """P = 1: the expected mean is the deterministic train (s frozen: tiny shift at the centre)."""
    dev = CTFDevice(**QUIET)
    for n, pw, gap in [(1, 100e-6, 0.0), (20, 5e-6, 1e-6), (50, 2e-6, 100e-6)]:
        train = PulseTrain(n, pw, gap)
        exact = float(dev.expected_train_dvt(np.array(dev.vt_ref), 1.0, np.array(1.0), train))
        dv, _ = train_dvt(dev, pw, n, gap)
        assert float(dv) == pytest.approx(exact, rel=2e-3)
        r = float(dev.program_efficiency(1.0, train))
        assert r == pytest.approx(exact / (n * dev.kappa_p * (1 + dev.a_p) * pw), rel=1e-12)
        assert 0.0 <= r < 1.0


# -- the preset: defaults, file, trends ---------------------------------------------------------------

def test_defaults_equal_the_preset_file():
    path = preset_path()
    assert path.name == f"{PRESET_NAME}.toml"
    text = path.read_text()
    assert "our illustrative preset, not measured data" in text.splitlines()[0]
    params = tomllib.loads(text)["params"]
    default = CTFDevice()
    names = {f.name for f in dataclasses.fields(CTFDevice) if f.init}
    assert set(params) == names
    for k, v in params.items():
        assert getattr(default, k) == v, k
    assert build_device("ctf", path) == default


def test_preset_rate_matches_the_ideal_device():
    dev, ideal = CTFDevice(), IdealDevice()
    assert dev.kappa_p * (1 + dev.a_p) / dev.v_unit == pytest.approx(200.0)
    assert dev.nominal_dw(5e-6) == pytest.approx(0.001) == pytest.approx(ideal.nominal_dw(5e-6))


@pytest.fixture(scope="module")
def preset_response():
    return response(CTFDevice(), t_on=100e-6, gaps=(0.1e-6, 1e-6, 10e-6, 100e-6, 1e-3), pw_min=0.5e-6,
                    pw_max=100e-6, points=25)


def test_trend1_fragmentation_loss(preset_response):
    r = preset_response
    ratio = r.ratio
    assert np.all(ratio < 1.0) and np.all(ratio >= 0.0)
    assert np.all(np.diff(ratio, axis=1) >= -1e-12)          # shorter pulses never program more
    one_pulse = r.n == 1
    assert one_pulse.any() and np.all(ratio[:, one_pulse] > 0.95)
    j5 = int(np.argmin(abs(r.pw - 5e-6)))
    assert np.all(ratio[:, j5] < 0.8)                         # 20 pulses of 5 us lose > 20 %


def test_trend2_cliff_below_2us(preset_response):
    r = preset_response
    ratio = r.ratio
    assert np.all(ratio[:, r.pw <= CTFDevice().t_d_p] == 0.0)       # below the onset delay: nothing
    j2, j10 = int(np.argmin(abs(r.pw - 2e-6))), int(np.argmin(abs(r.pw - 10e-6)))
    assert np.all(ratio[:, j2] < 0.5 * ratio[:, j10])
    slope = np.diff(ratio, axis=1) / np.diff(np.log(r.pw))[None, :]   # steepest descent per e-fold of pw
    mid = np.sqrt(r.pw[1:] * r.pw[:-1])
    assert np.all((mid[np.argmax(slope, axis=1)] > 1e-6) & (mid[np.argmax(slope, axis=1)] < 3e-6))


def test_trend3_recovery_at_small_gaps(preset_response):
    r = preset_response
    ratio = r.ratio
    multi = (r.n >= 2) & (ratio[0] > 0)
    assert np.all(np.diff(ratio[:, multi], axis=0) <= 1e-12)      # larger gap never programs more
    j5 = int(np.argmin(abs(r.pw - 5e-6)))
    assert ratio[0, j5] - ratio[-1, j5] > 0.1                     # a 0.1 us gap recovers > 10 % of ideal


# -- ideal device ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("gap", [0.0, 1e-6, 1e-3])
def test_ideal_device_conserves_program_time(gap):
    dev = IdealDevice()
    t_on = 100e-6
    results = []
    for n in (1, 2, 5, 10, 37, 200):
        train = PulseTrain.from_on_time(n, t_on, gap)
        state = dev.init_state((3,), np.random.default_rng(0))
        out = dev.apply_pulses(state, train.slot_times(), train.pw, np.ones(n))
        results.append(out.w - state.w)
        exp = dev.expected_train_dw(state, 1.0, 1.0, train)
        np.testing.assert_allclose(exp, out.w - state.w, rtol=1e-12)
    for dw in results:
        np.testing.assert_allclose(dw, dev.rate * t_on, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.01, 1.0), min_size=1, max_size=12), st.floats(0.0, 1e-3))
def test_ideal_device_any_split(parts, gap):
    """Any split of the same ON time, any gaps: the same cumulative dw."""
    dev = IdealDevice()
    widths = np.array(parts) / sum(parts) * 50e-6
    times = np.concatenate([[0.0], np.cumsum(widths + gap)[:-1]])
    state = dev.init_state((1,), np.random.default_rng(0))
    out = dev.apply_pulses(state, times, widths, np.ones(widths.size))
    assert out.w[0] - state.w[0] == pytest.approx(dev.rate * 50e-6, rel=1e-10)


# -- properties (hypothesis) -----------------------------------------------------------------------------

ctf_params = st.fixed_dictionaries({
    "kappa_p": st.floats(1.0, 1e4), "a_p": st.floats(0.0, 20.0), "tau_on_p": st.floats(1e-8, 1e-3),
    "t_d_p": st.floats(0.0, 5e-6), "kappa_e": st.floats(1.0, 1e4), "a_e": st.floats(0.0, 20.0),
    "tau_on_e": st.floats(1e-8, 1e-3), "t_d_e": st.floats(0.0, 5e-6), "tau_off": st.floats(1e-8, 1e-1),
    "bound_exponent": st.floats(0.5, 20.0),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ctf_params, st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(1e-9, 1e-3), st.sampled_from([1.0, -1.0]),
       st.floats(0.0, 2.0), st.floats(-6.0, 6.0), st.floats(0.0, 0.5))
def test_pulse_math_properties(params, u, e0, pw, sign, kscale, xi, dv_std):
    dev = CTFDevice(dv_std=dv_std, **params)
    vt = dev.vt_min + u * (dev.vt_max - dev.vt_min)
    vt1, e1 = pulse_math(np.array([vt]), np.array([e0]), pw, sign, kscale, dev.vt_min, dev.vt_max,
                         dev.kernel_params(), xi)
    assert np.isfinite(vt1[0]) and np.isfinite(e1[0])
    assert 0.0 <= e1[0] <= 1.0 and e1[0] >= e0 - 1e-15         # e only builds up during a pulse
    assert dev.vt_min <= vt1[0] <= dev.vt_max
    assert (vt1[0] >= vt) if sign > 0 else (vt1[0] <= vt)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ctf_params, st.lists(st.tuples(st.floats(1e-9, 1e-4), st.floats(0.0, 1e-3)), min_size=1, max_size=15),
       st.sampled_from([1.0, -1.0]), st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
       st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4))
def test_apply_pulses_properties(params, pulses, sign, u0, e0):
    """Any widths, gaps, initial V_T in the window and e0: e in [0, 1], V_T monotonic in the pulse
    direction, weights in the window, no NaN; the numba path agrees."""
    dev = CTFDevice(**params)
    rng = np.random.default_rng(1)
    state = dev.init_state((4,), rng)
    vt = state.lo + np.array(u0) * (state.hi - state.lo)
    state = state.replace(vt=vt, w=(vt - dev.vt_ref) / dev.v_unit, e=np.array(e0))
    widths = np.array([p[0] for p in pulses])
    gaps = np.array([p[1] for p in pulses])
    times = np.concatenate([[0.0], np.cumsum(widths + gaps)[:-1]])
    prev = state
    for k in range(widths.size):                                  # one pulse at a time: monotonic
        nxt = dev.apply_pulses(prev, times[k:k + 1], widths[k:k + 1], np.array([sign]), rng)
        assert np.all(np.isfinite(nxt.vt)) and np.all(np.isfinite(nxt.e))
        assert np.all((nxt.e >= 0) & (nxt.e <= 1))
        assert np.all(nxt.vt >= prev.vt) if sign > 0 else np.all(nxt.vt <= prev.vt)
        assert np.all((nxt.vt >= nxt.lo) & (nxt.vt <= nxt.hi))
        w_lo, w_hi = (nxt.lo - dev.vt_ref) / dev.v_unit, (nxt.hi - dev.vt_ref) / dev.v_unit
        assert np.all((nxt.w >= w_lo - 1e-12) & (nxt.w <= w_hi + 1e-12))
        prev = nxt
    quiet = dataclasses.replace(dev, dv_std=0.0)
    a = quiet.apply_pulses(state, times, widths, np.full(widths.size, sign))
    b = apply_pulses_fast(quiet, state, times, widths, np.full(widths.size, sign))
    np.testing.assert_allclose(b.vt, a.vt, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.e, a.e, rtol=0, atol=1e-12)


# -- numba path, trains, validation ----------------------------------------------------------------------

def test_fast_path_matches_numpy_on_random_patterns():
    dev = CTFDevice(dv_std=0.0)
    rng = np.random.default_rng(7)
    state = dev.init_state((30, 20), rng)
    k = 25
    times = np.cumsum(rng.uniform(3e-6, 40e-6, size=(30, 20, k)), axis=-1)
    widths = rng.uniform(0.3e-6, 3e-6, size=(30, 20, k))   # < the smallest spacing: no overlap
    signs = rng.choice([-1, 0, 1], size=(30, 20, k))
    a = dev.apply_pulses(state, times, widths, signs)
    b = apply_pulses_fast(dev, state, times, widths, signs)
    for f in ("vt", "e", "t_last", "w"):
        np.testing.assert_allclose(getattr(b, f), getattr(a, f), rtol=1e-12, atol=1e-14)


def test_fast_path_noise_is_reproducible_and_unbiased():
    dev = CTFDevice()
    state = dev.init_state((20000,), np.random.default_rng(3))
    t = np.arange(10) * 6e-6
    a = apply_pulses_fast(dev, state, t, 5e-6, np.ones(10), np.random.default_rng(11))
    b = apply_pulses_fast(dev, state, t, 5e-6, np.ones(10), np.random.default_rng(11))
    np.testing.assert_array_equal(a.vt, b.vt)
    ref = dev.apply_pulses(state, t, 5e-6, np.ones(10), np.random.default_rng(12))
    da, dr = a.vt - state.vt, ref.vt - state.vt
    se = math.sqrt(da.var() / da.size + dr.var() / dr.size)
    assert abs(da.mean() - dr.mean()) < 4 * se
    assert da.std() == pytest.approx(dr.std(), rel=0.05)


def test_train_dvt_matches_apply_pulses():
    dev = noise_free(CTFDevice())
    for n, pw, gap, sign in [(1, 7e-6, 0.0, 1.0), (12, 2.5e-6, 0.3e-6, 1.0), (30, 4e-6, 15e-6, -1.0)]:
        state = dev.init_state((1,), np.random.default_rng(0))
        out = dev.apply_pulses(state, np.arange(n) * (pw + gap), pw, np.full(n, sign))
        dv, e = train_dvt(dev, pw, n, gap, sign)
        assert float(dv) == pytest.approx(out.vt[0] - state.vt[0], rel=1e-12, abs=1e-15)
        assert float(e) == pytest.approx(out.e[0], abs=1e-13)


def test_shared_train_on_many_cells_and_broadcast_errors():
    dev = CTFDevice()
    state = dev.init_state((200, 300), np.random.default_rng(0))
    out = dev.apply_pulses(state, np.arange(5) * 6e-6, 5e-6, np.ones(5))
    assert out.vt.shape == (200, 300) and np.all(out.vt > state.vt)
    with pytest.raises(CtfrpuError, match="do not broadcast"):
        dev.apply_pulses(state, np.zeros((7, 5)), 5e-6, np.ones(5))
    with pytest.raises(CtfrpuError, match="widths must be >= 0"):
        dev.apply_pulses(state, np.arange(3) * 6e-6, -1e-6, np.ones(3))
    with pytest.raises(CtfrpuError, match="signs"):
        apply_pulses_fast(dev, state, np.arange(3) * 6e-6, 1e-6, np.array([1, 2, 1]))


@pytest.mark.parametrize("apply", ["numpy", "numba"])
def test_overlap_detection_and_large_times(apply):
    dev = CTFDevice(dv_std=0.0)
    state = dev.init_state((2,), np.random.default_rng(0))
    f = dev.apply_pulses if apply == "numpy" else (lambda *a: apply_pulses_fast(dev, *a))
    with pytest.raises(CtfrpuError, match="before the previous one ended"):
        f(state, np.array([0.0, 3e-6]), 5e-6, np.ones(2))
    # back-to-back pulses (gap 0) far into a run: rounding must not look like an overlap
    t0 = 12345.678
    times = t0 + np.arange(50) * 1.1e-6
    out = f(state, times, 1.1e-6, np.ones(50))
    assert np.all(np.isfinite(out.vt))


def test_parameters_accept_units_and_reject_bad_types():
    assert CTFDevice(tau_off="20us").tau_off == pytest.approx(20e-6)
    assert build_device("ctf", params={"t_d_p": "1.2us"}).t_d_p == pytest.approx(1.2e-6)
    assert set(TIME_FIELDS) <= {f.name for f in dataclasses.fields(CTFDevice)}
    for bad in ({"kappa_p": "fast"}, {"kappa_p": True}, {"tau_off": "5 parsecs"}, {"kappa_p": math.nan},
                {"kappa_p": -1.0}, {"carry_enhancement": 1}, {"vt_ref": 9.0}, {"a_p": [1.0]}):
        with pytest.raises(CtfrpuError) as exc:
            CTFDevice(**bad)
        assert "\n" not in str(exc.value)
    for bad in ({"rate": "x"}, {"rate": 0.0}, {"w_min": 0.5}):
        with pytest.raises(CtfrpuError):
            IdealDevice(**bad)


@pytest.mark.parametrize("doc", [
    {"device": {"kind": "ctf"}, "pulses": {"n": 5000}},                              # pw 1 us < t_d 1.2 us
    {"device": {"kind": "ctf", "params": {"t_d_p": "2ms"}}, "pulses": {"n": 1000}},  # a unit slip: no program
    {"device": {"kind": "ctf", "params": {"t_d_e": "2ms"}}, "pulses": {"n": 1000},   # no erase, train timing
     "update": {"timing": "train"}},
])
def test_a_design_whose_pulses_change_nothing_is_refused(doc):
    """It would train only the digital biases, at chance level, and finish without complaint."""
    from ctfrpu.config import validate
    from ctfrpu.devices import check_run_physics

    cfg = validate(doc)
    with pytest.raises(CtfrpuError, match="changes nothing"):
        check_run_physics(cfg.device, cfg.pulses, cfg.update)
    ok = validate({**doc, "pulses": {"n": 100}})                                   # pw 50 us: both polarities act
    if "params" not in doc["device"]:
        assert check_run_physics(ok.device, ok.pulses, ok.update)[0] is not None
