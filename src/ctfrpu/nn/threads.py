"""Thread pinning of the analog layers' hot path (the CLI's ``train_run`` does the same for BLAS).

Every tile call of the PyTorch front end (forward and backward MVMs, the pulsed update in the
optimiser step, the im2col of :class:`~ctfrpu.nn.AnalogConv2d`) runs with BLAS (threadpoolctl) and
torch's intra-op pool limited to one thread; the previous limits are restored on exit, so the
rest of the user's program is unaffected. Why: the tile's work is batch-sized matrix-vector
products and per-sample rank-1 updates, far too small to split; a second thread spinning on a
busy core slowed one epoch of the 784-128-10 port from 1.1 s to 17 s (issue 13).

Opt out with ``ctfrpu.nn.set_thread_pinning(False)`` (e.g. to benchmark large batches with a
multi-threaded BLAS); ``thread_pinning()`` reads the switch.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import torch

from ..errors import CtfrpuError

_enabled = True
_controller = None
_n_modules = 0


def set_thread_pinning(enabled: bool) -> None:
    """Switch the one-thread pinning of the analog layers on (default) or off, process-wide."""
    global _enabled
    if not isinstance(enabled, bool):
        raise CtfrpuError(f"set_thread_pinning: expected True or False, got {enabled!r}")
    _enabled = enabled


def thread_pinning() -> bool:
    """Whether the analog layers pin BLAS and torch to one thread in their hot path."""
    return _enabled


def _blas_controller():
    # threadpoolctl sees the libraries loaded when its controller is built; reusing one keeps a
    # pinning at ~10 us instead of ~1 ms. A library (e.g. scipy's own OpenBLAS) loads with an
    # import, so the controller is rebuilt whenever the set of imported modules has grown.
    global _controller, _n_modules
    if _controller is None or len(sys.modules) != _n_modules:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
        _n_modules = len(sys.modules)
    return _controller


@contextmanager
def pinned():
    """Run the block with BLAS and torch limited to one thread (unless pinning is switched off)."""
    if not _enabled:
        yield
        return
    n_torch = torch.get_num_threads()
    if n_torch != 1:
        torch.set_num_threads(1)
    try:
        with _blas_controller().limit(limits=1, user_api="blas"):
            yield
    finally:
        if n_torch != 1:
            torch.set_num_threads(n_torch)
