"""Unit tests of the numba update kernels: generator, train drawing, bucketing, CTF pulse math,
train moments. Statistical checks use fixed seeds and tolerances of a few standard errors derived
from the sample size."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ctfrpu.devices import CTFDevice
from ctfrpu.devices.ctf import pulse_math
from ctfrpu.devices import ctf_update as ctfmath
from ctfrpu.devices import ctf_update as ke
from ctfrpu.devices.timing import TIMINGS
from ctfrpu.kernels import rng as krng
from ctfrpu.kernels import trains as kt

Z = 5.0   # standard errors allowed in statistical checks


# -- generator ---------------------------------------------------------------------------------

def test_rng_uniform_and_normal_moments():
    rs = krng.new_state()
    krng.seed(rs, 2024)
    n = 400_000
    u = np.empty(n)
    krng.fill_uniform(rs, u)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < Z * math.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < Z * math.sqrt((1 / 80 - 1 / 144) / n)
    z = np.empty(n)
    krng.fill_normal(rs, z)
    assert abs(z.mean()) < Z / math.sqrt(n)
    assert abs(z.var() - 1.0) < Z * math.sqrt(2.0 / n)
    assert abs(np.mean(z ** 4) - 3.0) < Z * math.sqrt(96.0 / n)
    # consecutive draws uncorrelated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < Z / math.sqrt(n)


def test_rng_same_seed_same_stream():
    out = []
    for s in (7, 7, 8):
        rs = krng.new_state()
        krng.seed(rs, s)
        a = np.empty(100)
        krng.fill_normal(rs, a)
        out.append(a)
    assert np.array_equal(out[0], out[1])
    assert not np.array_equal(out[0], out[2])


# -- trains ------------------------------------------------------------------------------------

def _draw(prob, m, smap, seed, cap=None):
    n = prob.size
    cap = (m + 1) * n if cap is None else cap
    ev_u = np.zeros(cap, dtype=np.int32)
    ev_s = np.zeros(cap, dtype=np.int32)
    rs = krng.new_state()
    krng.seed(rs, seed)
    nev = kt.draw_events(prob, m, smap, rs, np.zeros(n, dtype=np.int32), np.zeros(n, np.uint64), np.zeros(n), ev_u, ev_s)
    return nev, ev_u[:max(nev, 0)], ev_s[:max(nev, 0)]


@pytest.mark.parametrize("p", [0.003, 0.05, 0.2, 0.25, 0.4, 0.9, 1.0])
def test_draw_events_is_a_bernoulli_process(p):
    """Per-slot ON frequency p, count variance bl p (1 - p), adjacent slots independent --
    for both the geometric-skipping (p <= 0.25, lock step) and the slot-by-slot branch; each
    unit's events in increasing slot order."""
    bl, units = 50, 4000
    prob = np.full(units, p)
    prob[::7] = 0.0                                          # silent units in between
    live = prob > 0
    nev, ev_u, ev_s = _draw(prob, bl, np.arange(bl, dtype=np.int32), 99)
    assert nev >= 0 and np.all(live[ev_u])
    on = np.zeros((units, bl), dtype=bool)
    on[ev_u, ev_s] = True
    assert on.sum() == nev                                   # no slot twice
    order = np.argsort(ev_u, kind="stable")
    su, ss = ev_u[order], ev_s[order]
    assert np.all((np.diff(su) > 0) | (np.diff(ss) > 0))     # ascending slots per unit
    on = on[live]
    counts = on.sum(1)
    if p == 1.0:
        assert np.all(on)
        return
    m = on.shape[0]
    assert abs(counts.mean() - bl * p) < Z * math.sqrt(bl * p * (1 - p) / m)
    var = bl * p * (1 - p)
    mu4 = var * (1 + 3 * (bl - 2) * p * (1 - p))           # 4th central moment of a binomial
    assert abs(counts.var() - var) < Z * math.sqrt((mu4 - var ** 2) / m)
    freq = on.mean(0)                                        # every slot fires with probability p
    assert np.all(np.abs(freq - p) < (Z + 1) * math.sqrt(p * (1 - p) / m))
    both = (on[:, :-1] & on[:, 1:]).mean()                   # P(k and k+1) = p^2
    assert abs(both - p * p) < Z * math.sqrt(p * p * (1 - p * p) / (m * (bl - 1))) * 2


