"""Pulse-train design: N slots of period pw + t_gap.

A stochastic update drives every row and column with a train of N slots; slot k starts at
``k * period`` with ``period = pw + t_gap``; a cell receives a pulse of width pw in a slot where its
row and its column are both ON.

Two design modes (docs/science.md §4, OUR reading of "N or pw" in the system paper):

* ``on_time`` (default): a fixed ON-time budget T_on per train, ``pw = T_on / N`` -- more pulses
  means shorter pulses;
* ``fixed_pw``: every pulse has width pw whatever N.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ..errors import CtfrpuError
from ..units import format_time

#: Most pulses one train of a device experiment may have (guards against absurd grids).
MAX_PULSES = 10_000_000


def _is_int(x) -> bool:
    return isinstance(x, (numbers.Integral, np.integer)) and not isinstance(x, (bool, np.bool_))


def _is_real(x) -> bool:
    return isinstance(x, (numbers.Real, np.floating, np.integer)) and not isinstance(x, (bool, np.bool_))


@dataclass(frozen=True)
class PulseTrain:
    """A validated pulse-train design (seconds)."""

    n: int
    """Number of slots N (aihwkit: BL)."""
    pw: float
    """Pulse width, seconds."""
    gap: float
    """Off time t_gap between the end of a slot's pulse and the start of the next slot, seconds."""

    def __post_init__(self) -> None:
        if not _is_int(self.n) or self.n < 1:
            raise CtfrpuError(f"pulse train: N must be an integer >= 1, got {self.n!r}")
        if not (_is_real(self.pw) and math.isfinite(self.pw) and self.pw > 0):
            raise CtfrpuError(f"pulse train: pulse width must be finite and > 0, got {self.pw!r}")
        if not (_is_real(self.gap) and math.isfinite(self.gap) and self.gap >= 0):
            raise CtfrpuError(f"pulse train: gap must be finite and >= 0, got {self.gap!r}")
        # plain Python numbers, whatever numeric type came in (numpy scalars included)
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "pw", float(self.pw))
        object.__setattr__(self, "gap", float(self.gap))

    @classmethod
    def from_on_time(cls, n: int, t_on: float, gap: float) -> "PulseTrain":
        """Fixed ON-time budget: pw = t_on / n."""
        if not (_is_real(t_on) and math.isfinite(t_on) and t_on > 0):
            raise CtfrpuError(f"pulse train: ON-time must be finite and > 0, got {t_on!r}")
        if not _is_int(n) or n < 1:
            raise CtfrpuError(f"pulse train: N must be an integer >= 1, got {n!r}")
        return cls(int(n), t_on / n, gap)

    @classmethod
    def from_config(cls, pulses) -> "PulseTrain":
        """From a :class:`ctfrpu.config.PulseConfig`."""
        if pulses.mode == "on_time":
            return cls.from_on_time(pulses.n, pulses.t_on, pulses.gap)
        return cls(pulses.n, pulses.pw, pulses.gap)

    @property
    def period(self) -> float:
        """Slot period pw + t_gap."""
        return self.pw + self.gap

    @property
    def on_time(self) -> float:
        """Total ON time if every slot fires: N * pw."""
        return self.n * self.pw

    @property
    def duration(self) -> float:
        """Duration of the whole train, N * period."""
        return self.n * self.period

    def slot_times(self) -> np.ndarray:
        """Start time of each slot, seconds."""
        return np.arange(self.n) * self.period

    def describe(self) -> str:
        return f"N={self.n}, pw={format_time(self.pw)}, t_gap={format_time(self.gap)}"


def pw_grid(t_on: float, pw_min: float, pw_max: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer pulse counts N and widths pw = t_on / N (ascending pw), log-spaced in pw.

    ``points`` log-spaced widths in [pw_min, min(pw_max, t_on)] are rounded to the nearest integer
    N = t_on / pw, so that every train has exactly the ON time t_on; repeated N are dropped.
    """
    for name, v in (("t_on", t_on), ("pw_min", pw_min), ("pw_max", pw_max)):
        if not (math.isfinite(v) and v > 0):
            raise CtfrpuError(f"{name} must be finite and > 0, got {v!r}")
    if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 2:
        raise CtfrpuError(f"points must be an integer >= 2, got {points!r}")
    pw_max = min(pw_max, t_on)
    if not pw_min < pw_max:
        raise CtfrpuError(f"need pw_min < min(pw_max, t_on), got pw_min={format_time(pw_min)}, "
                          f"pw_max={format_time(pw_max)}")
    if t_on / pw_min > MAX_PULSES:
        raise CtfrpuError(f"t_on / pw_min = {t_on / pw_min:.3g} pulses per train is more than {MAX_PULSES:.0e}; "
                          "raise pw_min or lower t_on")
    n = np.unique(np.maximum(1, np.round(t_on / np.geomspace(pw_min, pw_max, int(points)))).astype(np.int64))[::-1]
    return n, t_on / n


def check_gaps(gaps) -> np.ndarray:
    g = np.asarray(gaps, dtype=np.float64).reshape(-1)
    if g.size == 0:
        raise CtfrpuError("need at least one gap")
    if not np.all(np.isfinite(g)) or np.any(g < 0):
        raise CtfrpuError(f"gaps must be finite and >= 0, got {list(g)}")
    return g
