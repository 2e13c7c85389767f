"""Per-cell records: the device parameters and hidden state of a cell side by side in memory.

A pulse touches one cell; with one array per quantity (V_T, e, t_last, kscale, lo, hi) it touches
six cache lines in six arrays larger than the cache (a 784x256 tile holds 1.6 MB per quantity), so
the update was memory-bound. The tile stores them as records instead -- float64 (out, in, 8) for
the CTF device, (out, in, 4) for the ideal device, 64-byte aligned -- so a pulse touches the cell's
record (one cache line) plus its weight. :class:`~ctfrpu.devices.DeviceState` exposes the fields as
strided views of the records (``tile.state.vt`` is ``records[..., C_VT]``), so the device API
still sees separate arrays, updated in place.
"""

from __future__ import annotations

import mmap

import numpy as np

_HUGE = 2 * 1024 * 1024

# CTF records
C_VT, C_E, C_TLAST, C_KS, C_LO, C_HI = range(6)
CTF_FIELDS = 8
# ideal-device records
I_SCALE, I_LO, I_HI = range(3)
IDEAL_FIELDS = 4


def aligned_records(shape: tuple[int, ...], fields: int, align: int = 64) -> np.ndarray:
    """Zeroed float64 array of shape ``shape + (fields,)`` whose data start is ``align``-byte aligned.

    Arrays of 2 MB and more are placed in an anonymous mapping advised for transparent huge pages
    (where the OS offers them): the update touches cells at random, and with 4 kB pages a 13 MB
    record array costs a TLB miss per pulse.
    """
    n = int(np.prod(shape)) * fields
    nbytes = 8 * n
    if nbytes >= _HUGE and hasattr(mmap, "MADV_HUGEPAGE"):
        buf = mmap.mmap(-1, nbytes + _HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            buf.madvise(mmap.MADV_HUGEPAGE)
        except OSError:                                  # pragma: no cover -- not offered: fine
            pass
        raw = np.frombuffer(buf, dtype=np.float64)
        off = (-raw.ctypes.data % _HUGE) // 8
        return raw[off:off + n].reshape(tuple(shape) + (fields,))
    raw = np.zeros(n + align // 8, dtype=np.float64)
    off = (-raw.ctypes.data % align) // 8
    return raw[off:off + n].reshape(tuple(shape) + (fields,))
