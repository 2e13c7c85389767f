"""What every device shares: the state of an array of cells and input checks.

Device interface (duck-typed; :class:`IdealDevice` and :class:`CTFDevice` implement it)::

    init_state(shape, rng, w0=None) -> DeviceState       per-cell state, device-to-device draws
    weights(state) -> ndarray                             the weights the crossbar computes with
    apply_pulses(state, times, widths, signs, rng) -> DeviceState
        pulses given as arrays of shape state.shape + (K,); sign +1 potentiates, -1 depresses,
        0 = no pulse (padding); times must be non-decreasing along K for each cell
    expected_train_dw(state, prob, sign, train) -> ndarray
        mean weight change of one stochastic train (per-slot coincidence probability ``prob``)
    nominal_dw(pw) -> float                               program-time-conserving step of one pulse
    kernel_params() -> ndarray                            scalars for the numba update kernel
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..errors import CtfrpuError


@dataclass
class DeviceState:
    """State of an array of cells (all arrays have the same shape).

    ``w`` is the weight; the rest are per-cell device-to-device parameters and, for the CTF device,
    the hidden state. Fields a device does not use are None.
    """

    w: np.ndarray
    """Weight of each cell."""
    rate_scale: np.ndarray
    """Device-to-device factor of the programming rate (1 = nominal)."""
    lo: np.ndarray
    """Lower bound of the weight (ideal) or of V_T (CTF) per cell."""
    hi: np.ndarray
    """Upper bound of the weight (ideal) or of V_T (CTF) per cell."""
    vt: np.ndarray | None = None
    """Threshold voltage V_T, volts (CTF)."""
    e: np.ndarray | None = None
    """Transient field enhancement e in [0, 1] (CTF)."""
    t_last: np.ndarray | None = None
    """Time at which the last pulse ended, seconds (-inf: never pulsed / fully relaxed) (CTF)."""

    @property
    def shape(self) -> tuple[int, ...]:
        return self.w.shape

    def replace(self, **changes) -> "DeviceState":
        return dataclasses.replace(self, **changes)

    def copy(self) -> "DeviceState":
        return DeviceState(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).copy())
                              for f in dataclasses.fields(self)})


def validate_fields(obj, positive=(), nonneg=(), finite_all=True) -> None:
    """One-line CtfrpuError for a non-finite, non-positive or negative parameter."""
    name = type(obj).__name__
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if finite_all and not math.isfinite(v):
            raise CtfrpuError(f"{name}.{f.name} must be finite, got {v!r}")
        if f.name in positive and not v > 0:
            raise CtfrpuError(f"{name}.{f.name} must be > 0, got {v!r}")
        if f.name in nonneg and not v >= 0:
            raise CtfrpuError(f"{name}.{f.name} must be >= 0, got {v!r}")


def check_pulse_arrays(shape, times, widths, signs):
    """Broadcast pulse arrays to ``shape + (K,)`` and check them."""
    signs = np.asarray(signs)
    if signs.ndim == 0:
        raise CtfrpuError("pulses: signs must have a last axis of pulses")
    k = signs.shape[-1]
    target = tuple(shape) + (k,)
    try:
        times = np.broadcast_to(np.asarray(times, dtype=np.float64), target)
        widths = np.broadcast_to(np.asarray(widths, dtype=np.float64), target)
        signs = np.broadcast_to(signs.astype(np.float64), target)
    except ValueError:
        raise CtfrpuError(f"pulses: arrays do not broadcast to cells {tuple(shape)} x K") from None
    if not (np.all(np.isfinite(times)) and np.all(np.isfinite(widths))):
        raise CtfrpuError("pulses: times and widths must be finite")
    if np.any(widths < 0):
        raise CtfrpuError("pulses: widths must be >= 0")
    if not np.all(np.isin(signs, (-1.0, 0.0, 1.0))):
        raise CtfrpuError("pulses: signs must be -1, 0 or +1")
    if k > 1 and np.any(np.diff(times, axis=-1) < 0):
        raise CtfrpuError("pulses: times must be non-decreasing for each cell")
    return times, widths, signs


class StepPlan:
    """The per-design plan of a memoryless step device (ideal, soft bounds): records (scale, lo, hi),
    constants ``dev = (dw_pulse, std)``, and the device module's kernels, named by a subclass::

        class IdealPlan(StepPlan):
            kernels = (update_exact, update_expected, apply)

    'expected' serves the Gaussian mode too (``ctl`` says which)."""

    fields = ("rate_scale", "lo", "hi")
    n_fields = 4
    event_fields = ()
    modes = ("exact", "expected", "gaussian")
    """The update modes :meth:`kernel` serves."""
    kernels: tuple = ()
    """(exact batch kernel, expected batch kernel, apply) of the device's module."""

    def __init__(self, device, train):
        self.state: dict[str, np.ndarray] = {}
        self._dev = (float(device.rate * train.pw), float(device.dw_min_std))

    def kernel(self, mode: str, bias_plan=None) -> tuple:
        """(numba batch kernel, its ``dev`` tuple) of update mode ``mode`` (common signature,
        :mod:`ctfrpu.kernels.bundle`)."""
        if mode not in self.modes:
            raise CtfrpuError(f"{type(self).__name__}: no update kernel for mode {mode!r}")
        return self.kernels[0 if mode == "exact" else 1], self._dev

    def apply(self, w, cells, bufs, t0, out):
        return self.kernels[2](w, cells, self._dev, bufs, t0, True, out)
