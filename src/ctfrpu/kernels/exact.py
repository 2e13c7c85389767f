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
from .cells import C_E, C_HI, C_KS, C_LO, C_TLAST, C_VT, I_HI, I_LO, I_SCALE
from .ctfmath import pulse_s as ctf_pulse
from .trains import (ST_BAD_D, ST_BAD_X, ST_OK, ST_PROB, active_slots, check_batch, count_coincidences, draw_events,
                     events_by_slot, events_by_unit, prepare)

ST_CAP_ROWS = 4
ST_CAP_COLS = 5

# stats slots (float64 array owned by the tile; row/column pulses are expected values)
S_UPDATES, S_COINC, S_ROW_PULSES, S_COL_PULSES, S_CLIPPED, S_SINK = range(6)
N_STATS = 6

__all__ = ["ST_OK", "ST_BAD_X", "ST_BAD_D", "ST_PROB", "ST_CAP_ROWS", "ST_CAP_COLS",
           "update_exact_ideal", "update_exact_ctf", "draw_sample", "apply_ideal", "apply_ctf"]


@numba.njit(cache=True)
def touch_cells(w, cells, slot_ptr, slot_rows, col_ptr, col_slots):
    """(Sum of the first record field and the weight of every cell about to be pulsed, number of
    pulses). Loading them
    in this light loop lets the CPU fetch their cache lines in parallel; the dependent pulse
    arithmetic afterwards would otherwise wait for one miss after the other (a 784x256 tile's
    records, 13 MB, do not stay in cache between updates)."""
    n_out = w.shape[0]
    acc = 0.0
    cnt = 0
    for j in range(n_out):
        for t in range(col_ptr[j], col_ptr[j + 1]):
            k = col_slots[t]
            r0 = slot_ptr[k]
            r1 = slot_ptr[k + 1]
            cnt += r1 - r0
            for r in range(r0, r1):
                i = slot_rows[r]
                acc += cells[j, i, 0] + w[j, i]
    return acc, cnt


@numba.njit(cache=True)
def pulse_normals(noisy, n, rs):
    """The n standard normals of the pulses' cycle-to-cycle noise (pulse c uses z[c]), drawn in one
    tight loop before the pulses: interleaved with the pulse arithmetic the generator ran ~5x slower."""
    if not noisy:
        return np.empty(0)
    z = np.empty(n)
    _rng.fill_normal(rs, z)
    return z


@numba.njit(cache=True)
def apply_ideal(w, cells, dw_pulse, std, sx, sd, slot_ptr, slot_rows, col_ptr, col_slots, rs, sink,
                rec, r_row, r_col, r_slot, r_sign, r_dw):
    """One pulse per coincidence on the ideal device; returns the number of pulses applied.

    dw = s * dw_pulse * scale * (1 + std * xi), w <- clip(w + dw, lo, hi) (IdealDevice's rule);
    cells[j, i] = (scale, lo, hi, -) (see :mod:`ctfrpu.kernels.cells`).
    With ``rec`` the events are written to the r_* arrays (sized by the caller).
    """
    acc, n_p = touch_cells(w, cells, slot_ptr, slot_rows, col_ptr, col_slots)
    sink[0] += acc
    z = pulse_normals(std > 0.0, n_p, rs)
    n_out = w.shape[0]
    cnt = 0
    for j in range(n_out):
        sdj = sd[j]
        for t in range(col_ptr[j], col_ptr[j + 1]):
            k = col_slots[t]
            for r in range(slot_ptr[k], slot_ptr[k + 1]):
                i = slot_rows[r]
                s = sx[i] * sdj
                cell = cells[j, i]
                dw = s * dw_pulse * cell[I_SCALE]
                if std > 0.0:
                    dw *= 1.0 + std * z[cnt]
                old = w[j, i]
                nw = min(max(old + dw, cell[I_LO]), cell[I_HI])
                w[j, i] = nw
                if rec:
                    r_row[cnt] = i
                    r_col[cnt] = j
                    r_slot[cnt] = k
                    r_sign[cnt] = s
                    r_dw[cnt] = nw - old
                cnt += 1
    return cnt


