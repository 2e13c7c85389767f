"""The device paper's three trends as a check of a CTF parameter set (our thresholds).

The device paper (Shrivastava et al., arXiv:2307.06088) reports, at fixed total ON time: (1) a
fragmentation loss -- more, shorter pulses program less; (2) a cliff -- the shift collapses for
pw below ~2 us; (3) gap dependence -- the loss recovers at smaller gaps. A preset of ours must keep
all three; :func:`check_trends` measures them on the noise-free nominal cell (regular trains from the
window centre, ``ctf_fast.train_dvt``) and names every one that fails. The numeric thresholds are
OURS (the abstract gives no numbers): the cliff is "below 2 us the shift per ON time is at most half
of that at 5 us"; "recovery" is "for 2-20 us pulses the shift at a 0.1 us gap exceeds that at 1 ms by at least 1 %".
"""

from __future__ import annotations

import numpy as np

from ..errors import CtfrpuError
from .ctf_fast import train_dvt

T_ON = 100e-6
PW = (1.0e-6, 1.5e-6, 2.0e-6, 5.0e-6, 10e-6, 20e-6, 50e-6, 100e-6)
GAPS = (1e-7, 1e-3)


def trend_table(device, t_on: float = T_ON, pws=PW, gaps=GAPS) -> np.ndarray:
    """dV_T of a train of N = t_on / pw pulses per (gap, pw), shape (len(gaps), len(pws))."""
    pw = np.asarray(pws)
    n = np.maximum(1, np.round(t_on / pw))
    out = np.empty((len(gaps), pw.size))
    for k, g in enumerate(gaps):
        out[k], _ = train_dvt(device, t_on / n, n, np.full(pw.size, g))
    return out


def check_trends(device) -> list[str]:
    """The trends (1)-(3) that ``device`` fails (empty list: all hold)."""
    pws = np.asarray(PW)
    tab = trend_table(device)
    fails = []
    for k, g in enumerate(GAPS):
        if not np.all(np.diff(tab[k]) >= -1e-12 * np.abs(tab[k]).max()):
            fails.append(f"(1) fragmentation: the shift does not grow with pulse width at gap {g:g} s")
    at5 = tab[:, pws == 5e-6][:, 0]
    below = tab[:, pws < 2e-6].max(axis=1)
    if not np.all(below <= 0.5 * at5):
        fails.append("(2) cliff: below 2 us the shift is more than half of that at 5 us")
    mid = (pws >= 2e-6) & (pws <= 20e-6)              # several pulses per train, above the cliff
    if not np.all(tab[0, mid] >= 1.01 * tab[1, mid]):
        fails.append("(3) gap dependence: a 0.1 us gap does not program at least 1 % more than 1 ms")
    return fails


def require_trends(device, name: str = "preset") -> None:
    """One-line CtfrpuError naming the device-paper trends ``device`` breaks."""
    fails = check_trends(device)
    if fails:
        raise CtfrpuError(f"{name} breaks the device paper's trends: " + "; ".join(fails))
