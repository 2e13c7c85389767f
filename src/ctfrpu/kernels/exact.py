"""The device-independent half of the pulse-exact update (numba): drawing a sample's trains and
the bookkeeping around each device's ``apply``.

Per sample (docs/science.md §3): draw the row trains (one per input i, ON probability p_i per
slot) and the column trains (one per output j, q_j), bucket the row events by slot, then the
device applies one pulse per coincidence (its ``apply`` kernel, see ``docs/architecture.md``).
Cost ~ (row pulses + column pulses) + coincidences + BL, never N x rows x cols.

Loop order (every device's ``apply``). Cells are independent, so only each cell's own pulses must
be applied in time order. The kernels walk the columns j (rows of W, contiguous in memory), and
for each j its ON slots k in increasing order, and for each k the rows i ON at k: every cell (j, i)
sees its pulses in time order, and all the per-cell records touched while j is processed are one
contiguous row of length in_size (cache-resident).
"""

from __future__ import annotations

import numba
import numpy as np

from . import rng as _rng
from .bundle import (B_BUF_F, B_BUF_I, B_BUF_U, B_COL_PTR, B_COL_SLOTS, B_EV_SLOT_C, B_EV_SLOT_R, B_EV_UNIT_C,
                     B_EV_UNIT_R, B_IDENT, B_NONE_F, B_NONE_I, B_P, B_PI, B_PJ, B_PK, B_Q, B_RS, B_SD, B_SLOT_CURSOR,
                     B_SLOT_PTR, B_SLOT_ROWS, B_SMAP, B_SX, B_Z)
from .prefetch import prefetch
from .nrt import NO_NRT
from .trains import (ST_BAD_D, ST_BAD_X, ST_OK, ST_PROB, active_slots, check_batch, check_max, draw_events,
                     events_by_slot, events_by_unit, prepare_max, sample_max)

ST_CAP_ROWS = 4
ST_CAP_COLS = 5

# stats slots (float64 array owned by the tile; row/column pulses are expected values)
S_UPDATES, S_COINC, S_ROW_PULSES, S_COL_PULSES, S_CLIPPED, S_RESERVED = range(6)  # (slot 5: unused)
N_STATS = 6

__all__ = ["ST_OK", "ST_BAD_X", "ST_BAD_D", "ST_PROB", "ST_CAP_ROWS", "ST_CAP_COLS", "draw_sample", "check_start",
           "account", "coincidences", "prefetch_ahead", "pulse_normals", "no_record", "NO_NRT"]


PREFETCH_AHEAD = 24
"""How many pulses ahead :func:`prefetch_ahead` asks for a cell's record and weight (tuned on a
784 x 256 CTF layer: 8-48 all help, 24 best)."""


LIST_UNROLL = 4
"""Rows per slot that :func:`coincidences` copies unconditionally (the slot's true count is
usually below it, so the copy has no data-dependent loop exit; the extra entries are overwritten
or sliced off). The row buffers carry this much slack (:class:`~ctfrpu.kernels.bundle.TrainBuffers`)."""


@numba.njit(cache=True, inline="always")
def _prefetch_first(cells, pj, pi, n):
    n_f = cells.shape[2]
    for c in range(min(PREFETCH_AHEAD, n)):
        prefetch(cells, (pj[c] * cells.shape[1] + pi[c]) * n_f)