@numba.njit(cache=True)
def apply_ctf(w, cells, cst, mi, pw, period, t0, carry, dec, tau_off, vt_ref, v_unit,
              last_row, stamp_row, stamp_base, sx, sd, slot_ptr, slot_rows, col_ptr, col_slots, rs, sink,
              rec, r_row, r_col, r_slot, r_sign, r_dw, r_dvt, r_e0):
    """One CTF pulse per coincidence, per-cell pulse history (``ctfmath.pulse``: the device's closed
    form ``pulse_math_nb`` with per-train constants ``cst`` precomputed); cells[j, i] =
    (vt, e, t_last, kscale, lo, hi, -, -) (see :mod:`ctfrpu.kernels.cells`).

    Loop order: columns j, their ON slots k ascending, the rows ON at k: each cell's pulses in time
    order. ``stamp_base`` must exceed every stamp used before (the caller advances it by n_out per
    sample). Returns the number of pulses applied.
    """
    acc, n_p = touch_cells(w, cells, slot_ptr, slot_rows, col_ptr, col_slots)
    sink[0] += acc
    n_out = w.shape[0]
    kp, lp, ap, cp, ke, le, ae, ce = cst[0], cst[1], cst[2], cst[3], cst[4], cst[5], cst[6], cst[7]
    m = cst[8]
    inv_norm = 1.0 / cst[9]
    dv_std = cst[10]
    inv_unit = 1.0 / v_unit
    z = pulse_normals(dv_std > 0.0, n_p, rs)
    cnt = 0
    for j in range(n_out):
        sdj = sd[j]
        stamp = stamp_base + j
        for t in range(col_ptr[j], col_ptr[j + 1]):
            k = col_slots[t]
            tstart = t0 + k * period
            for r in range(slot_ptr[k], slot_ptr[k + 1]):
                i = slot_rows[r]
                s = sx[i] * sdj
                cell = cells[j, i]
                same = stamp_row[i] == stamp            # cell already pulsed in this update
                g = k - last_row[i] if same else 0
                e0 = cell[C_E] * dec[g] if same else 0.0
                if carry and not same:
                    e0 = cell[C_E] * math.exp(-(tstart - cell[C_TLAST]) / tau_off)
                xi = z[cnt] if dv_std > 0.0 else 0.0
                old = cell[C_VT]
                vt_new, e_new = ctf_pulse(old, e0, s, cell[C_KS], cell[C_LO], cell[C_HI], kp, lp, ap, cp, ke, le,
                                          ae, ce, mi, m, inv_norm, dv_std, xi)
                cell[C_VT] = vt_new
                cell[C_E] = e_new
                cell[C_TLAST] = tstart + pw
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
    return cnt


@numba.njit(cache=True)
def draw_sample(x, d, base, counter, lrg, dw_min, n, um, blm, p, q, sx, sd, buf_i, buf_f, ev_unit_r, ev_slot_r,
                slot_ptr, slot_cursor, slot_rows, ev_unit_c, ev_slot_c, col_ptr, col_slots, smap, rs):
    """Seed the kernel generator for sample ``counter``, prepare and draw its trains (thinned:
    the side with fewer expected pulses in full, the other only on the slots where the first has
    pulses -- see :mod:`ctfrpu.kernels.trains`); rows end up as CSR by slot (slot_ptr, slot_rows),
    columns as CSR by column (col_ptr, col_slots).

    Scratch: buf_i int32[3 * max(in, out) + 2 + n] (live units, unit cursor, slot marks),
    buf_f float64[2 * max(in, out)]; smap int32[n].
    Returns (status, bl, clipped, expected_row_pulses, expected_col_pulses); status ST_OK with
    bl = 0 means nothing to do (x = 0, d = 0 or lr = 0).
    """
    bl, work, clipped = prepare(x, d, lrg, dw_min, n, um, blm, p, q, sx, sd)
    if not work:
        return ST_OK, 0, False, 0.0, 0.0
    _rng.seed_stream(rs, base, counter)
    nu = max(x.size, d.size)
    act_unit = buf_i[:nu]
    cursor_u = buf_i[nu:2 * nu + 1]
    mark = buf_i[2 * nu + 1:2 * nu + 1 + n]
    act_pos = buf_f[:nu]
    act_ninv = buf_f[nu:2 * nu]
    er = bl * p.sum()
    ec = bl * q.sum()
    for k in range(bl):
        smap[k] = k
    if ec <= er:
        nc_ev = draw_events(q, bl, smap, rs, act_unit, act_pos, act_ninv, ev_unit_c, ev_slot_c)
        if nc_ev < 0:
            return ST_CAP_COLS, bl, clipped, er, ec
        m = active_slots(nc_ev, ev_slot_c, bl, mark, smap)
        nr_ev = draw_events(p, m, smap, rs, act_unit, act_pos, act_ninv, ev_unit_r, ev_slot_r)
        if nr_ev < 0:
            return ST_CAP_ROWS, bl, clipped, er, ec
    else:
        nr_ev = draw_events(p, bl, smap, rs, act_unit, act_pos, act_ninv, ev_unit_r, ev_slot_r)
        if nr_ev < 0:
            return ST_CAP_ROWS, bl, clipped, er, ec
        m = active_slots(nr_ev, ev_slot_r, bl, mark, smap)
        nc_ev = draw_events(q, m, smap, rs, act_unit, act_pos, act_ninv, ev_unit_c, ev_slot_c)
        if nc_ev < 0:
            return ST_CAP_COLS, bl, clipped, er, ec
    events_by_slot(nr_ev, ev_unit_r, ev_slot_r, bl, slot_ptr, slot_cursor, slot_rows)
    events_by_unit(nc_ev, ev_unit_c, ev_slot_c, d.size, col_ptr, cursor_u, col_slots)
    return ST_OK, bl, clipped, er, ec


