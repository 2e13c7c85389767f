"""Pulse-exact stochastic update (the reference mode), event-driven, numba.

Per sample (science.md §3): draw the row trains (one per input i, ON probability p_i per slot)
and the column trains (one per output j, q_j), bucket the row events by slot, then apply one
device pulse per coincidence. Cost ~ (row pulses + column pulses) + coincidences + BL, never
N x rows x cols.

Loop order. Cells are independent, so only each cell's own pulses must be applied in time order.
The kernel walks the columns j (rows of W, contiguous in memory), and for each j its ON slots k in
increasing order, and for each k the rows i ON at k: every cell (j, i) sees its pulses in time
order, and all the per-cell arrays touched while j is processed are one contiguous row of length
in_size (cache-resident).

CTF relaxation bookkeeping. A pulse at slot k starts at t0 + k * period and lasts pw. The
enhancement at its start is the previous pulse's e relaxed over the off time: between two pulses
of one update g slots apart that is (g * period - pw), looked up in a table ``dec[g]``. Whether a
cell was already pulsed in this update is tracked per row index with an int stamp that is unique
per (sample, column) -- no O(cells) reset per update. A cell's first pulse of an update starts
from e = 0 (``carry=False``, the device default) or from its stored e relaxed since its stored
t_last (``carry=True``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import rng as _rng
from .ctfmath import pulse as ctf_pulse
from .trains import (ST_BAD_D, ST_BAD_X, ST_OK, ST_PROB, active_slots, bucket_by_slot, check_sample, draw_trains,
                     prepare)

ST_CAP_ROWS = 4
ST_CAP_COLS = 5

# stats slots (float64 array owned by the tile; row/column pulses are expected values)
S_UPDATES, S_COINC, S_ROW_PULSES, S_COL_PULSES, S_CLIPPED = range(5)
N_STATS = 5

__all__ = ["ST_OK", "ST_BAD_X", "ST_BAD_D", "ST_PROB", "ST_CAP_ROWS", "ST_CAP_COLS",
           "update_exact_ideal", "update_exact_ctf", "draw_sample", "apply_ideal", "apply_ctf"]


@numba.njit(cache=True)
def apply_ideal(w, scale, lo, hi, dw_pulse, std, sx, sd, slot_ptr, slot_rows, col_ptr, col_slots, rs,
                rec, r_row, r_col, r_slot, r_sign, r_dw):
    """One pulse per coincidence on the ideal device; returns the number of pulses applied.

    dw = s * dw_pulse * scale * (1 + std * xi), w <- clip(w + dw, lo, hi) (IdealDevice's rule).
    With ``rec`` the events are written to the r_* arrays (sized by the caller).
    """
    n_out = w.shape[0]
    cnt = 0
    s0, s1, s2, s3 = rs[0], rs[1], rs[2], rs[3]
    for j in range(n_out):
        c0 = col_ptr[j]
        c1 = col_ptr[j + 1]
        if c0 == c1:
            continue
        sdj = sd[j]
        for t in range(c0, c1):
            k = col_slots[t]
            for r in range(slot_ptr[k], slot_ptr[k + 1]):
                i = slot_rows[r]
                s = sx[i] * sdj
                dw = s * dw_pulse * scale[j, i]
                if std > 0.0:
                    xi, s0, s1, s2, s3 = _rng.normal_local(s0, s1, s2, s3)
                    dw *= 1.0 + std * xi
                old = w[j, i]
                nw = old + dw
                if nw < lo[j, i]:
                    nw = lo[j, i]
                elif nw > hi[j, i]:
                    nw = hi[j, i]
                w[j, i] = nw
                if rec:
                    r_row[cnt] = i
                    r_col[cnt] = j
                    r_slot[cnt] = k
                    r_sign[cnt] = s
                    r_dw[cnt] = nw - old
                cnt += 1
    rs[0], rs[1], rs[2], rs[3] = s0, s1, s2, s3
    return cnt


@numba.njit(cache=True)
def apply_ctf(w, vt, e, t_last, kscale, lo, hi, cst, mi, pw, period, t0, carry, dec, tau_off, vt_ref, v_unit,
              last_row, stamp_row, stamp_base, sx, sd, slot_ptr, slot_rows, col_ptr, col_slots, rs,
              rec, r_row, r_col, r_slot, r_sign, r_dw, r_dvt, r_e0):
    """One CTF pulse per coincidence, per-cell pulse history (``ctfmath.pulse``: the device's closed
    form ``pulse_math_nb`` with per-train constants ``cst`` precomputed).

    ``stamp_base`` must exceed every stamp used before (the caller advances it by n_out per sample).
    Returns the number of pulses applied.
    """
    n_out = w.shape[0]
    dv_std = cst[10]
    inv_unit = 1.0 / v_unit
    cnt = 0
    s0, s1, s2, s3 = rs[0], rs[1], rs[2], rs[3]
    for j in range(n_out):
        c0 = col_ptr[j]
        c1 = col_ptr[j + 1]
        if c0 == c1:
            continue
        sdj = sd[j]
        stamp = stamp_base + j
        for t in range(c0, c1):
            k = col_slots[t]
            tstart = t0 + k * period
            for r in range(slot_ptr[k], slot_ptr[k + 1]):
                i = slot_rows[r]
                s = sx[i] * sdj
                same = stamp_row[i] == stamp
                g = k - last_row[i] if same else 0
                e0 = e[j, i] * dec[g] if same else 0.0
                if carry and not same:
                    e0 = e[j, i] * math.exp(-(tstart - t_last[j, i]) / tau_off)
                xi = 0.0
                if dv_std > 0.0:
                    xi, s0, s1, s2, s3 = _rng.normal_local(s0, s1, s2, s3)
                old = vt[j, i]
                vt_new, e_new = ctf_pulse(old, e0, s, kscale[j, i], lo[j, i], hi[j, i], cst, mi, xi)
                vt[j, i] = vt_new
                e[j, i] = e_new
                t_last[j, i] = tstart + pw
                nw = (vt_new - vt_ref) * inv_unit
                if rec:
                    r_row[cnt] = i
                    r_col[cnt] = j
                    r_slot[cnt] = k
                    r_sign[cnt] = s
                    r_dw[cnt] = nw - w[j, i]
                    r_dvt[cnt] = vt_new - old
                    r_e0[cnt] = e0
                w[j, i] = nw
                stamp_row[i] = stamp
                last_row[i] = k
                cnt += 1
    rs[0], rs[1], rs[2], rs[3] = s0, s1, s2, s3
    return cnt


@numba.njit(cache=True)
def draw_sample(x, d, base, counter, lrg, dw_min, n, um, blm, p, q, sx, sd, row_ptr, row_slots, slot_ptr, cursor,
                slot_rows, col_ptr, col_slots, ident, smap, mark, rs):
    """Seed the kernel generator for sample ``counter``, prepare and draw its trains (thinned:
    the side with fewer expected pulses in full, the other only on the slots where the first has
    pulses -- see :mod:`ctfrpu.kernels.trains`), and bucket the row pulses by slot.

    Returns (status, bl, clipped, expected_row_pulses, expected_col_pulses); status ST_OK with
    bl = 0 means nothing to do (x = 0, d = 0 or lr = 0).
    """
    bl, work, clipped = prepare(x, d, lrg, dw_min, n, um, blm, p, q, sx, sd)
    if not work:
        return ST_OK, 0, False, 0.0, 0.0
    _rng.seed_stream(rs, base, counter)
    er = bl * p.sum()
    ec = bl * q.sum()
    if ec <= er:
        nc_ev = draw_trains(q, bl, ident, col_ptr, col_slots, rs)
        if nc_ev < 0:
            return ST_CAP_COLS, bl, clipped, er, ec
        m = active_slots(nc_ev, col_slots, bl, mark, smap)
        if draw_trains(p, m, smap, row_ptr, row_slots, rs) < 0:
            return ST_CAP_ROWS, bl, clipped, er, ec
    else:
        nr_ev = draw_trains(p, bl, ident, row_ptr, row_slots, rs)
        if nr_ev < 0:
            return ST_CAP_ROWS, bl, clipped, er, ec
        m = active_slots(nr_ev, row_slots, bl, mark, smap)
        if draw_trains(q, m, smap, col_ptr, col_slots, rs) < 0:
            return ST_CAP_COLS, bl, clipped, er, ec
    bucket_by_slot(row_ptr, row_slots, x.size, bl, slot_ptr, cursor, slot_rows)
    return ST_OK, bl, clipped, er, ec


@numba.njit(cache=True)
def _validate(X, D, lrg, dw_min, n, um, blm):
    for b in range(X.shape[0]):
        st, _, _ = check_sample(X[b], D[b], lrg, dw_min, n, um, blm)
        if st != ST_OK:
            return st, b
    return ST_OK, -1


@numba.njit(cache=True)
def update_exact_ideal(X, D, base, counter, start, lrg, dw_min, n, um, blm, dw_pulse, std, w, scale, lo, hi,
                       p, q, sx, sd, row_ptr, row_slots, slot_ptr, cursor, slot_rows, col_ptr, col_slots,
                       ident, smap, mark, rs, stats):
    """Samples start..B-1 of a batch, one after the other; sample b uses stream counter + b.
    Returns (status, sample index).

    With start == 0 every sample is validated first, so a bad sample leaves the weights untouched.
    ST_CAP_* means the sample's buffers were too small: grow them and call again from that sample
    (its stream is recreated, so the result is the same as with large buffers).
    """
    if start == 0:
        st, b = _validate(X, D, lrg, dw_min, n, um, blm)
        if st != ST_OK:
            return st, b
    i0 = np.empty(0, np.int64)
    f0 = np.empty(0, np.float64)
    for b in range(start, X.shape[0]):
        st, bl, clipped, er, ec = draw_sample(X[b], D[b], base, counter + b, lrg, dw_min, n, um, blm, p, q, sx,
                                              sd, row_ptr, row_slots, slot_ptr, cursor, slot_rows, col_ptr,
                                              col_slots, ident, smap, mark, rs)
        if st != ST_OK:
            return st, b
        stats[S_UPDATES] += 1
        if bl == 0:
            continue
        cnt = apply_ideal(w, scale, lo, hi, dw_pulse, std, sx, sd, slot_ptr, slot_rows, col_ptr, col_slots,
                          rs, False, i0, i0, i0, f0, f0)
        stats[S_COINC] += cnt
        stats[S_ROW_PULSES] += er
        stats[S_COL_PULSES] += ec
        if clipped:
            stats[S_CLIPPED] += 1
    return ST_OK, X.shape[0]


@numba.njit(cache=True)
def update_exact_ctf(X, D, base, counter, start, lrg, dw_min, n, um, blm, t_start, t_step,
                     w, vt, e, t_last, kscale, lo, hi, cst, mi, pw, period, carry, dec, tau_off, vt_ref, v_unit,
                     last_row, stamp_row, stamp_counter,
                     p, q, sx, sd, row_ptr, row_slots, slot_ptr, cursor, slot_rows, col_ptr, col_slots,
                     ident, smap, mark, rs, stats):
    """CTF counterpart of :func:`update_exact_ideal`; sample b's train starts at t_start + b * t_step."""
    if start == 0:
        st, b = _validate(X, D, lrg, dw_min, n, um, blm)
        if st != ST_OK:
            return st, b
    i0 = np.empty(0, np.int64)
    f0 = np.empty(0, np.float64)
    n_out = w.shape[0]
    for b in range(start, X.shape[0]):
        st, bl, clipped, er, ec = draw_sample(X[b], D[b], base, counter + b, lrg, dw_min, n, um, blm, p, q, sx,
                                              sd, row_ptr, row_slots, slot_ptr, cursor, slot_rows, col_ptr,
                                              col_slots, ident, smap, mark, rs)
        if st != ST_OK:
            return st, b
        stats[S_UPDATES] += 1
        if bl == 0:
            continue
        cnt = apply_ctf(w, vt, e, t_last, kscale, lo, hi, cst, mi, pw, period, t_start + b * t_step, carry,
                        dec, tau_off, vt_ref, v_unit, last_row, stamp_row, stamp_counter[0], sx, sd, slot_ptr,
                        slot_rows, col_ptr, col_slots, rs, False, i0, i0, i0, f0, f0, f0, f0)
        stamp_counter[0] += n_out
        stats[S_COINC] += cnt
        stats[S_ROW_PULSES] += er
        stats[S_COL_PULSES] += ec
        if clipped:
            stats[S_CLIPPED] += 1
    return ST_OK, X.shape[0]
