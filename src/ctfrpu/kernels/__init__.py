"""Event-driven numba kernels of the stochastic pulse-train update (used by :mod:`ctfrpu.tile`).

* :mod:`.rng`      -- xoshiro256+ with ziggurat normals/exponentials; one stream per sample,
  seeded from (tile base seed, sample counter);
* :mod:`.trains`   -- sample preparation (A, B, BL, probabilities) and train drawing: geometric
  skipping in lock step, thinning (the sparser side in full, the other only where it can coincide),
  counting sorts into CSR by slot (rows) and by column;
* :mod:`.exact`    -- the device-independent half of the pulse-exact update (drawing a sample,
  bookkeeping); each device's ``apply`` lives in its plug-in (``ctfrpu.devices``);
* :mod:`.expected` -- what the expected (mean) and Gaussian modes of all devices share;
* :mod:`.bundle`   -- the typed records (``ctl``, ``bufs``) of the common kernel signature;
* :mod:`.cells`    -- per-cell records (one cache line per pulse);
* :mod:`.nrt`      -- the update kernels' numba option: no reference counting.

This package sits BELOW the devices (docs/architecture.md): it knows nothing of any device.

Every kernel is ``@njit(cache=True)``: the first import on a machine compiles them (about 10-20 s
in all), later runs load the cache from ``__pycache__``.
"""

import hashlib as _hashlib
from pathlib import Path as _Path


def _guard_numba_cache() -> None:
    """Drop the numba caches of this package and of the device plug-ins when any of their sources
    changed.

    numba keys a cached function on its own file only: a kernel in devices/ctf_update.py that calls
    trains.prepare would keep running the OLD prepare after trains.py changed. So a digest of all
    kernel and device sources (and the numba version) is kept next to the cache; on a mismatch the
    cache files are deleted and the kernels recompile once. A read-only install simply skips this.
    """
    import numba

    here = _Path(__file__).resolve().parent
    dirs = (here, here.parent / "devices")
    try:
        h = _hashlib.sha256(numba.__version__.encode())
        for d in dirs:
            for f in sorted(d.glob("*.py")):
                h.update(f"{d.name}/{f.name}".encode())
                h.update(f.read_bytes())
        digest = h.hexdigest()[:20]
        cache = here / "__pycache__"
        stamp = cache / "ctfrpu-kernels.digest"
        if stamp.is_file() and stamp.read_text().strip() == digest:
            return
        for d in dirs:
            pyc = d / "__pycache__"
            if pyc.is_dir():
                for f in list(pyc.glob("*.nbi")) + list(pyc.glob("*.nbc")):
                    f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        tmp = stamp.with_suffix(f".{id(h)}.tmp")
        tmp.write_text(digest)
        tmp.replace(stamp)
    except OSError:
        pass


_guard_numba_cache()
