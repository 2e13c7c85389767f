"""The typed records every update kernel takes instead of dozens of positional arguments.

Every device's kernels share one signature (see ``docs/architecture.md``)::

    exact(X, D, ctl, w, cells, dev, bufs, stats) -> (status, sample)
    expected(X, D, ctl, w, cells, dev, bufs, stats) -> (status, sample)
    apply(w, cells, dev, bufs, t0, rec, out) -> pulses applied      (one drawn sample)

* ``ctl`` -- the per-call scalars, a plain tuple built by :func:`make_ctl` (order: :data:`CTL_FIELDS`);
* ``bufs`` -- the tile's scratch for drawing trains, a plain tuple (order: :data:`BUF_FIELDS`) owned
  and grown by :class:`TrainBuffers`;
* ``dev`` -- the device's per-design constants and per-tile scratch, a tuple its plan builds
  (opaque to the tile);
* ``w`` (out, in) weights, ``cells`` (out, in, F) per-cell records, ``stats`` float64[N_STATS].

The update kernels are compiled without numba's reference counting (``_nrt=False``, see
``docs/architecture.md``): they never allocate, which is why every scratch array, the pulse list
included, lives here.

Plain tuples, not named tuples: numba types a plain tuple of arrays in its C fast path (~2 us per
call for 27 values, as for positional arguments), a named tuple in Python (~5 us; measured with
numba 0.6x on this machine). Kernels unpack them by name on their first line.
"""

from __future__ import annotations

import numpy as np

from . import rng as krng

CTL_FIELDS = ("base", "counter", "start", "lrg", "dw_min", "n", "um", "blm", "t_start", "t_step", "gauss",
              "noise_scale")
"""Fields of ``ctl``: tile base seed, stream counter of sample 0, first sample to process, lr * gain,
dw_min, N (the pulse count; aihwkit's BL before BL management), update management, BL management,
start time of sample 0's train, time between trains, Gaussian noise (expected modes), its scale."""

BUF_FIELDS = ("p", "q", "sx", "sd", "buf_i", "buf_f", "ev_unit_r", "ev_slot_r", "slot_ptr", "slot_cursor",
              "slot_rows", "ev_unit_c", "ev_slot_c", "col_ptr", "col_slots", "smap", "rs", "rows_idx", "cols_idx",
              "pj", "pk", "pi", "z", "none_i", "none_f", "buf_u", "ident")
(B_P, B_Q, B_SX, B_SD, B_BUF_I, B_BUF_F, B_EV_UNIT_R, B_EV_SLOT_R, B_SLOT_PTR, B_SLOT_CURSOR, B_SLOT_ROWS, B_EV_UNIT_C,
 B_EV_SLOT_C, B_COL_PTR, B_COL_SLOTS, B_SMAP, B_RS, B_ROWS_IDX, B_COLS_IDX, B_PJ, B_PK, B_PI, B_Z, B_NONE_I,
 B_NONE_F, B_BUF_U, B_IDENT) = range(len(BUF_FIELDS))
"""Positions in ``bufs`` (kernels read the fields they need as ``bufs[B_...]``, never by unpacking the
whole tuple). pj/pk/pi/z: one segment of the flat coincidence list and its normals
(:func:`ctfrpu.kernels.exact.coincidences`); none_i/none_f: empty arrays, the ``out`` of an
``apply`` that records nothing; buf_u: the live units' train positions while drawing; ident:
0..N-1, the slot map of a full train (never written)."""

LOOP_FIELDS = ("w", "cells", "dev", "bufs", "stats", "ctl0", "counter", "clock", "io", "rng", "analog")
"""Fields of a layer tuple of the compiled training loop (``tile.loop_layer()``,
:mod:`ctfrpu.training.compiled`): weights, records, kernel constants, scratch, counters, the fixed
``ctl`` fields, sample counter [1], [clock, gain], I/O periphery (inp_res, out_res, out_noise),
generator, analog flag."""
(L_W, L_CELLS, L_DEV, L_BUFS, L_STATS, L_CTL0, L_COUNTER, L_CLOCK, L_IO, L_RNG, L_ANALOG) = range(len(LOOP_FIELDS))

INITIAL_CAPACITY = 16384
ROW_SLACK = 4
"""Entries past the row events' capacity in ``slot_rows`` (>= :data:`ctfrpu.kernels.exact.LIST_UNROLL`);
also past the pulse list's capacity in pj/pk/pi."""
PULSE_CAPACITY = 16384
"""Pulses per segment of the flat coincidence list (at least ``in_size``, the most one column event can
have): a sample with more coincidences is applied in several segments, in the same order."""