def test_draw_events_capacity_overflow_reported():
    assert _draw(np.full(10, 0.5), 100, np.arange(100, dtype=np.int32), 1, cap=20)[0] == -1
    assert _draw(np.full(10, 0.05), 100, np.arange(100, dtype=np.int32), 1, cap=3)[0] == -1


@pytest.mark.parametrize("p", [0.05, 0.6])
def test_draw_events_on_a_slot_subset(p):
    """Thinned drawing: only the listed slots can fire, each with probability p."""
    bl, units = 40, 5000
    subset = np.array([1, 2, 7, 20, 39], dtype=np.int32)
    nev, ev_u, ev_s = _draw(np.full(units, p), subset.size, subset, 5)
    assert np.all(np.isin(ev_s, subset))
    freq = np.bincount(ev_s, minlength=bl)[subset] / units
    assert np.all(np.abs(freq - p) < Z * math.sqrt(p * (1 - p) / units))
    mark = np.zeros(bl, dtype=np.int32)
    smap = np.zeros(bl, dtype=np.int32)
    m = kt.active_slots(nev, ev_s, bl, mark, smap)
    assert np.array_equal(smap[:m], subset)


def test_counting_sorts_match_numpy():
    rng = np.random.default_rng(3)
    units, bl, nev = 37, 60, 500
    ev_u = rng.integers(0, units, nev).astype(np.int32)
    ev_s = rng.integers(0, bl, nev).astype(np.int32)
    slot_ptr = np.zeros(bl + 1, dtype=np.int64)
    cursor = np.zeros(max(bl, units), dtype=np.int64)
    slot_units = np.zeros(nev, dtype=np.int32)
    kt.events_by_slot(nev, ev_u, ev_s, bl, slot_ptr, cursor, slot_units)
    for k in range(bl):
        assert np.array_equal(slot_units[slot_ptr[k]:slot_ptr[k + 1]], ev_u[ev_s == k])
    ptr = np.zeros(units + 1, dtype=np.int64)
    unit_slots = np.zeros(nev, dtype=np.int32)
    kt.events_by_unit(nev, ev_u, ev_s, units, ptr, cursor, unit_slots)
    for u in range(units):
        assert np.array_equal(unit_slots[ptr[u]:ptr[u + 1]], ev_s[ev_u == u])


def _segments(cells, bufs):
    """Every segment of the flat coincidence list, concatenated, and the segment lengths."""
    from ctfrpu.kernels import exact as kx
    got, sizes, t, j = [], [], 0, 0
    while True:
        n, t, j = kx.coincidences(cells, bufs.args, t, j)
        if n == 0:
            return got, sizes
        sizes.append(n)
        got += list(zip(bufs.pj[:n].tolist(), bufs.pk[:n].tolist(), bufs.pi[:n].tolist()))


@pytest.mark.parametrize("rows_per_slot", [1, 3, 9, None])
@pytest.mark.parametrize("small", [False, True])
def test_coincidence_list_matches_the_csr_walk(rows_per_slot, small):
    """The flat list copies LIST_UNROLL rows per column event unconditionally: it must still be the
    plain walk columns -> their slots -> the rows at each slot, also when a slot has more rows than
    that, and when the row buffer is filled to its capacity (the slack covers the reads past it).
    With a small pulse buffer (``small``) the list comes in several segments of whole column events
    that concatenate to the same walk."""
    from ctfrpu.kernels import bundle as kb
    from ctfrpu.kernels import exact as kx
    assert kb.ROW_SLACK >= kx.LIST_UNROLL
    rng = np.random.default_rng(rows_per_slot or 0)
    n_in, n_out, bl = 40, 7, 25
    bufs = kb.TrainBuffers(n_out, n_in, bl)
    assert bufs.cap_p >= n_in              # one column event always fits in a segment
    nr = bufs.cap_r if rows_per_slot is None else bl * rows_per_slot     # None: the buffer full
    ev_u = rng.integers(0, n_in, nr).astype(np.uint32)
    ev_s = np.sort(rng.integers(0, bl, nr)).astype(np.uint32)
    kt.events_by_slot(nr, ev_u, ev_s, bl, bufs.slot_ptr, bufs.slot_cursor, bufs.slot_rows)
    nc = 30
    cu = rng.integers(0, n_out, nc).astype(np.uint32)
    cs = rng.integers(0, bl, nc).astype(np.uint32)
    order = np.lexsort((cs, cu))
    cu, cs = cu[order], cs[order]
    kt.events_by_unit(nc, cu, cs, n_out, bufs.col_ptr, np.zeros(n_out + 1, np.int32), bufs.col_slots)
    cells = np.zeros((n_out, n_in, 8))
    want = [(int(j), int(k), int(i)) for j, k in zip(cu, cs)
            for i in bufs.slot_rows[bufs.slot_ptr[k]:bufs.slot_ptr[k + 1]]]
    assert len(want) > 0
    cap = int(np.diff(bufs.slot_ptr).max()) + 1 if small else bufs.cap_p
    if small:                              # the smallest buffer the invariant allows
        for name in ("pj", "pk", "pi"):
            setattr(bufs, name, np.zeros(cap + kb.ROW_SLACK, np.uint32))
        bufs._pack()
    got, sizes = _segments(cells, bufs)
    assert got == want
    assert max(sizes) <= cap
    assert (len(sizes) > 1) == (small and len(want) > cap)


