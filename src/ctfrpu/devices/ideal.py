"""The ideal reference device: conserves program time (aihwkit's ConstantStepDevice in time form)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import CtfrpuError
from ..units import parse_time
from .base import DeviceState, check_pulse_arrays, validate_fields


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
