"""Parsing of physical quantities with units ("2us", "500ns", "1ms", "0.5 V").

Code works in SI units (seconds, volts); the CLI and TOML files accept strings with units.

On the command line a time needs its unit (``--gap 1`` is an error, not one second: a bare number
was the commonest silent surprise); only 0 may go without one. In TOML files and ``--set``
values a bare number is seconds (SI, as stored), a string carries its unit.
"""

from __future__ import annotations

import math
import re

from .errors import CtfrpuError

# Divisors, not multipliers: 5 / 1e6 is exactly the double nearest 5e-6, 5 * 1e-6 is not.
_PREFIX = {"": 1.0, "s": 1.0, "ms": 1e3, "us": 1e6, "µs": 1e6, "μs": 1e6, "ns": 1e9, "ps": 1e12}
_NUM = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan)\s*([a-zA-Zµμ]*)\s*$")


def parse_time(value: str | float | int, name: str = "time") -> float:
    """Return seconds from a number (already seconds) or a string such as "2us", "1.5 ms", "500ns".

    Raises CtfrpuError with a one-line message naming ``name`` for anything else.
    """
    if isinstance(value, bool):
        raise CtfrpuError(f"{name}: expected a time such as '2us', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _NUM.match(value)
        if not match or match.group(2) not in _PREFIX:
            raise CtfrpuError(f"{name}: cannot read {value!r} as a time; use e.g. '2us', '500ns', '1ms' or seconds")
        seconds = float(match.group(1)) / _PREFIX[match.group(2)]
    else:
        raise CtfrpuError(f"{name}: expected a time such as '2us', got {type(value).__name__}")
    if not math.isfinite(seconds):
        raise CtfrpuError(f"{name}: must be finite, got {value!r}")
    return seconds


def parse_cli_time(value: str, name: str) -> float:
    """A time given on the command line: like :func:`parse_time`, but a bare number other than 0
    is refused (one-line CtfrpuError suggesting the unit)."""
    if isinstance(value, str):
        match = _NUM.match(value)
        if match and match.group(2) == "" and math.isfinite(float(match.group(1))) and float(match.group(1)) != 0:
            raise CtfrpuError(f"{name}: {value!r} has no unit; write e.g. '{match.group(1)}us' or "
                              f"'{match.group(1)}s' (a bare number would be seconds)")
    return parse_time(value, name)


def format_time(seconds: float) -> str:
    """Short human form: 2e-6 -> '2us', 5e-4 -> '500us', 1.5e-3 -> '1.5ms'."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(seconds) >= scale or unit == "ns":
            return f"{seconds / scale:.4g}{unit}"
    return f"{seconds}s"
