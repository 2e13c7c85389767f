"""Numba-parallel code paths of OUR CTF model (same closed form as :mod:`ctfrpu.devices.ctf`).

Both use :func:`_pulse`, a scalar form of :func:`ctfrpu.devices.ctf.pulse_math` that evaluates
only the branch of the pulse's polarity and an integer saturation exponent by multiplication (the
tests check it against the numpy path).

* :func:`apply_pulses_fast` -- drop-in for :meth:`CTFDevice.apply_pulses`, parallel over cells
  (one thread per block of cells, pulses sequential per cell). Without cycle-to-cycle noise it
  gives the same result as the numpy path to rounding; with noise it draws its normals from a
  counter-based generator (splitmix64 + Box-Muller, keyed by a seed taken from ``rng``, the cell
  and the pulse index), so it is reproducible for any number of threads, but it is a different
  random stream from the numpy path (statistically equivalent, not bit-equal); pulse k of a cell
  uses one of the two Box-Muller normals of pair k // 2, so one hash and one log serve two pulses.
* :func:`train_dvt` -- deterministic response of nominal, noise-free cells to regular trains
  (N pulses of width pw, gap t_gap), one train per row; used by ``ctfrpu device response``
  and ``ctfrpu device fit``. V_T is updated pulse by pulse (s follows V_T), unlike
  :meth:`CTFDevice.expected_train_dvt`, which freezes s at the start.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..errors import CtfrpuError
from .base import DeviceState
from .ctf import (K_A_E, K_A_P, K_DV_STD, K_KAPPA_E, K_KAPPA_P, K_M, K_NORM, K_TAU_OFF, K_TAU_ON_E, K_TAU_ON_P,
                  K_TD_E, K_TD_P, CTFDevice, check_pulses_lazy, pulse_coeffs)
from .ctf_update import int_exponent, ipow

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_CELL = np.uint64(0xD1B54A32D192ED03)


@numba.njit(cache=True, inline="always")
def _mix(x):
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def _pulse(vt, e0, pw, sign, kscale, vmin, vmax, prm, xi, m_int):
    """Scalar equivalent of :func:`ctfrpu.devices.ctf.pulse_math` for sign = +1 or -1 (the same
    closed form; evaluates only the branch of the pulse's polarity, so it is cheaper)."""
    if sign > 0:
        kappa, a, tau_on, t_d = prm[K_KAPPA_P], prm[K_A_P], prm[K_TAU_ON_P], prm[K_TD_P]
    else:
        kappa, a, tau_on, t_d = prm[K_KAPPA_E], prm[K_A_E], prm[K_TAU_ON_E], prm[K_TD_E]
    if pw - t_d <= 0.0:
        return min(max(vt, vmin), vmax), e0
    lin, aq, c = pulse_coeffs(a, tau_on, t_d, pw)
    u = min(max((vt - vmin) / (vmax - vmin), 0.0), 1.0)
    x = u if sign > 0 else 1.0 - u
    s = (1.0 - (ipow(x, m_int) if m_int > 0 else x ** prm[K_M])) / prm[K_NORM]
    noise = max(0.0, 1.0 + prm[K_DV_STD] * xi)
    dv = sign * kappa * kscale * s * (lin + aq * e0) * noise
    return min(max(vt + dv, vmin), vmax), 1.0 - (1.0 - e0) * c


def _m_int(prm: np.ndarray) -> int:
    return int_exponent(float(prm[K_M]))


@numba.njit(cache=True, inline="always")
def _normal_pair(seed, cell, pair):
    """Two independent standard normals for (seed, cell, pair): splitmix64 hash, then Box-Muller."""
    h1 = _mix(seed ^ _mix(np.uint64(cell) * _CELL + np.uint64(pair)))
    h2 = _mix(h1)
    u1 = (float(h1 >> np.uint64(11)) + 1.0) * (1.0 / 9007199254740992.0)   # (0, 1]
    u2 = float(h2 >> np.uint64(11)) * (1.0 / 9007199254740992.0)           # [0, 1)
    r = math.sqrt(-2.0 * math.log(u1))
    return r * math.cos(2.0 * math.pi * u2), r * math.sin(2.0 * math.pi * u2)


_BLOCK = 64
"""Cells per block: a thread steps a block of cells through each pulse in turn, so the independent
per-cell chains overlap in the CPU (one cell alone is latency-bound: two exps and divisions
per pulse, each depending on the previous pulse)."""


@numba.njit(parallel=True, cache=True)
def _apply_kernel(vt, e, t_last, kscale, lo, hi, prm, times, widths, signs, seed, noisy, bad, m_int):
    n_cells = vt.shape[0]
    n_pulses = signs.shape[1]
    inv_tau_off = 1.0 / prm[K_TAU_OFF]
    st = np.int64(1) if times.shape[0] > 1 else np.int64(0)     # row stride: per-cell or shared train
    sw = np.int64(1) if widths.shape[0] > 1 else np.int64(0)
    ss = np.int64(1) if signs.shape[0] > 1 else np.int64(0)
    n_blocks = (n_cells + _BLOCK - 1) // _BLOCK
    for b in numba.prange(n_blocks):
        c0 = b * _BLOCK
        c1 = min(c0 + _BLOCK, n_cells)
        spare = np.empty(_BLOCK)          # second normal of the last Box-Muller pair of each cell
        spare_pair = np.full(_BLOCK, -1)
        for k in range(n_pulses):
            for c in range(c0, c1):
                s = signs[c * ss, k]
                if s == 0.0:
                    continue
                t = times[c * st, k]
                w = widths[c * sw, k]
                tl = t_last[c]
                off = t - tl if math.isfinite(tl) else math.inf
                if off < -(1e-15 + 1e-12 * abs(t)):
                    bad[c] = 1
                e0 = e[c] * math.exp(-max(off, 0.0) * inv_tau_off)
                xi = 0.0
                if noisy:                  # pulse k uses normal (k % 2) of pair k // 2 of this cell
                    j = c - c0
                    pair = k >> 1
                    if (k & 1) and spare_pair[j] == pair:
                        xi = spare[j]
                    else:
                        z0, z1 = _normal_pair(seed, c, pair)
                        xi = z1 if (k & 1) else z0
                        spare[j] = z1
                        spare_pair[j] = pair
                v, ee = _pulse(vt[c], e0, w, s, kscale[c], lo[c], hi[c], prm, xi, m_int)
                vt[c] = v
                e[c] = ee
                t_last[c] = t + w


def _rows(small: np.ndarray, full: np.ndarray, n_cells: int) -> np.ndarray:
    """(1, K) if the pulse array is shared by all cells, else a contiguous (cells, K) copy."""
    k = full.shape[-1]
    if int(np.prod(small.shape[:-1], dtype=np.int64)) == 1:
        return np.ascontiguousarray(small.reshape(1, k), dtype=np.float64)
    return np.ascontiguousarray(full.reshape(n_cells, k), dtype=np.float64)


def apply_pulses_fast(device: CTFDevice, state: DeviceState, times, widths, signs,
                      rng: np.random.Generator | None = None) -> DeviceState:
    """Numba-parallel :meth:`CTFDevice.apply_pulses` (same arguments, same validation and errors).

    A train shared by all cells (arrays of shape (K,)) is passed to the kernel once; per-cell
    arrays are copied to (cells, K).
    """
    small, full = check_pulses_lazy(state.shape, times, widths, signs)
    n_cells = int(np.prod(state.shape, dtype=np.int64))
    t2, w2, s2 = (_rows(a, b, n_cells) for a, b in zip(small, full))
    noisy = rng is not None and device.dv_std > 0
    seed = np.uint64(rng.integers(0, 2**63)) if noisy else np.uint64(0)
    flat = lambda a: np.ascontiguousarray(a, dtype=np.float64).reshape(n_cells).copy()  # noqa: E731
    vt, e, t_last = flat(state.vt), flat(state.e), flat(state.t_last)
    bad = np.zeros(n_cells, dtype=np.uint8)
    _apply_kernel(vt, e, t_last, flat(state.rate_scale), flat(state.lo), flat(state.hi), device.kernel_params(),
                  t2, w2, s2, seed, noisy, bad, _m_int(device.kernel_params()))
    if bad.any():
        raise CtfrpuError("pulses: a pulse starts before the previous one ended")
    vt, e, t_last = (a.reshape(state.shape) for a in (vt, e, t_last))
    return state.replace(vt=vt, e=e, t_last=t_last, w=(vt - device.vt_ref) / device.v_unit)


@numba.njit(cache=True)
def _train_kernel(vt0, e0, kscale, lo, hi, prm, pw, n, gap, sign, vt_out, e_out, m_int):
    # serial on purpose: used for small workloads (response curves, fits) where a parallel
    # region's start-up costs more than the work, especially on a loaded machine
    tau_off = prm[K_TAU_OFF]
    for r in range(vt0.shape[0]):
        v = vt0[r]
        ee = e0[r]
        decay = math.exp(-gap[r] / tau_off)
        for k in range(n[r]):
            if k > 0:
                ee *= decay
            if sign[r] != 0.0:
                v, ee = _pulse(v, ee, pw[r], sign[r], kscale[r], lo[r], hi[r], prm, 0.0, m_int)
        vt_out[r] = v
        e_out[r] = ee


def train_dvt(device: CTFDevice, pw, n, gap, sign=1.0, vt0=None, e0=0.0, kscale=1.0,
              lo=None, hi=None) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free response to regular trains: ``(dV_T, e at the end of the last pulse)``.

    Row r applies n[r] pulses of width pw[r] (s), consecutive pulses separated by gap[r] (s), to a
    cell starting at V_T = vt0 (default vt_ref) with enhancement e0 at the first pulse's start.
    Inputs broadcast together; a nominal cell (kscale 1, window vt_min..vt_max) by default.
    Equal, to rounding, to :meth:`CTFDevice.apply_pulses` on the same train with dv_std = 0.
    """
    vt0 = device.vt_ref if vt0 is None else vt0
    lo = device.vt_min if lo is None else lo
    hi = device.vt_max if hi is None else hi
    arrs = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (pw, n, gap, sign, vt0, e0, kscale, lo, hi)))
    shape = arrs[0].shape
    pw_, n_, gap_, sign_, vt0_, e0_, ks_, lo_, hi_ = (np.ascontiguousarray(a).reshape(-1) for a in arrs)
    if not all(np.all(np.isfinite(a)) for a in (pw_, n_, gap_, vt0_, e0_)):
        raise CtfrpuError("train response: pw, N, gap, vt0 and e0 must be finite")
    if np.any(pw_ <= 0) or np.any(gap_ < 0) or np.any(n_ < 1) or np.any(n_ != np.round(n_)):
        raise CtfrpuError("train response: need pw > 0, gap >= 0 and integer N >= 1")
    if np.any((e0_ < 0) | (e0_ > 1)):
        raise CtfrpuError("train response: e0 must lie in [0, 1]")
    vt_out = np.empty_like(vt0_)
    e_out = np.empty_like(vt0_)
    prm = device.kernel_params()
    _train_kernel(vt0_, e0_, ks_, lo_, hi_, prm, pw_, n_.astype(np.int64), gap_, sign_, vt_out, e_out, _m_int(prm))
    return (vt_out - vt0_).reshape(shape), e_out.reshape(shape)
