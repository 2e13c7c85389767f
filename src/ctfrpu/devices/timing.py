"""Timing models: where in time a cell's coincidences of one update happen -- OUR models.

The stochastic update decides HOW MANY pulses a cell gets (its coincidences); for a device with
memory (the CTF enhancement e) it also matters WHEN they happen, because e relaxes between them.
The papers' abstracts do not say how the update pulses of a cell are timed on the chip, so this
is a choice, made here once (``update.timing``) and used by every update mode and the design
helper (equations in ``docs/science.md`` §8):

* ``slot`` (default): a coincidence at slot k starts at t0 + k (pw + t_gap); a cell's successive
  pulses g slots apart are separated by the off time g (pw + t_gap) - pw, so
  e0 = e_prev exp(-(g (pw + t_gap) - pw) / tau_off). The per-slot mean recursion relaxes e by
  d_gap = exp(-t_gap / tau_off) after a fired slot and by d_T = exp(-(pw + t_gap) / tau_off) after
  an idle one.
* ``burst``: a cell's n coincidences are applied back to back, t_gap apart (the device-measurement
  protocol of the device paper): e0 = e_prev exp(-t_gap / tau_off) for every pulse after the first;
  in the recursion d_T = 1 (idle slots take no time for that cell).
* ``train``: each coincidence gets the per-pulse MEAN change of a fully-ON train of the design
  (what a device measurement at (pw, t_gap) reports): every pulse starts from
  e0 = e_bar = (1/N) sum_{t<N} e_t, e_0 = 0, e_{t+1} = d_gap (1 - (1 - e_t) c), c = exp(-w / tau_on)
  of its polarity; no history between pulses or updates (the device's carry-over option is ignored).

A timing model turns the device's relaxation (``decay(off_time)``) and build-up factors into
:class:`TimingTables`; the device's update kernels read only those tables, so a new timing model
is a new class here plus its registry entry -- no kernel, tile or device change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import CtfrpuError


@dataclass(frozen=True)
class TimingTables:
    """What the kernels and the moment recursions need of a timing model for one design.

    ``tab`` float64 (3, N + 1): e at a pulse's start = e_prev * tab[0, g] + tab[1 + pol, g]
    (pol 0 program, 1 erase), g = the distance to the cell's previous pulse of the update in
    positions (g = 0 for its first pulse, which starts from 0 or the carried-over e).
    ``by_slot``: a pulse's position (and time, t0 + position * period) is its slot; otherwise its
    rank among the cell's pulses of the update. ``history``: whether e may carry over between
    updates. ``d_gap`` / ``d_t``: relaxation after a fired / an idle slot in the per-slot mean and
    variance recursions. ``e_add``: per polarity, a constant e every pulse starts from (folded into
    the pulse's linear term by :meth:`fold`).
    """

    tab: np.ndarray
    by_slot: bool
    history: bool
    d_gap: float
    d_t: float
    e_add: tuple[float, float]

    def fold(self, lin: float, aq: float, pol: int) -> tuple[float, float]:
        """(lin', aq') of a pulse dV ~ lin + aq e0 for the recursions: a constant e_add is moved
        into the linear term (and the e-dependence dropped) when the timing has one."""
        e = self.e_add[pol]
        if e == 0.0:
            return lin, aq
        return lin + aq * e, 0.0


Decay = Callable[[np.ndarray | float], np.ndarray | float]


class SlotTiming:
    """Coincidences at their slot of the N-slot train (OUR default; see the module docstring)."""

    name = "slot"

    def tables(self, decay: Decay, c_pol: tuple[float, float], train) -> TimingTables:
        g = np.arange(train.n + 1, dtype=np.float64)
        dec = np.asarray(decay(g * train.period - train.pw), dtype=np.float64)
        dec[0] = 1.0
        tab = np.zeros((3, train.n + 1))
        tab[0] = dec
        return TimingTables(tab, True, True, float(decay(train.gap)), float(decay(train.period)), (0.0, 0.0))


class BurstTiming:
    """A cell's coincidences back to back, t_gap apart (OUR model; see the module docstring)."""

    name = "burst"

    def tables(self, decay: Decay, c_pol: tuple[float, float], train) -> TimingTables:
        d_gap = float(decay(train.gap))
        tab = np.zeros((3, train.n + 1))
        tab[0] = d_gap
        tab[0, 0] = 1.0
        return TimingTables(tab, False, True, d_gap, 1.0, (0.0, 0.0))


def fully_on_mean_e(c: float, d_gap: float, n: int) -> float:
    """(1/N) sum_{t<N} e_t for a fully-ON train from e_0 = 0: e_{t+1} = d_gap (1 - (1 - e_t) c)
    = beta + alpha e_t with alpha = c d_gap, beta = (1 - c) d_gap; the closed form of the
    geometric sum, e_t = m* (1 - alpha^t), m* = beta / (1 - alpha)."""
    alpha = c * d_gap
    beta = (1.0 - c) * d_gap
    if 1.0 - alpha < 1e-12:          # c d_gap = 1: no build-up (pulse within the onset delay)
        return 0.0
    m_star = beta / (1.0 - alpha)
    return float(m_star * (1.0 - (1.0 - alpha ** n) / ((1.0 - alpha) * n)))


class TrainTiming:
    """Each coincidence gets the per-pulse mean change of a fully-ON train (OUR model)."""

    name = "train"

    def tables(self, decay: Decay, c_pol: tuple[float, float], train) -> TimingTables:
        d_gap = float(decay(train.gap))
        e_bar = tuple(fully_on_mean_e(c, d_gap, train.n) for c in c_pol)
        tab = np.zeros((3, train.n + 1))
        tab[1] = e_bar[0]
        tab[2] = e_bar[1]
        return TimingTables(tab, True, False, d_gap, float(decay(train.period)), e_bar)


TIMINGS = {t.name: t for t in (SlotTiming(), BurstTiming(), TrainTiming())}
"""The registry of timing models (``update.timing``)."""


def timing_model(name: str):
    """The timing model registered as ``name`` (one-line error naming the valid ones)."""
    try:
        return TIMINGS[name]
    except KeyError:
        raise CtfrpuError(f"unknown timing model {name!r}; choose one of {', '.join(TIMINGS)}") from None
