"""Where the time of one training sample goes, on the compiled loop, at a realistic training state.

The network of ``bench_ctf_training.py`` (784-256-128-10 sigmoid MLP, batch 1, lr 0.01, our
default CTF preset unless ``--params``) is trained on MNIST by the compiled loop for ``--warm``
samples (pulses per sample grow as training proceeds, so a fresh model understates them). Then:

* loop     -- the compiled loop over ``--window`` samples, alternating blocks with lr = 0 (same
  forward/backward, checks and per-layer dispatch, no pulses): full, "no update", and their
  difference, the pulsed update (also per coincidence);
* phases   -- the (x, d) of ``--record`` samples are recorded per layer (through the reference
  engine's ``tile.update``) and each layer's exact update is re-timed on them, split into
  prepare (validate, gains, probabilities), trains (drawing the row/column trains and bucketing
  them, including prepare), list (the flat coincidence list of :func:`ctfrpu.kernels.exact.coincidences`,
  built once after each sample's draw: draw + list minus draw) and apply (the device pulses: the kernel total minus trains and list); each the best of
  ``--rounds`` passes, the tile's state restored before each pass.

Components are measured separately, so they need not add up exactly. Times depend on the machine;
compare them as shares of one run.

Usage::

    python benchmarks/bench_phases.py [--n 1000] [--params preset:ctf_paper] [--warm 20000]
        [--window 10000] [--record 300] [--rounds 9]
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from bench_ctf_training import Ctfrpu, load, run_config
from ctfrpu.kernels import bundle as kb
from ctfrpu.kernels import exact as kx
from ctfrpu.kernels.trains import prepare


@numba.njit
def _time_prepare(X, D, ctl, bufs):
    _, _, _, lrg, dw_min, n, um, blm, _, _, _, _ = ctl
    p, q, sx, sd = bufs[kb.B_P], bufs[kb.B_Q], bufs[kb.B_SX], bufs[kb.B_SD]
    tot = 0
    for b in range(X.shape[0]):
        bl, _, _ = prepare(X[b], D[b], lrg, dw_min, n, um, blm, p, q, sx, sd)
        tot += bl
    return tot


@numba.njit
def _time_trains(X, D, ctl, bufs):
    tot = 0
    for b in range(X.shape[0]):
        _, bl, _, _, _ = kx.draw_sample(X[b], D[b], ctl, b, bufs)
        tot += bl
    return tot


@numba.njit
def _time_list(X, D, ctl, bufs, cells, reps):
    """Draw each sample once, build its coincidence list ``reps`` times; (coincidences, seconds
    of the list building only)."""
    tot = 0
    for b in range(X.shape[0]):
        _, bl, _, _, _ = kx.draw_sample(X[b], D[b], ctl, b, bufs)
        if bl == 0:
            continue
        for _ in range(reps):
            t, j = 0, 0
            while True:
                n, t, j = kx.coincidences(cells, bufs, t, j)
                if n == 0:
                    break
                tot += n
    return tot


def best(fn, rounds: int, restore=None) -> float:
    out = []
    for _ in range(rounds):
        if restore is not None:
            restore()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--params", default=None, help="CTF parameter file, e.g. preset:ctf_paper (default: ours)")
    ap.add_argument("--warm", type=int, default=20000, help="samples trained before measuring")
    ap.add_argument("--window", type=int, default=10000, help="samples of the loop measurement")
    ap.add_argument("--record", type=int, default=300, help="samples recorded for the per-phase timing")
    ap.add_argument("--rounds", type=int, default=9)
    a = ap.parse_args()
    if a.warm % 500 or a.window % 1000 or a.warm + a.window + a.record > 60000 or min(a.window, a.record) <= 0:
        ap.error("--warm a multiple of 500, --window a positive multiple of 1000, warm + window + record <= 60000")

    x, y, _, _, name = load(60000)
    m = Ctfrpu(run_config("ctf", a.n, 0.01, 1, a.params), "compiled", x, y)
    m.train(0, a.warm)
    t_full = t_zero = 0.0
    p0 = m.pulses
    for b0 in range(a.warm, a.warm + a.window, 1000):
        t_full += m.train(b0, b0 + 500)
        lr, m.lr = m.lr, 0.0
        t_zero += m.train(b0 + 500, b0 + 1000)
        m.lr = lr
    half = a.window // 2
    pulses = (m.pulses - p0) / half
    full, zero = t_full / half * 1e6, t_zero / half * 1e6
    print(f"data: {name}; CTF N = {a.n}, params {a.params or 'default (ours)'}, after {a.warm} samples")
    print(f"loop: {full:.1f} us/sample, no update (lr = 0) {zero:.1f} us, pulsed update {full - zero:.1f} us "
          f"({pulses:.0f} coincidences/sample, {(full - zero) / pulses * 1e3:.1f} ns each)")

    tiles = [t for t in m.model.tiles if hasattr(t, "_plan")]
    recs: dict[int, list] = {id(t): [] for t in tiles}
    for t in tiles:
        orig = t.update

        def rec(xx, dd, lr, t=t, orig=orig):
            recs[id(t)].append((np.array(xx, float), np.array(dd, float), t._lrg(lr)))
            return orig(xx, dd, lr)
        t.update = rec
    start = a.warm + a.window
    for i in range(start, start + a.record):
        m.model.train_step(x[i], int(y[i]), m.lr)
    for t in tiles:
        del t.update

    print(f"phases per sample, best of {a.rounds} passes over {a.record} recorded samples (us; ns per coincidence):")
    print(f"{'layer':>9} {'coinc.':>7} {'prepare':>8} {'trains':>8} {'list':>12} {'apply':>13} {'kernel':>8}")
    tot = np.zeros(5)
    for t in tiles:
        rr = recs[id(t)]
        X = np.array([r[0] for r in rr])
        D = np.array([r[1] for r in rr])
        fn, dev = t._kernel()
        ctl, bufs = t._ctl(rr[0][2], 0), t._bufs.args
        c0, w0 = t._cells.copy(), t._w.copy()

        def restore():
            t._cells[...] = c0
            t._w[...] = w0
        _time_prepare(X[:1], D[:1], ctl, bufs)
        _time_trains(X[:1], D[:1], ctl, bufs)
        _time_list(X[:1], D[:1], ctl, bufs, t._cells, 1)
        nb = len(X)
        tp = best(lambda: _time_prepare(X, D, ctl, bufs), a.rounds) / nb
        tt = best(lambda: _time_trains(X, D, ctl, bufs), a.rounds) / nb
        # one build per drawn sample, as in the kernels (repeated builds of one sample's list ran
        # from warm caches and understated it by about half)
        tl = best(lambda: _time_list(X, D, ctl, bufs, t._cells, 1), a.rounds) / nb - tt
        s0 = t._stats[kx.S_COINC]
        restore()
        fn(X, D, ctl, t._w, t._cells, dev, bufs, t._stats)
        coinc = (t._stats[kx.S_COINC] - s0) / nb
        tk = best(lambda: fn(X, D, ctl, t._w, t._cells, dev, bufs, t._stats), a.rounds, restore) / nb
        restore()
        ta = tk - tt - tl
        tot += (coinc, tp, tt, tl, tk)
        print(f"{t.out_size:>4}x{t.in_size:<4} {coinc:7.0f} {tp * 1e6:8.2f} {tt * 1e6:8.2f} "
              f"{tl * 1e6:6.2f} ({tl / coinc * 1e9:3.1f}) {ta * 1e6:7.2f} ({ta / coinc * 1e9:4.1f}) {tk * 1e6:8.2f}")
    c, tp, tt, tl, tk = tot
    print(f"{'all':>9} {c:7.0f} {tp * 1e6:8.2f} {tt * 1e6:8.2f} {tl * 1e6:6.2f} ({tl / c * 1e9:3.1f}) "
          f"{(tk - tt - tl) * 1e6:7.2f} ({(tk - tt - tl) / c * 1e9:4.1f}) {tk * 1e6:8.2f}")


if __name__ == "__main__":
    main()
