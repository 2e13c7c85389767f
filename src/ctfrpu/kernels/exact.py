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
from .prefetch import prefetch
from .trains import (ST_BAD_D, ST_BAD_X, ST_OK, ST_PROB, active_slots, check_batch, draw_events, events_by_slot,
                     events_by_unit, prepare)

ST_CAP_ROWS = 4
ST_CAP_COLS = 5

# stats slots (float64 array owned by the tile; row/column pulses are expected values)
S_UPDATES, S_COINC, S_ROW_PULSES, S_COL_PULSES, S_CLIPPED, S_RESERVED = range(6)  # (slot 5: unused)
N_STATS = 6

__all__ = ["ST_OK", "ST_BAD_X", "ST_BAD_D", "ST_PROB", "ST_CAP_ROWS", "ST_CAP_COLS", "draw_sample", "check_start",
           "account", "coincidences", "prefetch_ahead", "pulse_normals", "no_record"]


PREFETCH_AHEAD = 24
"""How many pulses ahead :func:`prefetch_ahead` asks for a cell's record and weight (tuned on a
784 x 256 CTF layer: 8-48 all help, 24 best)."""


LIST_UNROLL = 4
"""Rows per slot that :func:`coincidences` copies unconditionally (the slot's true count is
usually below it, so the copy has no data-dependent loop exit; the extra entries are overwritten
or sliced off). The row buffers carry this much slack (:class:`~ctfrpu.kernels.bundle.TrainBuffers`)."""


@numba.njit(cache=True, error_model="numpy")
def coincidences(cells, slot_ptr, slot_rows, col_ptr, col_slots):
    """The coincidences of the drawn sample as flat arrays (j, k, i) -- column, slot, row -- in the
    order every device's ``apply`` applies them: by column, then slot, then row, so each cell sees
    its pulses in time order. The first :data:`PREFETCH_AHEAD` cells are prefetched.

    Why flat: walking the CSR (columns -> their ON slots -> the rows ON at each) costs a
    mispredicted loop exit per column event (1.9 rows per event on a 784 x 256 layer), paid once
    here instead of in the pulse loop; and with :func:`prefetch_ahead` the loads of the cells
    ahead overlap the arithmetic of this one (a 784 x 256 tile's records, 13 MB, do not stay in
    cache between updates; a separate loading pass cost as much as the pulses themselves). Here,
    each column event copies :data:`LIST_UNROLL` rows unconditionally and advances by the true
    count, so the copy itself has no data-dependent exit either (-40 % for this function)."""
    n_out = cells.shape[0]
    n_p = 0
    for t in range(col_ptr[n_out]):
        k = col_slots[t]
        n_p += slot_ptr[k + 1] - slot_ptr[k]
    pj = np.empty(n_p + LIST_UNROLL, np.uint32)      # unsigned: indexing with them needs no wraparound
    pk = np.empty(n_p + LIST_UNROLL, np.uint32)
    pi = np.empty(n_p + LIST_UNROLL, np.uint32)
    c = 0
    for j in range(n_out):
        for t in range(col_ptr[j], col_ptr[j + 1]):
            k = col_slots[t]
            r0 = slot_ptr[k]
            nr = slot_ptr[k + 1] - r0
            for u in range(LIST_UNROLL):
                pj[c + u] = j
                pk[c + u] = k
                pi[c + u] = slot_rows[r0 + u]
            for u in range(LIST_UNROLL, nr):
                pj[c + u] = j
                pk[c + u] = k
                pi[c + u] = slot_rows[r0 + u]
            c += nr
    n_f = cells.shape[2]
    for c in range(min(PREFETCH_AHEAD, n_p)):
        prefetch(cells, (pj[c] * cells.shape[1] + pi[c]) * n_f)
    return pj[:n_p], pk[:n_p], pi[:n_p]


@numba.njit(cache=True, inline="always")
def prefetch_ahead(cells, w, pj, pi, c):
    """Prefetch the record and weight of the cell PREFETCH_AHEAD pulses after pulse ``c``."""
    a = min(c + PREFETCH_AHEAD, pj.size - 1)
    j, i = pj[a], pi[a]
    prefetch(cells, (j * cells.shape[1] + i) * cells.shape[2])
    prefetch(w, (j * w.strides[0] + i * w.strides[1]) >> 3)      # row- or column-major weights


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
def draw_sample(x, d, ctl, b, bufs):
    """Seed the kernel generator for sample ``counter + b``, prepare and draw its trains (thinned:
    the side with fewer expected pulses in full, the other only on the slots where the first has
    pulses -- see :mod:`ctfrpu.kernels.trains`); rows end up as CSR by slot (slot_ptr, slot_rows),
    columns as CSR by column (col_ptr, col_slots).

    Scratch: buf_i int32[3 * max(in, out) + 2 + n] (live units, unit cursor, slot marks),
    buf_f float64[2 * max(in, out)]; smap uint32[n]; the event buffers are uint32 (unsigned: no
    negative-index wraparound per access).
    Returns (status, bl, clipped, expected_row_pulses, expected_col_pulses); status ST_OK with
    bl = 0 means nothing to do (x = 0, d = 0 or lr = 0). ``ctl`` and ``bufs``: :mod:`.bundle`.
    """
    base, counter, _, lrg, dw_min, n, um, blm, _, _, _, _ = ctl
    (p, q, sx, sd, buf_i, buf_f, ev_unit_r, ev_slot_r, slot_ptr, slot_cursor, slot_rows, ev_unit_c, ev_slot_c,
     col_ptr, col_slots, smap, rs, _, _) = bufs
    bl, work, clipped = prepare(x, d, lrg, dw_min, n, um, blm, p, q, sx, sd)
    if not work:
        return ST_OK, 0, False, 0.0, 0.0
    _rng.seed_stream(rs, base, counter + b)
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
def check_start(X, D, ctl):
    """Validate the whole batch before anything is applied (only when starting at sample 0, so a
    bad sample leaves the weights untouched): (status, first bad sample or -1)."""
    _, _, start, lrg, dw_min, n, um, blm, _, _, _, _ = ctl
    if start == 0:
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


@numba.njit(cache=True)
def no_record():
    """The ``out`` argument of a device's ``apply`` when no events are recorded."""
    i0 = np.empty(0, np.int64)
    f0 = np.empty(0, np.float64)
    return (i0, i0, i0, f0, f0, f0, f0)