def test_prepare_gains_update_and_bl_management():
    x = np.array([0.5, -0.25, 0.0])
    d = np.array([0.02, -0.1])
    p, q, sx, sd = np.zeros(3), np.zeros(2), np.zeros(3), np.zeros(2)
    lrg, dw_min, n = 0.01, 0.001, 1000
    ab = lrg / (n * dw_min)
    bl, work, clipped = kt.prepare(x, d, lrg, dw_min, n, True, False, p, q, sx, sd)
    gamma = math.sqrt(0.1 / 0.5)
    assert bl == n and work and not clipped
    np.testing.assert_allclose(p, math.sqrt(ab) * gamma * np.abs(x), rtol=1e-14)
    np.testing.assert_allclose(q, math.sqrt(ab) / gamma * np.abs(d), rtol=1e-14)
    assert list(sx) == [1, -1, 0] and list(sd) == [-1, 1]          # cell sign = -sign(x d)
    # without update management: A = B = sqrt(AB)
    kt.prepare(x, d, lrg, dw_min, n, False, False, p, q, sx, sd)
    np.testing.assert_allclose(p, math.sqrt(ab) * np.abs(x), rtol=1e-14)
    # BL management: BL = ceil(lr max|x| max|d| / dw_min) = ceil(0.05) = 1; the mean N-independent
    bl, _, _ = kt.prepare(x, d, lrg, dw_min, n, True, True, p, q, sx, sd)
    assert bl == math.ceil(lrg * 0.5 * 0.1 / dw_min) == 1
    assert math.isclose(bl * p[0] * q[1], lrg * 0.5 * 0.1 / dw_min, rel_tol=1e-12)
    bl, _, _ = kt.prepare(x, d, 2.0, dw_min, n, True, True, p, q, sx, sd)
    assert bl == 100
    bl, _, _ = kt.prepare(x, d, 1e6, dw_min, n, True, True, p, q, sx, sd)   # capped at N, then clipped
    assert bl == n
    # clipping reported with update management, refused without
    assert kt.prepare(x, d, 1e6, dw_min, n, True, False, p, q, sx, sd)[2]
    assert p.max() == 1.0
    st, pm, qm = kt.check_sample(x, d, 1e6, dw_min, n, False, False)
    assert st == kt.ST_PROB and pm > 1
    assert kt.check_sample(np.array([np.nan, 0, 0]), d, lrg, dw_min, n, True, False)[0] == kt.ST_BAD_X
    assert kt.check_sample(x, np.array([0, np.inf]), lrg, dw_min, n, True, False)[0] == kt.ST_BAD_D


# -- CTF pulse math ----------------------------------------------------------------------------

