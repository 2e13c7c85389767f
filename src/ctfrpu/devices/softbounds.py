"""Soft-bounds device (aihwkit's ``SoftBoundsDevice`` in time form): the worked example of a device
plug-in (docs/architecture.md) -- physics, update kernels and plan in this one file, registered in
:data:`ctfrpu.devices.registry.DEVICES`.

Not part of the papers' study; a standard RPU reference whose step shrinks towards the bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numba
import numpy as np

from ..errors import CtfrpuError
from ..kernels import exact as kx
from ..kernels import rng as _rng
from ..kernels.bundle import B_COLS_IDX, B_P, B_PI, B_PJ, B_PK, B_Q, B_ROWS_IDX, B_RS, B_SD, B_SX, B_Z
from ..kernels.cells import I_HI, I_LO, I_SCALE
from ..kernels.expected import active_units
from ..kernels.trains import ST_OK, check_batch, prepare
from .base import DeviceState, StepPlan, check_pulse_arrays, validate_fields
from .ideal import coerce_fields


@numba.njit(cache=True, inline="always")
def step(w, s, dw_c, lo, hi):
    """Mean step of one pulse of sign s at weight w: dw_c (1 - w / hi) up, dw_c (1 - w / lo) down."""
    return s * dw_c * (1.0 - w / hi) if s > 0 else s * dw_c * (1.0 - w / lo)


@dataclass(frozen=True)
class SoftBoundsDevice:
    """Device whose step shrinks linearly towards its bounds (aihwkit ``SoftBoundsDevice``).

    Update rule for a pulse of width pw and sign s::

        dw = s dw_min(pw) scale (1 - w / w_max) (1 + dw_min_std xi)     s = +1
        dw = s dw_min(pw) scale (1 - w / w_min) (1 + dw_min_std xi)     s = -1
        dw_min(pw) = rate pw,  scale = max(0, 1 + dw_min_dtod zeta) per cell,  w clipped to [w_min, w_max]

    Memoryless: the timing model does not matter. Mean of a train with per-slot probability P (the
    expected mode, w frozen at the train's start): N P step(w).
    """

    rate: float = 200.0
    """Weight change per second of ON time at w = 0 (weight units / s); dw_min = rate * pw."""
    w_min: float = -1.0
    """Lower weight bound (the step down vanishes there)."""
    w_max: float = 1.0
    """Upper weight bound (the step up vanishes there)."""
    dw_min_dtod: float = 0.0
    """Relative device-to-device spread (std) of the rate, drawn once per cell."""
    dw_min_std: float = 0.0
    """Relative cycle-to-cycle spread (std) of each pulse's step."""

    kind: str = field(default="softbounds", init=False, repr=False)

    def __post_init__(self) -> None:
        coerce_fields(self)
        validate_fields(self, positive=("rate",), nonneg=("dw_min_dtod", "dw_min_std"))
        if not self.w_min < 0 < self.w_max:
            raise CtfrpuError(f"softbounds device: need w_min < 0 < w_max, got {self.w_min}, {self.w_max}")

    title: ClassVar[str] = 'Soft-bounds device parameters (aihwkit SoftBoundsDevice)'
    """How `ctfrpu device params` names this device's parameter set."""
    time_fields: ClassVar[tuple[str, ...]] = ()
    """Parameters that are times in seconds (shown with a unit)."""

    def summary(self) -> str:
        """One line of derived quantities for `ctfrpu device params` ('' if none)."""
        return f"derived: dw_min at pw = 5us: {self.nominal_dw(5e-6):g}"

    def nominal_dw(self, pw: float) -> float:
        """Step of one pulse of width pw at w = 0 for the nominal cell (= dw_min)."""
        return self.rate * pw

    def init_state(self, shape, rng: np.random.Generator, w0: np.ndarray | None = None) -> DeviceState:
        scale = np.ones(shape)
        if self.dw_min_dtod > 0:
            scale = np.maximum(0.0, 1.0 + self.dw_min_dtod * rng.standard_normal(shape))
        w = np.zeros(shape) if w0 is None else np.clip(np.asarray(w0, dtype=np.float64), self.w_min, self.w_max)
        return DeviceState(w=w.copy(), rate_scale=scale, lo=np.full(shape, self.w_min), hi=np.full(shape, self.w_max))

    def weights(self, state: DeviceState) -> np.ndarray:
        return state.w

    def apply_pulses(self, state: DeviceState, times, widths, signs, rng=None) -> DeviceState:
        """Apply pulses (arrays of shape state.shape + (K,), sign 0 = no pulse); returns new state."""
        times, widths, signs = check_pulse_arrays(state.w.shape, times, widths, signs)
        w = state.w.copy()
        for k in range(signs.shape[-1]):
            s = signs[..., k]
            slope = np.where(s > 0, 1.0 - w / state.hi, 1.0 - w / state.lo)
            dw = s * self.rate * state.rate_scale * widths[..., k] * slope
            if self.dw_min_std > 0 and rng is not None:
                dw = dw * (1.0 + self.dw_min_std * rng.standard_normal(w.shape))
            w = np.clip(w + dw, state.lo, state.hi)
        return state.replace(w=w)

    def expected_train_dw(self, state: DeviceState, prob, sign, train) -> np.ndarray:
        """Mean weight change of one train, w frozen at its start: N P step(w) (bounds applied)."""
        slope = np.where(np.asarray(sign) > 0, 1.0 - state.w / state.hi, 1.0 - state.w / state.lo)
        dw = sign * train.n * prob * self.rate * state.rate_scale * train.pw * slope
        return np.clip(state.w + dw, state.lo, state.hi) - state.w

    # -- plug-in protocol -------------------------------------------------------------------

    def plan(self, shape, train, timing) -> "SoftBoundsPlan":
        return SoftBoundsPlan(self, train)

    def program(self, state: DeviceState, w: np.ndarray) -> None:
        np.clip(w, state.lo, state.hi, out=state.w)

    def program_efficiency(self, prob, train, sign: float = 1.0, timing=None) -> np.ndarray:
        """r = 1: the mean step of a pulse is the program-time-conserving one (at w = 0)."""
        return np.ones_like(np.asarray(prob, dtype=np.float64))

    def moment_coeffs(self, train, timing, sign: float):
        """(u0, v, c, d_gap, d_T, cv) for the design helper, at w = 0 (memoryless: v = 0)."""
        return float(self.nominal_dw(train.pw)), 0.0, 1.0, 1.0, 1.0, float(self.dw_min_std)


@numba.njit(cache=True, error_model="numpy", **kx.NO_NRT)
def apply(w, cells, dev, bufs, t0, rec, out):
    """One soft-bounds pulse per coincidence (each cell's pulses in time order); returns the count."""
    dw_pulse, std = dev
    sx, sd, pj, pk, pi, z = bufs[B_SX], bufs[B_SD], bufs[B_PJ], bufs[B_PK], bufs[B_PI], bufs[B_Z]
    r_row, r_col, r_slot, r_sign, r_dw, _, _ = out
    done, t, jc = 0, 0, 0
    while True:
        n_p, t, jc = kx.coincidences(cells, bufs, t, jc)
        if n_p == 0:
            break
        kx.pulse_normals(std > 0.0, n_p, bufs)
        for cnt in range(n_p):
            j = pj[cnt]
            k = pk[cnt]
            i = pi[cnt]
            kx.prefetch_ahead(cells, w, pj, pi, cnt, n_p)
            s = sx[i] * sd[j]
            cell = cells[j, i]
            old = w[j, i]
            dw = step(old, s, dw_pulse * cell[I_SCALE], cell[I_LO], cell[I_HI])
            if std > 0.0:
                dw *= 1.0 + std * z[cnt]
            nw = min(max(old + dw, cell[I_LO]), cell[I_HI])
            w[j, i] = nw
            if rec:
                r = done + cnt
                r_row[r], r_col[r], r_slot[r], r_sign[r], r_dw[r] = i, j, k, s, nw - old
        done += n_p
    return done


@numba.njit(cache=True, **kx.NO_NRT)
def update_exact(X, D, ctl, w, cells, dev, bufs, stats):
    """Samples ctl.start..B-1 of a batch in order (common exact-mode signature)."""
    st, bad = kx.check_start(X, D, ctl)
    if st != ST_OK:
        return st, bad
    out = kx.no_record(bufs)
    for b in range(ctl[2], X.shape[0]):
        st, bl, clipped, er, ec = kx.draw_sample(X[b], D[b], ctl, b, bufs)
        if st != ST_OK:
            return st, b
        stats[kx.S_UPDATES] += 1
        if bl > 0:
            kx.account(stats, apply(w, cells, dev, bufs, 0.0, False, out), er, ec, clipped)
    return ST_OK, X.shape[0]


@numba.njit(cache=True)
def update_expected(X, D, ctl, w, cells, dev, bufs, stats):
    """Mean update BL P step(w) per cell (with ctl.gauss plus Gaussian noise of variance
    step^2 BL P (1 - P + dw_min_std^2)), every sample of a batch in order."""
    base, counter, _, lrg, dw_min, n, um, blm, _, _, gauss, noise_scale = ctl
    p, q, sx, sd, rs, rows, cols = (bufs[B_P], bufs[B_Q], bufs[B_SX], bufs[B_SD], bufs[B_RS], bufs[B_ROWS_IDX],
                                    bufs[B_COLS_IDX])
    dw_pulse, std = dev
    st, bad = check_batch(X, D, lrg, dw_min, n, um, blm)
    if st != ST_OK:
        return st, bad
    for b in range(X.shape[0]):
        bl, work, clipped = prepare(X[b], D[b], lrg, dw_min, n, um, blm, p, q, sx, sd)
        stats[kx.S_UPDATES] += 1
        if not work:
            continue
        if clipped:
            stats[kx.S_CLIPPED] += 1
        if gauss:
            _rng.seed_stream(rs, base, counter + b)
        nr = active_units(p, rows)
        for jj in range(active_units(q, cols)):
            j = cols[jj]
            for ii in range(nr):
                i = rows[ii]
                pp = p[i] * q[j]
                cell = cells[j, i]
                mean_step = step(w[j, i], sx[i] * sd[j], dw_pulse * cell[I_SCALE], cell[I_LO], cell[I_HI])
                dw = bl * pp * mean_step
                if gauss:
                    xi, rs[0], rs[1], rs[2], rs[3] = _rng.normal_local(rs[0], rs[1], rs[2], rs[3])
                    dw += noise_scale * abs(mean_step) * math.sqrt(bl * pp * (1.0 - pp + std * std)) * xi
                w[j, i] = min(max(w[j, i] + dw, cell[I_LO]), cell[I_HI])
    return ST_OK, X.shape[0]


class SoftBoundsPlan(StepPlan):
    """The soft-bounds device's per-design plan (:class:`~.base.StepPlan`)."""

    kernels = (update_exact, update_expected, apply)