@numba.njit(cache=True, error_model="numpy", **NO_NRT)
def coincidences(cells, bufs, t, j):
    """The next segment of the drawn sample's coincidences as flat arrays (j, k, i) -- column, slot,
    row -- in ``bufs``' pj, pk, pi, in the order every device's ``apply`` applies them: by column,
    then slot, then row, so each cell sees its pulses in time order. The segment starts at column
    event ``t`` (of column ``j``) and takes whole column events while they fit in the buffers'
    capacity (>= in_size, so at least one always fits). Returns (pulses in the segment, t and j to
    continue from); 0 pulses: none left. Start with t = j = 0. The segment's first
    :data:`PREFETCH_AHEAD` cells are prefetched.

    Why flat: walking the CSR (columns -> their ON slots -> the rows ON at each) costs a
    mispredicted loop exit per column event (1.9 rows per event on a 784 x 256 layer), paid once
    here instead of in the pulse loop; and with :func:`prefetch_ahead` the loads of the cells
    ahead overlap the arithmetic of this one (a 784 x 256 tile's records, 13 MB, do not stay in
    cache between updates; a separate loading pass cost as much as the pulses themselves). Here,
    each column event copies :data:`LIST_UNROLL` rows unconditionally and advances by the true
    count, so the copy itself has no data-dependent exit either (-40 % for this function). Why
    segments: the list lives in preallocated buffers (the kernels do not allocate), and a sample's
    coincidences have no useful bound (up to N x rows x columns)."""
    slot_ptr, slot_rows, col_ptr, col_slots = bufs[B_SLOT_PTR], bufs[B_SLOT_ROWS], bufs[B_COL_PTR], bufs[B_COL_SLOTS]
    pj, pk, pi = bufs[B_PJ], bufs[B_PK], bufs[B_PI]
    # unsigned throughout: an index that may be negative costs a wraparound test per access
    one = np.uint64(1)
    cap = np.uint64(pj.size - LIST_UNROLL)           # (the buffers carry that much slack)
    n_out = np.uint64(cells.shape[0])
    c = np.uint64(0)
    t = np.uint64(t)
    j = np.uint64(j)
    while j < n_out:
        end = np.uint64(col_ptr[j + one])
        while t < end:
            k = col_slots[t]
            r0 = np.uint64(slot_ptr[k])
            nr = np.uint64(slot_ptr[k + one]) - r0
            if c + nr > cap:                         # full: this event starts the next segment
                _prefetch_first(cells, pj, pi, c)
                return np.int64(c), np.int64(t), np.int64(j)
            for u in range(LIST_UNROLL):
                cu = c + np.uint64(u)
                pj[cu] = j
                pk[cu] = k
                pi[cu] = slot_rows[r0 + np.uint64(u)]
            u = np.uint64(LIST_UNROLL)
            while u < nr:
                pj[c + u] = j
                pk[c + u] = k
                pi[c + u] = slot_rows[r0 + u]
                u += one
            c += nr
            t += one
        j += one
    _prefetch_first(cells, pj, pi, c)
    return np.int64(c), np.int64(t), np.int64(j)


@numba.njit(cache=True, inline="always")
def prefetch_ahead(cells, w, pj, pi, c, n):
    """Prefetch the record and weight of the cell PREFETCH_AHEAD pulses after pulse ``c`` of a
    segment of ``n``."""
    a = min(c + PREFETCH_AHEAD, n - 1)
    j, i = pj[a], pi[a]
    prefetch(cells, (j * cells.shape[1] + i) * cells.shape[2])


@numba.njit(cache=True, **NO_NRT)
def pulse_normals(noisy, n, bufs):
    """The n standard normals of a segment's cycle-to-cycle noise into ``bufs``' z (pulse c uses
    z[c]), drawn in one tight loop before its pulses: interleaved with the pulse arithmetic the
    generator ran ~5x slower. Segment after segment, the same stream as for one long list."""
    if noisy:
        _rng.fill_normal(bufs[B_RS], bufs[B_Z][:n])


