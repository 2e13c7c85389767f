"""Time one stochastic pulse-train update of an AnalogTile, with a breakdown.

For each tile shape (784x256, 256x128, 128x10 by default) and N (100, 300, 1000, 3000), with
MNIST-like inputs x (real MNIST if fetched, else sparse random images in [0, 1]) and errors
d ~ N(0, 0.05), lr = 0.01, update management on, it reports per update:

* total   -- ``tile.update(x, d, lr)`` as the training engine calls it;
* python  -- the same call with d = 0 (validation, seed draw, kernel dispatch; no pulses);
* trains  -- drawing the row and column trains and bucketing them by slot (``draw_sample``);
* cells   -- the rest: one device pulse per coincidence (total - python - trains);
* pulses per update (coincidences), expected row/column train pulses, coincidences per second.

Each time is the best of several passes (the machines we share are loaded; the best pass is the
closest to the unloaded cost); the components are measured separately, so "cells" can come out
slightly off (even negative for tiny tiles).

Usage::

    python benchmarks/bench_update.py [--device ideal|ctf|both] [--n 100,300,1000,3000]
                                      [--shapes 784x256,256x128,128x10] [--repeats 200] [--rounds 5]
                                      [--mode exact|expected|gaussian|factorial] [--bias-n 100]
                                      [--timing slot|burst|train] [--params preset:ctf_paper]

``--mode factorial`` times OUR 2 x 2 ablation update (``update.mode = "factorial"``): the noise of
the design N with the bias of the design ``--bias-n`` -- per sample one dense pass over every
active cell for both designs' means, the exact update of design N, and one pass applying the
difference (docs/science.md §4.9, §10).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from ctfrpu.config import IOConfig, UpdateConfig
from ctfrpu.devices import CTFDevice, IdealDevice, PulseTrain, build_device
from ctfrpu.kernels import exact as kx
from ctfrpu.kernels.bundle import make_ctl
from ctfrpu.tile import AnalogTile


def mnist_like(n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    try:
        from ctfrpu.data import load_dataset
        ds = load_dataset("mnist")
        return np.ascontiguousarray(ds.x_train[:n], dtype=np.float64), "MNIST"
    except Exception:                                              # noqa: BLE001 -- any failure: fall back
        x = rng.random((n, 784))
        x[rng.random((n, 784)) > 0.19] = 0.0                       # ~19 % ink like MNIST
        return x, "random sparse (MNIST not fetched)"


def inputs_for(in_size: int, n: int, mnist: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if in_size == 784:
        return mnist[:n]
    return 1.0 / (1.0 + np.exp(-rng.normal(0.0, 2.0, (n, in_size))))   # sigmoid activations


def bench(device, shape, n, mode, repeats, mnist, rounds=5, seed=0, bias_n=100, timing="slot"):
    """Per-update seconds (total, python, trains) and pulse counts; each figure is the best of
    ``rounds`` passes over the same ``repeats`` samples (fresh random streams every pass), which
    filters out the load of a shared machine."""
    out_size, in_size = shape
    rng = np.random.default_rng(seed)
    train = PulseTrain.from_on_time(n, 5e-3, 1e-6)
    bias_train = PulseTrain.from_on_time(bias_n, 5e-3, 1e-6) if mode == "factorial" else None
    tile = AnalogTile(out_size, in_size, device, train, UpdateConfig(mode=mode, timing=timing), IOConfig(),
                      np.random.default_rng(seed), bias_train=bias_train)
    xs = inputs_for(in_size, repeats, mnist, rng)
    ds = rng.normal(0.0, 0.05, (repeats, out_size))
    lr = 0.01
    tile.update(xs[0], ds[0], lr)                                  # compile / load cache
    zero = np.zeros(out_size)
    best = {"total": np.inf, "python": np.inf, "trains": np.inf}
    s0 = tile.stats
    for r in range(rounds):
        t = time.perf_counter()
        for b in range(repeats):
            tile.update(xs[b], ds[b], lr)
        best["total"] = min(best["total"], (time.perf_counter() - t) / repeats)
        t = time.perf_counter()
        for b in range(repeats):
            tile.update(xs[b], zero, lr)
        best["python"] = min(best["python"], (time.perf_counter() - t) / repeats)
        if mode == "exact":                                        # train drawing alone
            t = time.perf_counter()
            for b in range(repeats):
                ctl = make_ctl(1, 10**9 + r * repeats, 0, lr, tile.dw_min, n, True, False)
                kx.draw_sample(xs[b], ds[b], ctl, b, tile._bufs.args)
            best["trains"] = min(best["trains"], (time.perf_counter() - t) / repeats)
    s1 = tile.stats
    per = {k: (s1[k] - s0[k]) / (rounds * repeats) for k in ("pulses", "row_pulses", "col_pulses")}
    return best["total"], best["python"], (best["trains"] if mode == "exact" else float("nan")), per


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="both", choices=["ideal", "ctf", "both"])
    ap.add_argument("--n", default="100,300,1000,3000")
    ap.add_argument("--shapes", default="784x256,256x128,128x10", help="INxOUT: 784x256 = 784 inputs, 256 outputs")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5, help="best of this many passes")
    ap.add_argument("--mode", default="exact", choices=["exact", "expected", "gaussian", "factorial"])
    ap.add_argument("--bias-n", type=int, default=100, help="N of the bias design (--mode factorial)")
    ap.add_argument("--timing", default="slot", help="timing model of the update (slot | burst | train)")
    ap.add_argument("--params", default=None, help="CTF parameter file or preset:NAME (default: our illustrative preset)")
    args = ap.parse_args(argv)
    if args.mode == "factorial" and args.device == "both":
        args.device = "ctf"                                       # the ablation is defined for the CTF device
    rng = np.random.default_rng(123)
    mnist, src = mnist_like(args.repeats, rng)
    devices = {"ideal": IdealDevice(), "ctf": build_device("ctf", args.params, {}) if args.params else CTFDevice()}
    kinds = ["ideal", "ctf"] if args.device == "both" else [args.device]
    print(f"inputs: {src}; d ~ N(0, 0.05); lr = 0.01; update management on; mode = {args.mode}"
          f"{f' (bias N = {args.bias_n})' if args.mode == 'factorial' else ''}; timing = {args.timing}; "
          f"best of {args.rounds} passes of {args.repeats} updates; load average {os.getloadavg()[0]:.1f}")
    print(f"{'device':6} {'in x out':>9} {'N':>5} {'total us':>9} {'python':>7} {'trains':>7} {'cells':>7} "
          f"{'pulses':>8} {'row p':>7} {'col p':>6} {'Mpulse/s':>9} {'ns/pulse':>9}")
    for kind in kinds:
        for sh in args.shapes.split(","):
            i, o = (int(v) for v in sh.lower().split("x"))
            for n in (int(v) for v in args.n.split(",")):
                t_tot, t_py, t_draw, per = bench(devices[kind], (o, i), n, args.mode, args.repeats, mnist, args.rounds,
                                                 bias_n=args.bias_n, timing=args.timing)
                cells = t_tot - t_py - (t_draw if np.isfinite(t_draw) else 0.0)
                pul = per["pulses"]
                rate = pul / t_tot / 1e6 if pul else float("nan")
                print(f"{kind:6} {i:>4}x{o:<4} {n:>5} {t_tot * 1e6:9.1f} {t_py * 1e6:7.1f} {t_draw * 1e6:7.1f} "
                      f"{cells * 1e6:7.1f} {pul:8.0f} {per['row_pulses']:7.0f} {per['col_pulses']:6.0f} "
                      f"{rate:9.1f} {cells / max(pul, 1) * 1e9:9.1f}")


if __name__ == "__main__":
    main()
