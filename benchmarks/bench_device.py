"""Benchmark: response of many CTF cells (our model) to one pulse train.

    .venv/bin/python benchmarks/bench_device.py [--cells 1000000] [--pulses 1000] [--pw 5us] [--gap 1us]
                                                [--backends numpy,numba] [--no-noise]

Every cell receives the same train of N program pulses (arrays of shape (N,), shared), with
device-to-device spread and cycle-to-cycle noise of the illustrative preset (our model, not
measured data). Reports seconds and cell-pulses per second for

* ``numpy``: :meth:`CTFDevice.apply_pulses` (vectorised over cells, loop over pulses);
* ``numba``: :func:`ctfrpu.devices.ctf_fast.apply_pulses_fast` (numba-parallel over cells), timed
  after a warm-up call (compilation is cached on disk after the first run).

Wall time depends on the load of the machine; the CPU time (all threads) is printed too.

Also checks that the two back ends agree without noise (max |dV_T| difference).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from ctfrpu.devices import CTFDevice
from ctfrpu.devices.ctf_fast import apply_pulses_fast
from ctfrpu.errors import CtfrpuError
from ctfrpu.units import parse_time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=float, default=1e6)
    ap.add_argument("--pulses", type=int, default=1000)
    ap.add_argument("--pw", default="5us")
    ap.add_argument("--gap", default="1us")
    ap.add_argument("--backends", default="numpy,numba")
    ap.add_argument("--no-noise", action="store_true", help="no cycle-to-cycle noise (skips the RNG)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        pw, gap = parse_time(a.pw, "--pw"), parse_time(a.gap, "--gap")
    except CtfrpuError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cells, k = int(a.cells), int(a.pulses)
    dev = CTFDevice()
    rng = np.random.default_rng(a.seed)
    state = dev.init_state((cells,), rng)
    times = np.arange(k) * (pw + gap)
    widths = np.full(k, pw)
    signs = np.ones(k)
    try:
        import numba
        threads = numba.get_num_threads()
    except Exception:  # pragma: no cover
        threads = 1
    print(f"ctfrpu device benchmark (our CTF model, illustrative preset): {cells:,} cells x {k} pulses "
          f"(pw {a.pw}, gap {a.gap}), noise {'off' if a.no_noise else 'on'}; {os.cpu_count()} CPUs, "
          f"numba threads {threads}")
    results = {}
    for backend in [b.strip() for b in a.backends.split(",") if b.strip()]:
        noise_rng = None if a.no_noise else np.random.default_rng(a.seed + 1)
        if backend == "numpy":
            t0, c0 = time.perf_counter(), time.process_time()
            out = dev.apply_pulses(state, times, widths, signs, noise_rng)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        elif backend == "numba":
            small = dev.init_state((8,), np.random.default_rng(0))
            t0 = time.perf_counter()
            apply_pulses_fast(dev, small, times[:2], widths[:2], signs[:2], np.random.default_rng(0))
            warm = time.perf_counter() - t0
            t0, c0 = time.perf_counter(), time.process_time()
            out = apply_pulses_fast(dev, state, times, widths, signs, noise_rng)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"  numba warm-up (load/compile): {warm:.2f} s")
        else:
            print(f"error: unknown backend {backend!r} (numpy, numba)", file=sys.stderr)
            return 2
        results[backend] = out
        rate = cells * k / dt
        dv = out.vt - state.vt
        print(f"  {backend:6s}: {dt:8.2f} s wall ({cpu:.2f} s CPU)   {rate:.3e} cell-pulses/s   "
              f"{k / dt:8.1f} train pulses/s   {cpu / (cells * k) * 1e9:.1f} ns CPU per cell-pulse   "
              f"mean dV_T {dv.mean() * 1e3:.3f} mV, std {dv.std() * 1e3:.3f} mV")
    if {"numpy", "numba"} <= results.keys():
        if a.no_noise:
            diff = float(np.max(np.abs(results["numpy"].vt - results["numba"].vt)))
            print(f"  max |numpy - numba| V_T difference (no noise): {diff:.2e} V")
        else:
            m1, m2 = (float(np.mean(r.vt - state.vt)) for r in (results["numpy"], results["numba"]))
            print(f"  mean dV_T numpy vs numba (different noise streams): {m1 * 1e3:.4f} vs {m2 * 1e3:.4f} mV")
    return 0


if __name__ == "__main__":
    sys.exit(main())