@pytest.mark.parametrize("m", [6.0, 2.5])
@pytest.mark.parametrize("pw", [5e-6, 0.7e-6, 40e-6])
def test_specialised_pulse_equals_device_closed_form(m, pw):
    dev = CTFDevice(bound_exponent=m, dv_std=0.2, a_e=0.5, tau_on_e=4e-6, t_d_e=0.9e-6, kappa_e=150.0)
    prm = dev.kernel_params()
    cst = ctfmath.sign_consts(dev, pw)
    mi = ctfmath.int_exponent(m)
    rng = np.random.default_rng(5)
    n = 2000
    lo = dev.vt_min + rng.uniform(-0.1, 0.1, n)
    hi = dev.vt_max + rng.uniform(-0.1, 0.1, n)
    vt = rng.uniform(lo - 0.05, hi + 0.05)            # also outside the window (u clipped)
    vt[:20] = hi[:20]
    vt[20:40] = lo[20:40]
    e0 = rng.uniform(0, 1, n)
    sign = rng.choice([-1.0, 1.0], n)
    ks = rng.uniform(0.5, 1.5, n)
    xi = rng.normal(0, 3, n)                           # large: exercises the max(0, .) of the noise
    vt_ref, e_ref = pulse_math(vt, e0, pw, sign, ks, lo, hi, prm, xi)
    vt_out, e_out = np.empty(n), np.empty(n)
    ctfmath.pulse_vec(vt, e0, sign, ks, lo, hi, cst, mi, xi, vt_out, e_out)
    np.testing.assert_allclose(vt_out, vt_ref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(e_out, e_ref, rtol=0, atol=1e-14)


def test_train_moments_by_enumeration():
    """ctf_unit_moments (second-moment recursion) equals brute-force enumeration of all fire
    patterns of a short train (no cycle-to-cycle noise), and var_eta adds sum E[step^2] var_eta."""
    a, b, c, d_gap, d_t, pp, bl = 0.7, 0.9, 0.4, 0.8, 0.6, 0.35, 6
    mean = second = 0.0
    sq_steps = 0.0
    for pattern in itertools.product([0, 1], repeat=bl):
        prob = np.prod([pp if f else 1 - pp for f in pattern])
        e, s, s2 = 0.0, 0.0, 0.0
        for f in pattern:
            if f:
                step = a + b * e
                s += step
                s2 += step * step
                e = (1 - (1 - e) * c) * d_gap
            else:
                e *= d_t
        mean += prob * s
        second += prob * s * s
        sq_steps += prob * s2
    m, v = ke.ctf_unit_moments(pp, bl, a, b, c, d_gap, d_t, 0.0)
    assert math.isclose(m, mean, rel_tol=1e-12)
    assert math.isclose(v, second - mean ** 2, rel_tol=1e-10)
    _, v2 = ke.ctf_unit_moments(pp, bl, a, b, c, d_gap, d_t, 0.04)
    assert math.isclose(v2, second - mean ** 2 + 0.04 * sq_steps, rel_tol=1e-10)
    # b = 0: the ideal device's binomial variance
    _, v3 = ke.ctf_unit_moments(pp, 40, 1.0, 0.0, c, d_gap, d_t, 0.01)
    assert math.isclose(v3, 40 * pp * (1 - pp + 0.01), rel_tol=1e-12)


def test_ctf_mean_kernel_matches_device_expected_train_dvt():
    from ctfrpu.devices import PulseTrain
    dev = CTFDevice(a_e=0.5, tau_on_e=4e-6)
    rng = np.random.default_rng(8)
    n = 300
    vt = rng.uniform(1.5, 4.5, n)
    prob = rng.uniform(0, 1, n)
    sign = rng.choice([-1.0, 1.0], n)
    ks = rng.uniform(0.8, 1.2, n)
    for train, tname in itertools.product((PulseTrain(100, 3e-6, 1e-6), PulseTrain(7, 40e-6, 0.0)), TIMINGS):
        tm = TIMINGS[tname]
        ref = dev.expected_train_dvt(vt, prob, sign, train, ks, dev.vt_min, dev.vt_max, timing=tm)
        tt = dev.timing_tables(train, tm)
        cst = ctfmath.sign_consts(dev, train.pw, tt, fold=True)
        got = [ke.ctf_mean_dvt(prob[i], train.n, sign[i], vt[i], ks[i], dev.vt_min, dev.vt_max, cst,
                               ctfmath.int_exponent(dev.bound_exponent)) for i in range(n)]
        np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-15)
        if tname != "slot":
            continue
        dg, dt = tt.d_gap, tt.d_t
        # and the recursion's mean agrees with the closed form (unit step, s = 1)
        m, _ = ke.ctf_unit_moments(0.3, train.n, cst[1], cst[2], cst[3], dg, dt, 0.0)
        ref1 = dev.expected_train_dvt(np.array([dev.vt_ref]), np.array([0.3]), np.array([1.0]), train)
        s_mid = 1.0
        assert math.isclose(dev.kappa_p * s_mid * m, float(ref1[0]), rel_tol=1e-10)