def make_ctl(base: int, counter: int, start: int, lrg: float, dw_min: float, n: int, um: bool, blm: bool,
             t_start: float = 0.0, t_step: float = 0.0, gauss: bool = False, noise_scale: float = 1.0) -> tuple:
    """The ``ctl`` tuple (types fixed, so every call hits the same compiled specialisation)."""
    return (int(base), int(counter), int(start), float(lrg), float(dw_min), int(n), bool(um), bool(blm),
            float(t_start), float(t_step), bool(gauss), float(noise_scale))


class TrainBuffers:
    """Scratch of the train-drawing kernels for a tile of ``out_size x in_size`` and N slots.

    The event buffers start small and double on demand up to a bound that always suffices
    ((N + 1) x units); :meth:`grow` refuses to go past it, so a kernel fault can never loop.
    """

    def __init__(self, out_size: int, in_size: int, n: int):
        self.in_size, self.out_size, self.n = in_size, out_size, n
        nu = max(in_size, out_size)
        self.p = np.zeros(in_size)
        self.sx = np.zeros(in_size)
        self.q = np.zeros(out_size)
        self.sd = np.zeros(out_size)
        self.buf_i = np.zeros(3 * nu + 2 + n, dtype=np.int32)
        self.buf_f = np.zeros(nu)
        self.buf_u = np.zeros(nu, dtype=np.uint64)
        self.col_ptr = np.zeros(out_size + 1, dtype=np.int64)
        self.slot_ptr = np.zeros(n + 1, dtype=np.int64)
        self.slot_cursor = np.zeros(n, dtype=np.int64)
        self.smap = np.zeros(n, dtype=np.uint32)
        self.ident = np.arange(n, dtype=np.uint32)
        self.rows_idx = np.zeros(in_size, dtype=np.int64)
        self.cols_idx = np.zeros(out_size, dtype=np.int64)
        self.rs = krng.new_state()
        self.cap_p = max(PULSE_CAPACITY, in_size)
        self.pj = np.zeros(self.cap_p + ROW_SLACK, dtype=np.uint32)
        self.pk = np.zeros(self.cap_p + ROW_SLACK, dtype=np.uint32)
        self.pi = np.zeros(self.cap_p + ROW_SLACK, dtype=np.uint32)
        self.z = np.zeros(self.cap_p)
        self.none_i = np.zeros(0, dtype=np.int64)
        self.none_f = np.zeros(0)
        self.max_r = (n + 1) * in_size
        self.max_c = (n + 1) * out_size
        self.cap_r = min(self.max_r, INITIAL_CAPACITY)
        self.cap_c = min(self.max_c, INITIAL_CAPACITY)
        self._alloc_rows()
        self._alloc_cols()
        self._pack()

    def _alloc_rows(self) -> None:
        self.ev_unit_r = np.zeros(self.cap_r, dtype=np.uint32)
        self.ev_slot_r = np.zeros(self.cap_r, dtype=np.uint32)
        # slack: kernels.exact.coincidences reads LIST_UNROLL rows past a slot's last one
        self.slot_rows = np.zeros(self.cap_r + ROW_SLACK, dtype=np.uint32)

    def _alloc_cols(self) -> None:
        self.ev_unit_c = np.zeros(self.cap_c, dtype=np.uint32)
        self.ev_slot_c = np.zeros(self.cap_c, dtype=np.uint32)
        self.col_slots = np.zeros(self.cap_c, dtype=np.uint32)

    def _pack(self) -> None:
        self.args = tuple(getattr(self, name) for name in BUF_FIELDS)

    def grow_to_bound(self) -> None:
        """Grow both event buffers to their bound at once (for loops that cannot stop to grow them)."""
        while self.grow(rows=True):
            pass
        while self.grow(rows=False):
            pass

    def grow(self, rows: bool) -> bool:
        """Double the row (or column) event buffers; False if they are already at their bound."""
        if rows:
            if self.cap_r >= self.max_r:
                return False
            self.cap_r = min(2 * self.cap_r, self.max_r)
            self._alloc_rows()
        else:
            if self.cap_c >= self.max_c:
                return False
            self.cap_c = min(2 * self.cap_c, self.max_c)
            self._alloc_cols()
        self._pack()
        return True
