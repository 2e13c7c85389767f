"""The ideal reference device: conserves program time (aihwkit's ConstantStepDevice in time form)."""

from __future__ import annotations

import dataclasses
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
from ..units import parse_time
from .base import DeviceState, StepPlan, check_pulse_arrays, validate_fields


def coerce_fields(obj, times=(), flags=()) -> None:
    """Check the types of a (frozen) device dataclass's fields, in place, with one-line errors.

    Numbers (numpy scalars included) become Python floats; fields named in ``times`` also accept
    strings with units ('2us', '500ns', '1ms'); fields in ``flags`` must be booleans; anything
    else (a string, a bool for a number, a list) is a :class:`CtfrpuError` naming the field.
    """
    name = type(obj).__name__
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        v = getattr(obj, f.name)
        if f.name in flags:
            if not isinstance(v, (bool, np.bool_)):
                raise CtfrpuError(f"{name}.{f.name} must be true or false, got {v!r}")
            object.__setattr__(obj, f.name, bool(v))
            continue
        if f.name in times and isinstance(v, str):
            v = parse_time(v, f"{name}.{f.name}")
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            hint = " (times accept units, e.g. '2us')" if f.name in times else ""
            raise CtfrpuError(f"{name}.{f.name} must be a number{hint}, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise CtfrpuError(f"{name}.{f.name} must be finite, got {v!r}")
        object.__setattr__(obj, f.name, v)


@dataclass(frozen=True)
class IdealDevice:
    """Program-time-conserving device: every pulse moves the weight by the same step per ON time.

    Update rule for a pulse of width pw and sign s (+1 potentiation, -1 depression)::

        dw = s * dw_min(pw) * (1 + dw_min_std * xi),   xi ~ N(0, 1) per pulse (cycle to cycle)
        dw_min(pw) = rate_cell * pw,                    rate_cell = rate * max(0, 1 + dw_min_dtod * zeta)
        w <- clip(w + dw, w_min, w_max)                 (hard bounds)

    zeta ~ N(0, 1) is drawn once per cell (device to device); xi is drawn only when an ``rng`` is
    passed to :meth:`apply_pulses`. As in aihwkit, a large dw_min_std can flip a step's sign.

    The cumulative change of a train depends only on its total ON time (N * pw), not on how it is
    split or on the gaps: this is the device the CTF model is compared with. At a fixed pw it is
    aihwkit's ConstantStepDevice with ``dw_min = rate * pw``.
    """

    rate: float = 200.0
    """Weight change per second of ON time (weight units / s); dw_min = rate * pw."""
    w_min: float = -1.0
    """Lower weight bound (hard)."""
    w_max: float = 1.0
    """Upper weight bound (hard)."""
    dw_min_dtod: float = 0.0
    """Relative device-to-device spread (std) of the rate, drawn once per cell."""
    dw_min_std: float = 0.0
    """Relative cycle-to-cycle spread (std) of each pulse's step."""

    kind: str = field(default="ideal", init=False, repr=False)

    def __post_init__(self) -> None:
        coerce_fields(self)
        validate_fields(self, positive=("rate",), nonneg=("dw_min_dtod", "dw_min_std"))
        if not self.w_min < 0 < self.w_max:
            raise CtfrpuError(f"ideal device: need w_min < 0 < w_max, got {self.w_min}, {self.w_max}")

    # -- interface --------------------------------------------------------------------------

    title: ClassVar[str] = 'Ideal (program-time-conserving) device parameters'
    """How `ctfrpu device params` names this device's parameter set."""
    time_fields: ClassVar[tuple[str, ...]] = ()
    """Parameters that are times in seconds (shown with a unit)."""

    def summary(self) -> str:
        """One line of derived quantities for `ctfrpu device params` ('' if none)."""
        return f"derived: dw_min at pw = 5us: {self.nominal_dw(5e-6):g}"

    def nominal_dw(self, pw: float) -> float:
        """Weight step of one pulse of width pw for the nominal cell (= dw_min)."""
        return self.rate * pw

    def init_state(self, shape: tuple[int, ...], rng: np.random.Generator,
                   w0: np.ndarray | None = None) -> DeviceState:
        """Fresh state: weights w0 (default 0) clipped to the bounds, per-cell rate factors drawn."""
        scale = np.ones(shape)
        if self.dw_min_dtod > 0:
            scale = np.maximum(0.0, 1.0 + self.dw_min_dtod * rng.standard_normal(shape))
        w = np.zeros(shape) if w0 is None else np.clip(np.asarray(w0, dtype=np.float64), self.w_min, self.w_max)
        return DeviceState(w=w.copy(), rate_scale=scale, lo=np.full(shape, self.w_min),
                           hi=np.full(shape, self.w_max))

    def weights(self, state: DeviceState) -> np.ndarray:
        return state.w

    def apply_pulses(self, state: DeviceState, times: np.ndarray, widths: np.ndarray,
                     signs: np.ndarray, rng: np.random.Generator | None = None) -> DeviceState:
        """Apply pulses (arrays of shape state.shape + (K,), sign 0 = no pulse); returns new state.

        Times are irrelevant for this device (it has no memory) but are validated like the CTF's.
        """
        times, widths, signs = check_pulse_arrays(state.w.shape, times, widths, signs)
        w = state.w.copy()
        for k in range(signs.shape[-1]):
            s = signs[..., k]
            dw = s * self.rate * state.rate_scale * widths[..., k]
            if self.dw_min_std > 0 and rng is not None:
                dw = dw * (1.0 + self.dw_min_std * rng.standard_normal(w.shape))
            w = np.clip(w + dw, state.lo, state.hi)
        return state.replace(w=w)

    def expected_train_dw(self, state: DeviceState, prob: np.ndarray, sign: np.ndarray,
                          train) -> np.ndarray:
        """Mean weight change of one train: N * P * dw_min (bounds applied to the result)."""
        dw = sign * train.n * prob * self.rate * state.rate_scale * train.pw
        return np.clip(state.w + dw, state.lo, state.hi) - state.w

    def kernel_params(self) -> np.ndarray:
        """Scalar parameters packed for the numba update kernel: [rate, dw_min_std]."""
        return np.array([self.rate, self.dw_min_std], dtype=np.float64)

    # -- plug-in protocol (docs/architecture.md) --------------------------------------------

    def plan(self, shape: tuple[int, int], train, timing) -> "IdealPlan":
        """The tile's per-design plan (memoryless: the timing model does not matter)."""
        return IdealPlan(self, train)

    def program(self, state: DeviceState, w: np.ndarray) -> None:
        """Program weights ``w`` into ``state`` in place (set_weights), clipped to the bounds."""
        np.clip(w, state.lo, state.hi, out=state.w)

    def program_efficiency(self, prob, train, sign: float = 1.0, timing=None) -> np.ndarray:
        """r = 1: the mean step of a pulse is the program-time-conserving one (at w = 0)."""
        return np.ones_like(np.asarray(prob, dtype=np.float64))

    def moment_coeffs(self, train, timing, sign: float):
        """(u0, v, c, d_gap, d_T, cv) for the design helper: a memoryless step, v = 0."""
        return float(self.nominal_dw(train.pw)), 0.0, 1.0, 1.0, 1.0, float(self.dw_min_std)


# ---------------------------------------------------------------------------- update kernels
# (numba; common signatures of ctfrpu.kernels.bundle; cells[j, i] = (scale, lo, hi, -))


@numba.njit(cache=True, error_model="numpy", **kx.NO_NRT)
def apply(w, cells, dev, bufs, t0, rec, out):
    """One pulse per coincidence: dw = s dw_pulse scale (1 + std xi), w <- clip(w + dw, lo, hi);
    returns the number applied. With ``rec`` the events go to ``out``."""
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
            sdj = sd[j]
            s = sx[i] * sdj
            cell = cells[j, i]
            dw = s * dw_pulse * cell[I_SCALE]
            if std > 0.0:
                dw *= 1.0 + std * z[cnt]
            old = w[j, i]
            nw = min(max(old + dw, cell[I_LO]), cell[I_HI])
            w[j, i] = nw
            if rec:
                r = done + cnt
                r_row[r] = i
                r_col[r] = j
                r_slot[r] = k
                r_sign[r] = s
                r_dw[r] = nw - old
        done += n_p
    return done


@numba.njit(cache=True, **kx.NO_NRT)
def update_exact(X, D, ctl, w, cells, dev, bufs, stats):
    """Samples ctl.start..B-1 of a batch in order; see :func:`ctfrpu.devices.ctf_update.update_exact`."""
    st, bad = kx.check_start(X, D, ctl)
    if st != ST_OK:
        return st, bad
    out = kx.no_record(bufs)
    for b in range(ctl[2], X.shape[0]):
        st, bl, clipped, er, ec = kx.draw_sample(X[b], D[b], ctl, b, bufs)
        if st != ST_OK:
            return st, b
        stats[kx.S_UPDATES] += 1
        if bl == 0:
            continue
        cnt = apply(w, cells, dev, bufs, 0.0, False, out)
        kx.account(stats, cnt, er, ec, clipped)
    return ST_OK, X.shape[0]


@numba.njit(cache=True)
def update_expected(X, D, ctl, w, cells, dev, bufs, stats):
    """Mean update BL P dw (and with ctl.gauss Gaussian noise of the exact variance
    dw^2 BL P (1 - P + dw_min_std^2) per cell) of every sample of a batch, in order."""
    base, counter, _, lrg, dw_min, n, um, blm, _, _, gauss, noise_scale = ctl
    p, q, sx, sd, rs, rows, cols = (bufs[B_P], bufs[B_Q], bufs[B_SX], bufs[B_SD], bufs[B_RS], bufs[B_ROWS_IDX],
                                    bufs[B_COLS_IDX])
    dw_pulse, std = dev
    st, bad = check_batch(X, D, lrg, dw_min, n, um, blm)
    if st != ST_OK:
        return st, bad
    var_c2c = std * std
    zbuf = np.empty(rows.size)
    for b in range(X.shape[0]):
        bl, work, clipped = prepare(X[b], D[b], lrg, dw_min, n, um, blm, p, q, sx, sd)
        stats[kx.S_UPDATES] += 1
        if not work:
            continue
        if clipped:
            stats[kx.S_CLIPPED] += 1
        if gauss:
            _rng.seed_stream(rs, base, counter + b)
        s0, s1, s2, s3 = rs[0], rs[1], rs[2], rs[3]
        nr = active_units(p, rows)
        ncol = active_units(q, cols)
        for jj in range(ncol):
            j = cols[jj]
            qq = q[j]
            sdj = sd[j]
            if gauss:                 # the column's normals first: a tight loop the CPU pipelines well
                for ii in range(nr):
                    xi, s0, s1, s2, s3 = _rng.normal_local(s0, s1, s2, s3)
                    zbuf[ii] = xi
            for ii in range(nr):
                i = rows[ii]
                pp = p[i] * qq
                cell = cells[j, i]
                dwc = dw_pulse * cell[I_SCALE]
                dw = sx[i] * sdj * bl * pp * dwc
                if gauss:
                    dw += noise_scale * dwc * math.sqrt(bl * pp * (1.0 - pp + var_c2c)) * zbuf[ii]
                w[j, i] = min(max(w[j, i] + dw, cell[I_LO]), cell[I_HI])
        rs[0], rs[1], rs[2], rs[3] = s0, s1, s2, s3
    return ST_OK, X.shape[0]


class IdealPlan(StepPlan):
    """The ideal device's per-design plan (:class:`~.base.StepPlan`)."""

    kernels = (update_exact, update_expected, apply)
