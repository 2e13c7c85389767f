"""The CTF pulse closed form specialised for the update kernels (same numbers as the device's).

``CTFDevice.pulse_math_nb`` is written for scalars and arrays alike: per call it selects the
polarity's parameters, evaluates exp(-w / tau_on) and a float power for the saturation. Within one
update the pulse width is fixed, so this module precomputes per polarity (see
:func:`sign_consts`)::

    w = max(pw - t_d, 0),  c = exp(-w / tau_on),  lin = (1 + a) w - a tau_on (1 - c),  aq = a tau_on (1 - c)
    dV = sign kappa kscale s(V_T) (lin + aq e0) max(0, 1 + dv_std xi),   e1 = 1 - (1 - e0) c

which is the device's ``(1 + a) w - a tau_on (1 - e0)(1 - c)`` rearranged, and evaluates the
saturation power u^m by repeated squaring when m is an integer. ``tests/test_kernels.py`` checks
:func:`pulse` against ``pulse_math_nb`` to rounding error.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# indices of CTFDevice.kernel_params() (mirrors ctfrpu.devices.ctf.K_*)
from ..devices.ctf import (K_A_E, K_A_P, K_DV_STD, K_KAPPA_E, K_KAPPA_P, K_M, K_NORM, K_TAU_ON_E, K_TAU_ON_P,
                           K_TD_E, K_TD_P)

N_CONSTS = 11
(C_KAP_P, C_LIN_P, C_AQ_P, C_C_P, C_KAP_E, C_LIN_E, C_AQ_E, C_C_E, C_M, C_NORM, C_DVSTD) = range(N_CONSTS)


def _pol(prm, pw, kappa_i, a_i, tau_i, td_i):
    kappa, a, tau_on, t_d = prm[kappa_i], prm[a_i], prm[tau_i], prm[td_i]
    w = max(pw - t_d, 0.0)
    c = math.exp(-w / tau_on)
    return kappa, (1.0 + a) * w - a * tau_on * (1.0 - c), a * tau_on * (1.0 - c), c


def sign_consts(prm: np.ndarray, pw: float) -> np.ndarray:
    """Per-train constants for :func:`pulse` (float64[N_CONSTS])."""
    out = np.empty(N_CONSTS)
    out[C_KAP_P:C_C_P + 1] = _pol(prm, pw, K_KAPPA_P, K_A_P, K_TAU_ON_P, K_TD_P)
    out[C_KAP_E:C_C_E + 1] = _pol(prm, pw, K_KAPPA_E, K_A_E, K_TAU_ON_E, K_TD_E)
    out[C_M] = prm[K_M]
    out[C_NORM] = prm[K_NORM]
    out[C_DVSTD] = prm[K_DV_STD]
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
def pulse_s(vt, e0, sign, kscale, lo, hi, kp, lp, ap, cp, ke, le, ae, ce, mi, m, inv_norm, dv_std, xi):
    """One pulse (sign +1 program / -1 erase) -> (vt_new, e_new), constants as scalars (the
    kernels hoist them out of their loops). Branch-free in the sign (signs of successive
    coincidences are unpredictable)."""
    prog = sign > 0
    kap = kp if prog else ke
    lin = lp if prog else le
    aq = ap if prog else ae
    c = cp if prog else ce
    u = min(max((vt - lo) / (hi - lo), 0.0), 1.0)
    base = 0.5 * (1.0 - sign) + sign * u  # u for program, 1 - u for erase
    sat = (1.0 - pow_m(base, mi, m)) * inv_norm
    noise = max(1.0 + dv_std * xi, 0.0)
    vt_new = min(max(vt + sign * kap * kscale * sat * (lin + aq * e0) * noise, lo), hi)
    return vt_new, 1.0 - (1.0 - e0) * c


@numba.njit(cache=True, inline="always")
def pulse(vt, e0, sign, kscale, lo, hi, cst, mi, xi):
    """:func:`pulse_s` with the constants of :func:`sign_consts`."""
    return pulse_s(vt, e0, sign, kscale, lo, hi, cst[0], cst[1], cst[2], cst[3], cst[4], cst[5], cst[6], cst[7],
                   mi, cst[8], 1.0 / cst[9], cst[10], xi)


@numba.njit(cache=True)
def pulse_vec(vt, e0, sign, kscale, lo, hi, cst, mi, xi, vt_out, e_out):
    """Test helper: :func:`pulse` over arrays."""
    for i in range(vt.size):
        vt_out[i], e_out[i] = pulse(vt[i], e0[i], sign[i], kscale[i], lo[i], hi[i], cst, mi, xi[i])