@numba.njit(cache=True)
def update_exact_ideal(X, D, base, counter, start, lrg, dw_min, n, um, blm, dw_pulse, std, w, cells,
                       p, q, sx, sd, buf_i, buf_f, ev_unit_r, ev_slot_r, slot_ptr, slot_cursor, slot_rows,
                       ev_unit_c, ev_slot_c, col_ptr, col_slots, smap, rs, stats):
    """Samples start..B-1 of a batch, one after the other; sample b uses stream counter + b.
    Returns (status, sample index).

    With start == 0 every sample is validated first, so a bad sample leaves the weights untouched.
    ST_CAP_* means the sample's buffers were too small: grow them and call again from that sample
    (its stream is recreated, so the result is the same as with large buffers).
    """
    if start == 0:
        st, b = check_batch(X, D, lrg, dw_min, n, um, blm)
        if st != ST_OK:
            return st, b
    i0 = np.empty(0, np.int64)
    f0 = np.empty(0, np.float64)
    for b in range(start, X.shape[0]):
        st, bl, clipped, er, ec = draw_sample(X[b], D[b], base, counter + b, lrg, dw_min, n, um, blm, p, q, sx,
                                              sd, buf_i, buf_f, ev_unit_r, ev_slot_r, slot_ptr, slot_cursor,
                                              slot_rows, ev_unit_c, ev_slot_c, col_ptr, col_slots, smap, rs)
        if st != ST_OK:
            return st, b
        stats[S_UPDATES] += 1
        if bl == 0:
            continue
        cnt = apply_ideal(w, cells, dw_pulse, std, sx, sd, slot_ptr, slot_rows, col_ptr, col_slots,
                          rs, stats[S_SINK:], False, i0, i0, i0, f0, f0)
        stats[S_COINC] += cnt
        stats[S_ROW_PULSES] += er
        stats[S_COL_PULSES] += ec
        if clipped:
            stats[S_CLIPPED] += 1
    return ST_OK, X.shape[0]


@numba.njit(cache=True)
def update_exact_ctf(X, D, base, counter, start, lrg, dw_min, n, um, blm, t_start, t_step,
                     w, cells, cst, mi, pw, period, carry, dec, tau_off, vt_ref, v_unit,
                     last_row, stamp_row, stamp_counter,
                     p, q, sx, sd, buf_i, buf_f, ev_unit_r, ev_slot_r, slot_ptr, slot_cursor, slot_rows,
                     ev_unit_c, ev_slot_c, col_ptr, col_slots, smap, rs, stats):
    """CTF counterpart of :func:`update_exact_ideal`; sample b's train starts at t_start + b * t_step."""
    if start == 0:
        st, b = check_batch(X, D, lrg, dw_min, n, um, blm)
        if st != ST_OK:
            return st, b
    i0 = np.empty(0, np.int64)
    f0 = np.empty(0, np.float64)
    n_out = w.shape[0]
    for b in range(start, X.shape[0]):
        st, bl, clipped, er, ec = draw_sample(X[b], D[b], base, counter + b, lrg, dw_min, n, um, blm, p, q, sx,
                                              sd, buf_i, buf_f, ev_unit_r, ev_slot_r, slot_ptr, slot_cursor,
                                              slot_rows, ev_unit_c, ev_slot_c, col_ptr, col_slots, smap, rs)
        if st != ST_OK:
            return st, b
        stats[S_UPDATES] += 1
        if bl == 0:
            continue
        cnt = apply_ctf(w, cells, cst, mi, pw, period, t_start + b * t_step, carry,
                        dec, tau_off, vt_ref, v_unit, last_row, stamp_row, stamp_counter[0], sx, sd, slot_ptr,
                        slot_rows, col_ptr, col_slots, rs, stats[S_SINK:], False, i0, i0, i0, f0, f0, f0, f0)
        stamp_counter[0] += n_out
        stats[S_COINC] += cnt
        stats[S_ROW_PULSES] += er
        stats[S_COL_PULSES] += ec
        if clipped:
            stats[S_CLIPPED] += 1
    return ST_OK, X.shape[0]
