"""The CTF device's update kernels (numba) and its per-design plan -- OUR model (docs/science.md §4).

The pulse closed form of :class:`~ctfrpu.devices.ctf.CTFDevice` specialised for the update: within
one update the pulse width is fixed, so per polarity the constants are precomputed once per design
(:func:`sign_consts`, from :meth:`CTFDevice.pulse_constants` -- the one place they are computed)::

    w = max(pw - t_d, 0),  c = exp(-w / tau_on),  lin = (1 + a) w - a tau_on (1 - c),  aq = a tau_on (1 - c)
    dV = sign kappa kscale s(V_T) (lin + aq e0) max(0, 1 + dv_std xi),   e1 = 1 - (1 - e0) c

which is the device's ``(1 + a) w - a tau_on (1 - e0)(1 - c)`` rearranged; the saturation power u^m
is evaluated by repeated squaring when m is an integer. ``tests/test_kernels.py`` checks
:func:`pulse` against the device's ``pulse_math`` to rounding error.

Where a pulse starts in time (and so the enhancement e0 it starts from) is the timing model's
(:mod:`ctfrpu.devices.timing`): e0 = e_prev tab[0, g] + tab[1 + pol, g]. The expected and Gaussian
modes use the per-slot recursions with the timing's relaxation factors (d_gap, d_T).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..errors import CtfrpuError
from ..kernels import exact as kx
from ..kernels import rng as _rng
from ..kernels.bundle import B_COLS_IDX, B_P, B_PI, B_PJ, B_PK, B_Q, B_ROWS_IDX, B_RS, B_SD, B_SX, B_Z
from ..kernels.cells import C_E, C_HI, C_KS, C_LO, C_TLAST, C_VT
from ..kernels.expected import VAR_GRID, active_either, active_units, interp_table
from ..kernels.trains import ST_OK, check_batch, prepare
from .timing import TimingTables

N_CONSTS = 13
(C_KAP_P, C_LIN_P, C_AQ_P, C_C_P, C_KAP_E, C_LIN_E, C_AQ_E, C_C_E, C_M, C_NORM, C_DVSTD, C_DGAP,
 C_DT) = range(N_CONSTS)


def sign_consts(device, pw: float, timing: TimingTables | None = None, fold: bool = False) -> np.ndarray:
    """Per-design constants for :func:`pulse` (float64[N_CONSTS]) from the device's
    :meth:`~ctfrpu.devices.ctf.CTFDevice.pulse_constants`; d_gap, d_T from the timing model
    (0 without one). ``fold``: the mean/variance form (the timing's constant e folded into lin)."""
    out = np.zeros(N_CONSTS)
    for pol, o in ((0, C_KAP_P), (1, C_KAP_E)):
        kappa, lin, aq, c = device.pulse_constants(pw, 1.0 if pol == 0 else -1.0)
        if fold and timing is not None:
            lin, aq = timing.fold(lin, aq, pol)
        out[o:o + 4] = kappa, lin, aq, c
    m = float(device.bound_exponent)
    out[C_M] = m
    out[C_NORM] = 1.0 - 0.5 ** m
    out[C_DVSTD] = device.dv_std
    if timing is not None:
        out[C_DGAP] = timing.d_gap
        out[C_DT] = timing.d_t
    return out


def int_exponent(m: float) -> int:
    """m as an int when it is a small positive integer (fast power), else 0 (use float pow)."""
    return int(m) if float(m).is_integer() and 1 <= m <= 64 else 0


@numba.njit(cache=True, inline="always")
def ipow(b, k):
    r = 1.0
    while k > 0:
        if k & 1:
            r *= b
        b *= b
        k >>= 1
    return r


@numba.njit(cache=True, inline="always")
def pow_m(base, mi, m):
    """base ** m; by multiplications for the common integer exponents."""
    if mi == 6:
        b2 = base * base
        return b2 * b2 * b2
    if mi > 0:
        return ipow(base, mi)
    return base ** m


@numba.njit(cache=True, inline="always")
def sign_offset(sign):
    """Offset of a pulse's polarity in :func:`sign_consts` (0 program, 4 erase), unsigned and
    branch-free: the kernels load the four constants at it (selecting them with conditionals made
    the compiler branch on the sign, which is unpredictable when signs mix within a column)."""
    return np.uint64(4) if sign <= 0 else np.uint64(0)


@numba.njit(cache=True, inline="always")
def pulse_s(vt, e0, sign, kscale, lo, hi, kap, lin, aq, c, mi, m, inv_norm, dv_std, xi):
    """One pulse (sign +1 program / -1 erase) -> (vt_new, e_new); kap, lin, aq, c are the sign's
    constants (``cst[sign_offset(sign):][:4]``), the others hoisted out of the kernels' loops."""
    u = min(max((vt - lo) / (hi - lo), 0.0), 1.0)
    base = 0.5 * (1.0 - sign) + sign * u  # u for program, 1 - u for erase
    sat = (1.0 - pow_m(base, mi, m)) * inv_norm
    noise = max(1.0 + dv_std * xi, 0.0)
    vt_new = min(max(vt + sign * kap * kscale * sat * (lin + aq * e0) * noise, lo), hi)
    return vt_new, 1.0 - (1.0 - e0) * c


@numba.njit(cache=True, inline="always")
def pulse(vt, e0, sign, kscale, lo, hi, cst, mi, xi):
    """:func:`pulse_s` with the constants of :func:`sign_consts`."""
    o = sign_offset(sign)
    return pulse_s(vt, e0, sign, kscale, lo, hi, cst[o], cst[o + 1], cst[o + 2], cst[o + 3], mi, cst[8],
                   1.0 / cst[9], cst[10], xi)


@numba.njit(cache=True)
def pulse_vec(vt, e0, sign, kscale, lo, hi, cst, mi, xi, vt_out, e_out):
    """Test helper: :func:`pulse` over arrays."""
    for i in range(vt.size):
        vt_out[i], e_out[i] = pulse(vt[i], e0[i], sign[i], kscale[i], lo[i], hi[i], cst, mi, xi[i])


# ----------------------------------------------------------------------------- exact mode


@numba.njit(cache=True, error_model="numpy", **kx.NO_NRT)
def apply(w, cells, dev, bufs, t0, rec, out):
    """One CTF pulse per coincidence of the drawn sample, each cell's pulses in time order; returns
    the number applied. cells[j, i] = (vt, e, t_last, kscale, lo, hi, -, -) (:mod:`ctfrpu.kernels.cells`).

    Timing (``dev`` from :class:`CTFPlan`): a pulse's position is its slot k (``by_slot``) or its
    rank among the cell's pulses of this update; it starts at t0 + position * period from
    e0 = e_prev tab[0, g] + tab[1 + pol, g], g = positions since the cell's previous pulse of the
    update (g = 0 and e_prev = 0 for its first one, or with ``carry`` the stored e relaxed since its
    stored t_last). Whether a cell was already pulsed in this update is tracked per row with a stamp
    unique per (sample, column): no O(cells) reset per update. With ``rec`` the events go to ``out``.
    """
    cst, mi, tab, pw, period, carry, by_slot, tau_off, vt_ref, v_unit, last_row, stamp_row, stamp_counter = dev
    sx, sd, pj, pk, pi, z = bufs[B_SX], bufs[B_SD], bufs[B_PJ], bufs[B_PK], bufs[B_PI], bufs[B_Z]
    r_row, r_col, r_slot, r_sign, r_dw, r_dvt, r_e0 = out
    n_out = w.shape[0]
    m = cst[C_M]
    inv_norm = 1.0 / cst[C_NORM]
    dv_std = cst[C_DVSTD]
    inv_unit = 1.0 / v_unit
    stamp_base = stamp_counter[0]
    done, t, jc = 0, 0, 0
    while True:
        n_p, t, jc = kx.coincidences(cells, bufs, t, jc)
        if n_p == 0:
            break
        kx.pulse_normals(dv_std > 0.0, n_p, bufs)
        for cnt in range(n_p):
            j = pj[cnt]
            k = pk[cnt]
            i = pi[cnt]
            kx.prefetch_ahead(cells, w, pj, pi, cnt, n_p)
            stamp = stamp_base + j
            s = sx[i] * sd[j]
            o = sign_offset(s)                      # 0 program, 4 erase (unsigned: no negative-index wraparound)
            pol = np.uint64(1) + (o >> np.uint64(2))   # its timing-table row: 1 program, 2 erase
            cell = cells[j, i]
            prev = last_row[i]
            same = stamp_row[i] == stamp            # cell already pulsed in this update
            # Branch-free in `same` (true for half the pulses of a 10 x 128 layer, unpredictable):
            # 0/1 factors instead of conditionals; e_prev * tab * 0.0 + tab is exactly tab (e, tab >= 0).
            us = np.uint64(same)
            pos = np.uint64(k) if by_slot else (np.uint64(prev) + np.uint64(1)) * us
            g = (pos - np.uint64(prev)) * us
            tstart = t0 + pos * period
            e0 = cell[C_E] * tab[0, g] * np.float64(us) + tab[pol, g]
            if carry and not same:
                e0 = cell[C_E] * math.exp(-(tstart - cell[C_TLAST]) / tau_off) + tab[pol, 0]
            xi = z[cnt] if dv_std > 0.0 else 0.0
            old = cell[C_VT]
            vt_new, e_new = pulse_s(old, e0, s, cell[C_KS], cell[C_LO], cell[C_HI], cst[o], cst[o + 1], cst[o + 2],
                                    cst[o + 3], mi, m, inv_norm, dv_std, xi)
            cell[C_VT] = vt_new
            cell[C_E] = e_new
            cell[C_TLAST] = tstart + pw
            nw = (vt_new - vt_ref) * inv_unit
            if rec:
                r = done + cnt
                r_row[r] = i
                r_col[r] = j
                r_slot[r] = k
                r_sign[r] = s
                r_dw[r] = nw - w[j, i]
                r_dvt[r] = vt_new - old
                r_e0[r] = e0
            w[j, i] = nw
            stamp_row[i] = stamp
            last_row[i] = pos
        done += n_p
    stamp_counter[0] += n_out
    return done


@numba.njit(cache=True, **kx.NO_NRT)
def update_exact(X, D, ctl, w, cells, dev, bufs, stats):
    """Samples ctl.start..B-1 of a batch in order (sample b: stream counter + b, train starting at
    t_start + b t_step); returns (status, sample). With start = 0 the batch is validated first.
    ST_CAP_*: grow the buffers and call again from that sample (its stream is recreated)."""
    st, bad = kx.check_start(X, D, ctl)
    if st != ST_OK:
        return st, bad
    start, t_start, t_step = ctl[2], ctl[8], ctl[9]
    out = kx.no_record(bufs)
    for b in range(start, X.shape[0]):
        st, bl, clipped, er, ec = kx.draw_sample(X[b], D[b], ctl, b, bufs)
        if st != ST_OK:
            return st, b
        stats[kx.S_UPDATES] += 1
        if bl == 0:
            continue
        cnt = apply(w, cells, dev, bufs, t_start + b * t_step, False, out)
        kx.account(stats, cnt, er, ec, clipped)
    return ST_OK, X.shape[0]


# ----------------------------------------------------------------------- expected / Gaussian


@numba.njit(cache=True, inline="always")
def ctf_unit_mean(pp, bl, lin, aq, c, d_gap, d_t, tiny):
    """E[sum over fired slots of (lin + aq e_k)] for a train of bl slots firing with probability pp,
    e = 0 at the start (the closed form of ``CTFDevice.expected_train_dvt`` without kappa s).
    ``tiny``: alpha^bl underflows to 0.0 for every pp (see :func:`pow_underflows`), skip it.
    ``aq == 0`` (a timing model that folds e into lin, e.g. 'train'): the build-up term is exactly
    zero, so its exp/log are skipped -- the same bits (aq * sum_m is a signed zero, sum_m finite)."""
    if aq == 0.0:
        return pp * (bl * lin + 0.0)
    alpha = pp * c * d_gap + (1.0 - pp) * d_t
    one_m = 1.0 - alpha
    if one_m > 1e-12:
        inv = 1.0 / one_m
        m_star = pp * (1.0 - c) * d_gap * inv
        a_bl = 0.0 if (tiny or alpha <= 0.0) else math.exp(bl * math.log(alpha))
        sum_m = m_star * (bl - (1.0 - a_bl) * inv)
    else:
        sum_m = 0.0
    return pp * (bl * lin + aq * sum_m)


@numba.njit(cache=True)
def pow_underflows(bl, c, d_gap, d_t):
    """True if alpha^bl is exactly 0.0 in double precision for every P in [0, 1]: alpha is linear in
    P, so its maximum is max(c d_gap, d_t), and exp(x) is 0.0 below x = -745.2."""
    amax = max(c * d_gap, d_t)
    return amax <= 0.0 or bl * math.log(amax) < -746.0


@numba.njit(cache=True, inline="always")
def saturation(vt, lo, hi, sign, mi, m, inv_norm):
    """s(V_T) of the device (program: (1 - u^m) / norm, erase: (1 - (1 - u)^m) / norm)."""
    u = min(max((vt - lo) / (hi - lo), 0.0), 1.0)
    base = 0.5 * (1.0 - sign) + sign * u
    return (1.0 - pow_m(base, mi, m)) * inv_norm


@numba.njit(cache=True)
def ctf_mean_dvt(pp, bl, sign, vt, kscale, lo, hi, cst, mi):
    """Exact mean dV_T of one train of bl slots, each firing with probability pp (e = 0 at the start,
    s frozen at the start): the closed form of ``CTFDevice.expected_train_dvt``; ``cst`` from
    :func:`sign_consts` (folded form)."""
    o = 0 if sign > 0 else 4
    unit = ctf_unit_mean(pp, bl, cst[o + 1], cst[o + 2], cst[o + 3], cst[C_DGAP], cst[C_DT], False)
    return sign * cst[o] * kscale * saturation(vt, lo, hi, sign, mi, cst[C_M], 1.0 / cst[C_NORM]) * unit


@numba.njit(cache=True)
def ctf_unit_moments(pp, bl, a, b, c, d_gap, d_t, var_eta):
    """(E[S], Var[S]) of S = sum_k F_k (a + b e_k) eta_k over bl slots, F_k ~ Bernoulli(pp), e = 0 at
    the start; after a fired slot e <- (1 - (1 - e) c) d_gap, after an idle one e <- e d_t;
    E[eta] = 1, Var[eta] = var_eta. Exact second-moment recursion, O(bl)."""
    g = (1.0 - c) * d_gap
    h = c * d_gap
    r = d_t
    q1 = 1.0 - pp
    me = 0.0
    mee = 0.0
    ms = 0.0
    mse = 0.0
    mss = 0.0
    for _ in range(bl):
        abe = a + b * me
        n_ss = mss + 2.0 * pp * (a * ms + b * mse) + pp * (1.0 + var_eta) * (a * a + 2.0 * a * b * me + b * b * mee)
        n_se = pp * (g * ms + h * mse + g * abe + h * (a * me + b * mee)) + q1 * r * mse
        n_s = ms + pp * abe
        n_ee = pp * (g * g + 2.0 * g * h * me + h * h * mee) + q1 * r * r * mee
        n_e = pp * (g + h * me) + q1 * r * me
        mss = n_ss
        mse = n_se
        ms = n_s
        mee = n_ee
        me = n_e
    return ms, max(mss - ms * ms, 0.0)


@numba.njit(cache=True)
def ctf_var_table(cst, bl):
    """Var[S] (see :func:`ctf_unit_moments`) on the grid P = k / VAR_GRID, row 0 program, row 1 erase."""
    out = np.zeros((2, VAR_GRID + 1))
    var_eta = cst[C_DVSTD] * cst[C_DVSTD]
    for sidx in range(2):
        o = 4 * sidx
        for k in range(VAR_GRID + 1):
            _, v = ctf_unit_moments(k / VAR_GRID, bl, cst[o + 1], cst[o + 2], cst[o + 3], cst[C_DGAP], cst[C_DT],
                                    var_eta)
            out[sidx, k] = v
    return out


@numba.njit(cache=True)
def update_expected(X, D, ctl, w, cells, dev, bufs, stats):
    """Mean (and with ctl.gauss Gaussian-noise) update of every sample of a batch, in order; e and
    t_last are left untouched. ``dev`` = (folded cst, mi, vt_ref, v_unit, var_tabs, have):
    var_tabs[bl] is :func:`ctf_var_table` for a sample's BL (Gaussian mode), filled on first use
    (have[bl]); with BL management every sample may have its own BL."""
    base, counter, _, lrg, dw_min, n, um, blm, _, _, gauss, noise_scale = ctl
    p, q, sx, sd, rs, rows, cols = (bufs[B_P], bufs[B_Q], bufs[B_SX], bufs[B_SD], bufs[B_RS], bufs[B_ROWS_IDX],
                                    bufs[B_COLS_IDX])
    cst, mi, vt_ref, v_unit, var_tabs, have = dev
    st, bad = check_batch(X, D, lrg, dw_min, n, um, blm)
    if st != ST_OK:
        return st, bad
    d_gap = cst[C_DGAP]
    d_t = cst[C_DT]
    m = cst[C_M]
    inv_norm = 1.0 / cst[C_NORM]
    inv_unit = 1.0 / v_unit
    zbuf = np.empty(rows.size)
    for b in range(X.shape[0]):
        bl, work, clipped = prepare(X[b], D[b], lrg, dw_min, n, um, blm, p, q, sx, sd)
        stats[kx.S_UPDATES] += 1
        if not work:
            continue
        if clipped:
            stats[kx.S_CLIPPED] += 1
        var_tab = var_tabs[0]
        if gauss:
            _rng.seed_stream(rs, base, counter + b)
            if not have[bl]:
                var_tabs[bl] = ctf_var_table(cst, bl)
                have[bl] = True
            var_tab = var_tabs[bl]
        s0, s1, s2, s3 = rs[0], rs[1], rs[2], rs[3]
        tiny_p = pow_underflows(bl, cst[3], d_gap, d_t)
        tiny_e = pow_underflows(bl, cst[7], d_gap, d_t)
        nr = active_units(p, rows)
        ncol = active_units(q, cols)
        for jj in range(ncol):
            j = cols[jj]
            qq = q[j]
            sdj = sd[j]
            if gauss:                 # the column's normals first: a tight loop the CPU pipelines well
                for ii in range(nr):
                    xi, s0, s1, s2, s3 = _rng.normal_local(s0, s1, s2, s3)
                    zbuf[ii] = xi
            for ii in range(nr):
                i = rows[ii]
                pp = p[i] * qq
                s = sx[i] * sdj
                o = 0 if s > 0 else 4
                vt, lo, hi = cells[j, i, C_VT], cells[j, i, C_LO], cells[j, i, C_HI]
                scale = s * cst[o] * cells[j, i, C_KS] * saturation(vt, lo, hi, s, mi, m, inv_norm)
                dv = scale * ctf_unit_mean(pp, bl, cst[o + 1], cst[o + 2], cst[o + 3], d_gap, d_t,
                                           tiny_p if s > 0 else tiny_e)
                if gauss:
                    dv += noise_scale * abs(scale) * math.sqrt(interp_table(var_tab, o >> 2, pp)) * zbuf[ii]
                nv = min(max(vt + dv, lo), hi)
                cells[j, i, C_VT] = nv
                w[j, i] = (nv - vt_ref) * inv_unit
        rs[0], rs[1], rs[2], rs[3] = s0, s1, s2, s3
    return ST_OK, X.shape[0]


# ------------------------------------------------------------------------------------ plan


class CTFPlan:
    """Everything a tile needs of a :class:`CTFDevice` for one design (train + timing): the record
    layout, the per-design constants (computed once), per-tile scratch, and the kernels with the
    common signatures of :mod:`ctfrpu.kernels.bundle`."""

    fields = ("vt", "e", "t_last", "rate_scale", "lo", "hi")
    n_fields = 8
    event_fields = (("dvt_V", np.float64), ("e0", np.float64))
    modes = ("exact", "expected", "gaussian", "factorial")
    """The update modes :meth:`kernel` serves."""

    def __init__(self, device, shape, train, timing):
        out_size, in_size = shape
        self.device, self.train = device, train
        self.timing = device.timing_tables(train, timing)
        tt = self.timing
        self._cst = sign_consts(device, train.pw, tt)
        self._cst_mean = sign_consts(device, train.pw, tt, fold=True)
        self._mi = int_exponent(device.bound_exponent)
        self.state = {"_last_row": np.zeros(in_size, dtype=np.int64),
                      "_stamp_row": np.full(in_size, -1, dtype=np.int64),
                      "_stamp_counter": np.zeros(1, dtype=np.int64)}
        carry = bool(device.carry_enhancement) and tt.history
        self._dev = (self._cst, self._mi, tt.tab, float(train.pw), float(train.period), carry, bool(tt.by_slot),
                     float(device.tau_off), float(device.vt_ref), float(device.v_unit), self.state["_last_row"],
                     self.state["_stamp_row"], self.state["_stamp_counter"])
        self._shape = (out_size, in_size)
        # Gaussian mode: variance tables by BL, filled by the kernel on first use (kernel())
        self._var_tabs = np.zeros((1, 2, VAR_GRID + 1))
        self._have = np.zeros(1, dtype=np.bool_)
        self._corr: np.ndarray | None = None

    def kernel(self, mode: str, bias_plan: "CTFPlan | None" = None) -> tuple:
        """(numba batch kernel, its ``dev`` tuple) of update mode ``mode``, with the common signature
        ``fn(X, D, ctl, w, cells, dev, bufs, stats) -> (status, sample)`` (:mod:`ctfrpu.kernels.bundle`):
        'exact'; 'expected' and 'gaussian' (``ctl`` says which); 'factorial' (this plan's noise,
        ``bias_plan``'s bias, :func:`update_factorial`). The tile and the compiled training loop call
        whatever this returns."""
        if mode == "exact":
            return update_exact, self._dev
        if mode in ("expected", "gaussian"):
            if mode == "gaussian" and self._var_tabs.shape[0] == 1:      # every BL 1..N may occur
                self._var_tabs = np.zeros((self.train.n + 1, 2, VAR_GRID + 1))
                self._have = np.zeros(self.train.n + 1, dtype=np.bool_)
            dev = self.device
            return update_expected, (self._cst_mean, self._mi, float(dev.vt_ref), float(dev.v_unit), self._var_tabs,
                                     self._have)
        if mode == "factorial":
            return update_factorial, self._factorial_dev(bias_plan)
        raise CtfrpuError(f"CTF device: no update kernel for mode {mode!r}")

    def apply(self, w, cells, bufs, t0, out):
        return apply(w, cells, self._dev, bufs, t0, True, out)

    def _factorial_dev(self, bias_plan: "CTFPlan") -> tuple:
        """``dev`` of :func:`update_factorial`: this plan's noise, ``bias_plan``'s bias."""
        if self._corr is None or self._corr.shape != self._shape:
            self._corr = np.zeros(self._shape)
        cb, cs = bias_plan._cst_mean, self._cst_mean
        if cb[C_M] != cs[C_M] or cb[C_NORM] != cs[C_NORM]:  # one saturation s(V_T) serves both designs
            raise CtfrpuError("the factorial ablation needs two designs of one device")
        return (self._dev, self._cst_mean, bias_plan._cst_mean, int(bias_plan.train.n),
                float(self.device.nominal_dw(bias_plan.train.pw)), self._corr)


# ------------------------------------------------------------------- 2 x 2 factorial ablation


@numba.njit(cache=True, inline="always")
def _design_term(s, ks, sat, pp, bl, cst, tiny_p, tiny_e):
    """E[dV_T] of one cell under one design (``cst`` folded, ``pp`` its coincidence probability),
    from the cell's gain ``ks`` and saturation ``sat`` at its current V_T -- the expected mode's
    closed form (:func:`ctf_mean_dvt`), evaluated in the same order."""
    o = 0 if s > 0 else 4
    scale = s * cst[o] * ks * sat
    return scale * ctf_unit_mean(pp, bl, cst[o + 1], cst[o + 2], cst[o + 3], cst[C_DGAP], cst[C_DT],
                                 tiny_p if s > 0 else tiny_e)


@numba.njit(cache=True)
def _mean_pass(x, d, ctl_b, ctl_s, cells, cst_b, cst_s, mi, pb, qb, bufs, corr):
    """corr[j, i] = E_b[dV_T] - E_sigma[dV_T] for every cell active in either design (s at the
    current V_T): one pass over the records for both designs, since the cell record (12 MB for a
    784 x 256 layer) streams from memory and the saturation s(V_T) is common to both. ``pb``, ``qb``:
    scratch for design b's probabilities; design sigma's stay in ``bufs`` (``cst_b`` and ``cst_s``
    share the device's m and norm, checked by the caller)."""
    p, q, sx, sd, rows, cols = bufs[B_P], bufs[B_Q], bufs[B_SX], bufs[B_SD], bufs[B_ROWS_IDX], bufs[B_COLS_IDX]
    base, counter, _, lrg, dw_min, n, um, blm, _, _, _, _ = ctl_b
    bl_b, work, _ = prepare(x, d, lrg, dw_min, n, um, blm, pb, qb, sx, sd)
    if not work:             # x = 0, d = 0 or lr = 0: the same for both designs
        return
    base, counter, _, lrg, dw_min, n, um, blm, _, _, _, _ = ctl_s
    bl_s, _, _ = prepare(x, d, lrg, dw_min, n, um, blm, p, q, sx, sd)
    m, inv_norm = cst_s[C_M], 1.0 / cst_s[C_NORM]
    tb_p = pow_underflows(bl_b, cst_b[3], cst_b[C_DGAP], cst_b[C_DT])
    tb_e = pow_underflows(bl_b, cst_b[7], cst_b[C_DGAP], cst_b[C_DT])
    ts_p = pow_underflows(bl_s, cst_s[3], cst_s[C_DGAP], cst_s[C_DT])
    ts_e = pow_underflows(bl_s, cst_s[7], cst_s[C_DGAP], cst_s[C_DT])
    # the units active in either design (x_i != 0 / d_j != 0 unless a probability underflows)
    nr = active_either(pb, p, rows)
    ncol = active_either(qb, q, cols)
    for jj in range(ncol):
        j = cols[jj]
        for ii in range(nr):
            i = rows[ii]
            s = sx[i] * sd[j]
            ks = cells[j, i, C_KS]   # scalar reads of the record (no per-cell view in the innermost loop)
            sat = saturation(cells[j, i, C_VT], cells[j, i, C_LO], cells[j, i, C_HI], s, mi, m, inv_norm)
            c = 0.0
            if pb[i] > 0.0 and qb[j] > 0.0:
                c += _design_term(s, ks, sat, pb[i] * qb[j], bl_b, cst_b, tb_p, tb_e)
            if p[i] > 0.0 and q[j] > 0.0:
                c += -(_design_term(s, ks, sat, p[i] * q[j], bl_s, cst_s, ts_p, ts_e))
            corr[j, i] = c


@numba.njit(cache=True)
def _nonzero(v, idx):
    m = 0
    for u in range(v.size):
        if v[u] != 0.0:
            idx[m] = u
            m += 1
    return m


@numba.njit(cache=True)
def update_factorial(X, D, ctl, w, cells, dev, bufs, stats):
    """Bias of design b with the noise of design sigma (OUR 2 x 2 ablation), per cell and sample:

        dV = E_b + (exact_sigma - E_sigma)

    E_* the expected (mean) change of each design from the cell's V_T at the sample's start, exact_sigma
    the pulse-exact change of design sigma (its trains, its discreteness, its row/column correlations),
    the result clipped to the cell's window. ``ctl`` describes design sigma (the tile's own train);
    ``dev`` = (the exact kernel's tuple for sigma, folded constants of sigma, folded constants of b,
    N_b, dw_min_b, corr scratch (out, in) of zeros)."""
    dev_s, cst_s, cst_b, n_b, dw_min_b, corr = dev
    mi = dev_s[1]
    vt_ref, inv_unit = dev_s[8], 1.0 / dev_s[9]
    st, bad = kx.check_start(X, D, ctl)
    if st != ST_OK:
        return st, bad
    base, counter, start, lrg, _, _, um, blm, t_start, t_step, gauss, ns = ctl
    ctl_b = (base, counter, start, lrg, dw_min_b, n_b, um, blm, t_start, t_step, gauss, ns)
    ri = np.empty(X.shape[1], np.int64)
    ci = np.empty(D.shape[1], np.int64)
    pb = np.empty(X.shape[1])
    qb = np.empty(D.shape[1])
    out = kx.no_record(bufs)
    for b in range(start, X.shape[0]):
        _mean_pass(X[b], D[b], ctl_b, ctl, cells, cst_b, cst_s, mi, pb, qb, bufs, corr)
        nr = _nonzero(X[b], ri)
        nc = _nonzero(D[b], ci)
        st, bl, clipped, er, ec = kx.draw_sample(X[b], D[b], ctl, b, bufs)
        if st == ST_OK and bl > 0:
            cnt = apply(w, cells, dev_s, bufs, t_start + b * t_step, False, out)
            kx.account(stats, cnt, er, ec, clipped)
        for jj in range(nc):
            j = ci[jj]
            for ii in range(nr):
                i = ri[ii]
                c = corr[j, i]
                corr[j, i] = 0.0                  # corr stays all-zero between samples (no O(cells) reset)
                if st == ST_OK:
                    cell = cells[j, i]
                    nv = min(max(cell[C_VT] + c, cell[C_LO]), cell[C_HI])
                    cell[C_VT] = nv
                    w[j, i] = (nv - vt_ref) * inv_unit
        if st != ST_OK:                           # grow the buffers and redo this sample
            return st, b
        stats[kx.S_UPDATES] += 1
    return ST_OK, X.shape[0]