def test_unit_mean_without_build_up_term_keeps_the_bits():
    """ctf_unit_mean skips alpha^bl when aq == 0 (timings that fold e into lin, e.g. 'train'):
    the general formula's aq * sum_m is then a signed zero, so the result must be bit-equal."""
    import math

    from ctfrpu.devices.ctf_update import ctf_unit_mean

    def general(pp, bl, lin, aq, c, d_gap, d_t):
        alpha = pp * c * d_gap + (1.0 - pp) * d_t
        one_m = 1.0 - alpha
        sum_m = 0.0
        if one_m > 1e-12:
            inv = 1.0 / one_m
            m_star = pp * (1.0 - c) * d_gap * inv
            a_bl = 0.0 if alpha <= 0.0 else math.exp(bl * math.log(alpha))
            sum_m = m_star * (bl - (1.0 - a_bl) * inv)
        return pp * (bl * lin + aq * sum_m)

    rng = np.random.default_rng(7)
    for _ in range(2000):
        pp = float(rng.choice([0.0, 1.0, rng.uniform(), 10 ** rng.uniform(-300, 0)]))
        bl, lin = int(rng.integers(1, 5000)), float(rng.normal() * 10 ** rng.uniform(-6, 2))
        c, d_gap, d_t = (float(v) for v in rng.uniform(0, 1, 3))
        got = ctf_unit_mean(pp, bl, lin, 0.0, c, d_gap, d_t, False)
        want = general(pp, bl, lin, 0.0, c, d_gap, d_t)
        assert got == want and math.copysign(1, got) == math.copysign(1, want), (pp, bl, lin, c, d_gap, d_t)
        # and the general branch (aq != 0) is the formula above
        aq = float(rng.normal())
        assert ctf_unit_mean(pp, bl, lin, aq, c, d_gap, d_t, False) == pytest.approx(
            general(pp, bl, lin, aq, c, d_gap, d_t), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("kind", ["ctf", "ideal", "softbounds"])
def test_segmented_pulse_list_gives_the_same_update(kind, monkeypatch):
    """A sample with more coincidences than the pulse buffer holds is applied segment by segment:
    the same pulses in the same order with the same normals, so the same weights and records, bit
    for bit, as with one segment (and the same coincidence count)."""
    from ctfrpu.config import IOConfig, UpdateConfig
    from ctfrpu.devices import CTFDevice, IdealDevice, PulseTrain
    from ctfrpu.devices.softbounds import SoftBoundsDevice
    from ctfrpu.kernels import bundle as kb
    from ctfrpu.tile import AnalogTile
    device = {"ctf": CTFDevice(), "ideal": IdealDevice(rate=3000.0, dw_min_std=0.3),
              "softbounds": SoftBoundsDevice()}[kind]
    train = PulseTrain.from_on_time(300, 5e-3, 1e-6)
    rng = np.random.default_rng(5)
    X = rng.uniform(0.2, 1.0, (6, 40))
    D = rng.normal(0.0, 1.0, (6, 12))
    out = []
    for cap in (kb.PULSE_CAPACITY, 1):          # 1: segments of one column event (cap_p = in_size)
        monkeypatch.setattr(kb, "PULSE_CAPACITY", cap)
        tile = AnalogTile(12, 40, device, train, UpdateConfig(mode="exact"), IOConfig(), np.random.default_rng(0))
        assert tile._bufs.cap_p == max(cap, 40)
        for x, d in zip(X, D):
            tile.update(x, d, 0.5)
        out.append((tile._w.copy(), tile._cells.copy(), tile.stats["pulses"]))
    (w0, c0, n0), (w1, c1, n1) = out
    assert n0 == n1 and n0 > 40 * 6            # many segments per sample at cap 1
    assert np.array_equal(w0, w1) and np.array_equal(c0, c1)
