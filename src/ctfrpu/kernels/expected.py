"""Expected (noise-free mean) and Gaussian update modes: what all devices share (numba).

Each device's ``expected`` kernel (its plug-in file) runs dense over the active cells.

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

import numba
import numpy as np

from .trains import train_length

VAR_GRID = 256
"""Intervals of the P grid of a tabulated per-cell variance (CTF Gaussian mode)."""


@numba.njit(cache=True)
def active_units(prob, idx):
    """Indices of the units with prob > 0 into idx; returns their number."""
    m = 0
    for u in range(prob.size):
        if prob[u] > 0.0:
            idx[m] = u
            m += 1
    return m


@numba.njit(cache=True)
def active_either(prob_a, prob_b, idx):
    """Indices of the units with prob_a > 0 or prob_b > 0 (two designs of one sample) into idx;
    returns their number."""
    m = 0
    for u in range(prob_a.size):
        if prob_a[u] > 0.0 or prob_b[u] > 0.0:
            idx[m] = u
            m += 1
    return m


@numba.njit(cache=True, inline="always")
def interp_table(tab, sidx, pp):
    """Linear interpolation of row ``sidx`` of a table on the grid P = k / VAR_GRID."""
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