@numba.njit(cache=True, **NO_NRT)
def draw_sample(x, d, ctl, b, bufs):
    """Seed the kernel generator for sample ``counter + b``, prepare and draw its trains (thinned:
    the side with fewer expected pulses in full, the other only on the slots where the first has
    pulses -- see :mod:`ctfrpu.kernels.trains`); rows end up as CSR by slot (slot_ptr, slot_rows),
    columns as CSR by column (col_ptr, col_slots).

    Scratch: buf_i int32[3 * max(in, out) + 2 + n] (live units, unit cursor, slot marks),
    buf_f float64[max(in, out)], buf_u uint64[max(in, out)] (live units' skip rates, positions);
    smap uint32[n]; the event buffers are uint32 (unsigned: no
    negative-index wraparound per access).
    Returns (status, bl, clipped, expected_row_pulses, expected_col_pulses); status ST_OK with
    bl = 0 means nothing to do (x = 0, d = 0 or lr = 0); ST_BAD_X / ST_BAD_D / ST_PROB for a sample
    :func:`~ctfrpu.kernels.trains.check_sample` refuses, before any buffer is touched. ``ctl`` and
    ``bufs``: :mod:`.bundle`.
    """
    base, counter, _, lrg, dw_min, n, um, blm, _, _, _, _ = ctl
    p, q, sx, sd, rs, smap = bufs[B_P], bufs[B_Q], bufs[B_SX], bufs[B_SD], bufs[B_RS], bufs[B_SMAP]
    buf_i, buf_f = bufs[B_BUF_I], bufs[B_BUF_F]
    ev_unit_r, ev_slot_r, ev_unit_c, ev_slot_c = bufs[B_EV_UNIT_R], bufs[B_EV_SLOT_R], bufs[B_EV_UNIT_C], bufs[B_EV_SLOT_C]
    # the sample's checks (what check_start did for the whole batch, needed here at batch 1) and
    # its maxima in one scan
    st, xmax, dmax = sample_max(x, d)
    if st == ST_OK:
        st, _, _ = check_max(xmax, dmax, lrg, dw_min, n, um, blm)
    if st != ST_OK:
        return st, 0, False, 0.0, 0.0
    bl, work, clipped = prepare_max(x, d, xmax, dmax, lrg, dw_min, n, um, blm, p, q, sx, sd)
    if not work:
        return ST_OK, 0, False, 0.0, 0.0
    _rng.seed_stream(rs, base, counter + b)
    nu = max(x.size, d.size)
    act_unit = buf_i[:nu]
    cursor_u = buf_i[nu:2 * nu + 1]
    mark = buf_i[2 * nu + 1:2 * nu + 1 + n]
    act_pos = bufs[B_BUF_U]
    act_ninv = buf_f
    er = bl * p.sum()
    ec = bl * q.sum()
    ident = bufs[B_IDENT]
    if ec <= er:
        nc_ev = draw_events(q, bl, ident, rs, act_unit, act_pos, act_ninv, ev_unit_c, ev_slot_c)
        if nc_ev < 0:
            return ST_CAP_COLS, bl, clipped, er, ec
        m = active_slots(nc_ev, ev_slot_c, bl, mark, smap)
        nr_ev = draw_events(p, m, smap, rs, act_unit, act_pos, act_ninv, ev_unit_r, ev_slot_r)
        if nr_ev < 0:
            return ST_CAP_ROWS, bl, clipped, er, ec
    else:
        nr_ev = draw_events(p, bl, ident, rs, act_unit, act_pos, act_ninv, ev_unit_r, ev_slot_r)
        if nr_ev < 0:
            return ST_CAP_ROWS, bl, clipped, er, ec
        m = active_slots(nr_ev, ev_slot_r, bl, mark, smap)
        nc_ev = draw_events(q, m, smap, rs, act_unit, act_pos, act_ninv, ev_unit_c, ev_slot_c)
        if nc_ev < 0:
            return ST_CAP_COLS, bl, clipped, er, ec
    events_by_slot(nr_ev, ev_unit_r, ev_slot_r, bl, bufs[B_SLOT_PTR], bufs[B_SLOT_CURSOR], bufs[B_SLOT_ROWS])
    events_by_unit(nc_ev, ev_unit_c, ev_slot_c, d.size, bufs[B_COL_PTR], cursor_u, bufs[B_COL_SLOTS])
    return ST_OK, bl, clipped, er, ec




@numba.njit(cache=True, **NO_NRT)
def check_start(X, D, ctl):
    """Validate the whole batch before anything is applied (only when starting at sample 0, so a
    bad sample leaves the weights untouched): (status, first bad sample or -1)."""
    _, _, start, lrg, dw_min, n, um, blm, _, _, _, _ = ctl
    if start == 0 and X.shape[0] > 1:          # (one sample: draw_sample checks it before any change)
        return check_batch(X, D, lrg, dw_min, n, um, blm)
    return ST_OK, -1


@numba.njit(cache=True, inline="always")
def account(stats, cnt, er, ec, clipped):
    """Count one applied sample's pulses (coincidences, expected row / column pulses, clipping)."""
    stats[S_COINC] += cnt
    stats[S_ROW_PULSES] += er
    stats[S_COL_PULSES] += ec
    if clipped:
        stats[S_CLIPPED] += 1


@numba.njit(cache=True, inline="always")
def no_record(bufs):
    """The ``out`` argument of a device's ``apply`` when no events are recorded: empty arrays of
    ``bufs`` (inlined: arrays handed out of a function compiled without reference counting must
    not reach one compiled with it)."""
    e_i, e_f = bufs[B_NONE_I], bufs[B_NONE_F]
    return (e_i, e_i, e_i, e_f, e_f, e_f, e_f)
