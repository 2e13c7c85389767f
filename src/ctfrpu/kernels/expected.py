"""Expected (noise-free mean) and Gaussian update modes, numba, dense over the active cells.

Both modes compute, per cell with coincidence probability P = p_i q_j > 0, the exact mean weight
change of one stochastic train of BL slots -- the same numbers as ``device.expected_train_dw``
(ideal: BL P dw_min; CTF: the closed-form mean of ``CTFDevice.expected_train_dvt`` with the
saturation s frozen at the start of the train and e = 0 at its start) -- and the Gaussian mode adds
independent Gaussian noise per cell (OUR approximation, see below). Cost ~ active rows x active
columns per sample (only cells with x_i != 0 and d_j != 0 are visited).

Gaussian noise (OUR model, matched to the exact mode's per-cell variance):

* ideal device: a cell receives K ~ Binomial(BL, P) pulses of step dw_c = dw_min * scale, each
  multiplied by (1 + dw_min_std xi), so Var = dw_c^2 BL P (1 - P + dw_min_std^2) -- exact;
* CTF: dV = kappa kscale s * S with S = sum over fired slots of (lin + aq e_k) eta_k (s frozen at
  the start of the train, as in the mean). (S, e) evolves by a random affine map per slot, so its
  second moments obey a linear recursion (:func:`ctf_unit_moments`); Var(S) is tabulated once per
  (tile, BL) on a grid of P in [0, 1] and interpolated linearly. This is the exact variance of the
  pulse-exact train -- counting noise, cycle-to-cycle noise (E[eta^2] = 1 + dv_std^2, the
  truncation at eta >= 0 neglected), the spread of the step size from the random gaps and its
  correlation with the count -- up to the frozen s and the clipping to the window. (The simpler
  "per-pulse mean step" rule, step^2 BL P (1 - P + dv_std^2), underestimates the exact variance by
  up to ~1.5x for short pulses at small gaps; see tests/test_tile.py.)

In both devices the noise of different cells is independent, whereas in the exact mode cells that
share a row (or column) train are correlated (Cov = dw^2 BL (p q1 q2 - p^2 q1 q2) for two cells of
one row): the Gaussian mode matches variances, not covariances.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import rng as _rng
from .cells import C_HI, C_KS, C_LO, C_VT, I_HI, I_LO, I_SCALE
from .ctfmath import pow_m
from .trains import ST_OK, check_batch, prepare, train_length

S_UPDATES, S_COINC, S_ROW_PULSES, S_COL_PULSES, S_CLIPPED = range(5)


@numba.njit(cache=True)
def _active(prob, idx):
    m = 0
    for u in range(prob.size):
        if prob[u] > 0.0:
            idx[m] = u
            m += 1
    return m


@numba.njit(cache=True)
def update_expected_ideal(X, D, base, counter, lrg, dw_min, n, um, blm, dw_pulse, std, w, cells,
                          p, q, sx, sd, rows, cols, gauss, noise_scale, rs, stats):
    """Mean (and, with ``gauss``, Gaussian-noise) update of every sample of a batch, in order."""
    st, bad = check_batch(X, D, lrg, dw_min, n, um, blm)
    if st != ST_OK:
        return st, bad
    var_c2c = std * std
    zbuf = np.empty(rows.size)
    for b in range(X.shape[0]):
        bl, work, clipped = prepare(X[b], D[b], lrg, dw_min, n, um, blm, p, q, sx, sd)
        stats[S_UPDATES] += 1
        if not work:
            continue
        if clipped:
            stats[S_CLIPPED] += 1
        if gauss:
            _rng.seed_stream(rs, base, counter + b)
        s0, s1, s2, s3 = rs[0], rs[1], rs[2], rs[3]
        nr = _active(p, rows)
        ncol = _active(q, cols)
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
                cell = cells[j, i]
                dwc = dw_pulse * cell[I_SCALE]
                dw = sx[i] * sdj * bl * pp * dwc
                if gauss:
                    dw += noise_scale * dwc * math.sqrt(bl * pp * (1.0 - pp + var_c2c)) * zbuf[ii]
                w[j, i] = min(max(w[j, i] + dw, cell[I_LO]), cell[I_HI])
        rs[0], rs[1], rs[2], rs[3] = s0, s1, s2, s3
    return ST_OK, X.shape[0]


@numba.njit(cache=True, inline="always")
def ctf_unit_mean(pp, bl, lin, aq, c, d_gap, d_t, tiny):
    """E[sum over fired slots of (lin + aq e_k)] for a train of bl slots firing with probability pp,
    e = 0 at the start (the closed form of ``CTFDevice.expected_train_dvt`` without kappa s).
    ``tiny``: alpha^bl underflows to 0.0 for every pp (see :func:`pow_underflows`), skip it."""
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
def ctf_mean_dvt(pp, bl, sign, vt, kscale, lo, hi, cst, mi, d_gap, d_t):
    """Exact mean dV_T of one train of bl slots, each firing with probability pp (e = 0 at the start,
    s frozen at the start): the closed form of ``CTFDevice.expected_train_dvt``; ``cst`` from
    :func:`ctfrpu.kernels.ctfmath.sign_consts`."""
    o = 0 if sign > 0 else 4
    unit = ctf_unit_mean(pp, bl, cst[o + 1], cst[o + 2], cst[o + 3], d_gap, d_t, False)
    return sign * cst[o] * kscale * saturation(vt, lo, hi, sign, mi, cst[8], 1.0 / cst[9]) * unit


VAR_GRID = 256
"""Intervals of the P grid of the CTF variance table."""


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
def ctf_var_table(cst, bl, d_gap, d_t):
    """Var[S] (see :func:`ctf_unit_moments`) on the grid P = k / VAR_GRID, row 0 program, row 1 erase."""
    out = np.zeros((2, VAR_GRID + 1))
    var_eta = cst[10] * cst[10]
    for sidx in range(2):
        o = 4 * sidx
        for k in range(VAR_GRID + 1):
            _, v = ctf_unit_moments(k / VAR_GRID, bl, cst[o + 1], cst[o + 2], cst[o + 3], d_gap, d_t, var_eta)
            out[sidx, k] = v
    return out


@numba.njit(cache=True, inline="always")
def _interp(tab, sidx, pp):
    xg = pp * VAR_GRID
    k = min(int(xg), VAR_GRID - 1)
    f = xg - k
    return tab[sidx, k] * (1.0 - f) + tab[sidx, k + 1] * f


@numba.njit(cache=True)
def sample_bl(x, d, lrg, dw_min, n, blm):
    """BL of one sample (0 if nothing is to be done)."""
    xmax = np.max(np.abs(x))
    dmax = np.max(np.abs(d))
    if xmax == 0.0 or dmax == 0.0 or lrg == 0.0:
        return 0
    return train_length(xmax, dmax, lrg, dw_min, n, blm)


@numba.njit(cache=True)
def update_expected_ctf(X, D, base, counter, lrg, dw_min, n, um, blm, w, cells, cst, mi, pw, gap, tau_off,
                        vt_ref, v_unit, p, q, sx, sd, rows, cols, gauss, noise_scale, var_tab, rs, stats):
    """CTF counterpart of :func:`update_expected_ideal` (e and t_last are left untouched).

    ``var_tab`` (Gaussian mode): :func:`ctf_var_table` for the BL of every sample of the batch."""
    st, bad = check_batch(X, D, lrg, dw_min, n, um, blm)
    if st != ST_OK:
        return st, bad
    d_gap = math.exp(-gap / tau_off)
    d_t = math.exp(-(pw + gap) / tau_off)
    m = cst[8]
    inv_norm = 1.0 / cst[9]
    inv_unit = 1.0 / v_unit
    zbuf = np.empty(rows.size)
    for b in range(X.shape[0]):
        bl, work, clipped = prepare(X[b], D[b], lrg, dw_min, n, um, blm, p, q, sx, sd)
        stats[S_UPDATES] += 1
        if not work:
            continue
        if clipped:
            stats[S_CLIPPED] += 1
        if gauss:
            _rng.seed_stream(rs, base, counter + b)
        s0, s1, s2, s3 = rs[0], rs[1], rs[2], rs[3]
        tiny_p = pow_underflows(bl, cst[3], d_gap, d_t)
        tiny_e = pow_underflows(bl, cst[7], d_gap, d_t)
        nr = _active(p, rows)
        ncol = _active(q, cols)
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
                cell = cells[j, i]
                vt, lo, hi = cell[C_VT], cell[C_LO], cell[C_HI]
                scale = s * cst[o] * cell[C_KS] * saturation(vt, lo, hi, s, mi, m, inv_norm)
                dv = scale * ctf_unit_mean(pp, bl, cst[o + 1], cst[o + 2], cst[o + 3], d_gap, d_t,
                                           tiny_p if s > 0 else tiny_e)
                if gauss:
                    dv += noise_scale * abs(scale) * math.sqrt(_interp(var_tab, o >> 2, pp)) * zbuf[ii]
                nv = min(max(vt + dv, lo), hi)
                cell[C_VT] = nv
                w[j, i] = (nv - vt_ref) * inv_unit
        rs[0], rs[1], rs[2], rs[3] = s0, s1, s2, s3
    return ST_OK, X.shape[0]
