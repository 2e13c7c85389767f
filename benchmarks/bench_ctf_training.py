"""Training speed: ctfrpu's compiled and reference engines against idiomatic PyTorch, in one process.

Network (Gokmen & Vlasov): 784-256-128-10, sigmoid hidden layers, softmax + cross-entropy, SGD,
lr 0.01, MNIST (real if fetched with ``ctfrpu data fetch``, else random data of the same shapes).

* compiled  -- the engine ``ctfrpu train`` runs (``optim.engine = "compiled"``): the MLP of
  ``training.runner.build_model`` trained by ``training.compiled.CompiledLoop``, one numba call per
  block of samples (forward, backward, every layer's pulsed update);
* reference -- the per-sample numpy engine (``optim.engine = "reference"``, ``MLP.train_step`` /
  ``MLP.train_batch``), the same model and random streams;
* torch     -- ``nn.Sequential`` + ``torch.optim.SGD``, float32, ``zero_grad / backward / step`` per
  mini-batch, with one thread and with torch's default thread count.

The methods alternate every ``--block`` samples on the same data, so that a shared machine's load
hits them alike; the ratios are what to compare, never the absolute times across machines.
Prints time per sample and per 60k epoch, the ratio compiled / torch and reference / torch, the
device pulses per second, peak RSS; with ``--n-sweep`` the time per sample vs N (compiled), with
``--batch-sweep`` the time per sample vs the batch size (compiled and torch, one thread).

Usage::

    python benchmarks/bench_ctf_training.py [--device ctf|ideal|fp] [--n 1000] [--batch-size 1]
        [--train-limit 60000] [--block 500] [--lr 0.01] [--params preset:ctf_paper]
        [--methods compiled,reference,torch] [--torch-threads 1,0]   (0 = torch's default)
        [--n-sweep 100,300,1000,3000] [--sweep-limit 3000] [--batch-sweep 1,8,32,128]
        [--project full] [--project-workers 2,64]

``--project PROFILE`` is the paper-scale line: the wall time of ``ctfrpu reproduce --profile
PROFILE`` on the compiled engine, from per-sample times measured here for every cost class of the
profile's runs (device, update mode, N, compensation, dataset; samples 500-3,500 of training),
scaled by epochs x 60,000 samples, packed longest first on 2 and 64 workers (LPT,
``benchmarks/project_profile.py``). Pulses per sample grow as training proceeds, so the short
window underestimates a run: when the main comparison ran a longer epoch of the same class, the
projection is also given corrected by the ratio of the two per-sample times.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ctfrpu.config import validate
from ctfrpu.training.compiled import CompiledLoop
from ctfrpu.training.runner import build_model

SIZES = (784, 256, 128, 10)


def load(limit: int):
    try:
        from ctfrpu.data import load_dataset
        ds = load_dataset("mnist")
        name = "MNIST"
    except Exception:                                              # noqa: BLE001 -- fall back to random data
        rng = np.random.default_rng(0)
        n = 60000

        class _D:
            x_train = (rng.random((n, 784)) * (rng.random((n, 784)) < 0.19)).astype(np.float32)
            y_train = rng.integers(0, 10, n)
            x_test = x_train[:2000]
            y_test = y_train[:2000]
        ds, name = _D(), "random data (MNIST not fetched)"
    return (np.ascontiguousarray(ds.x_train[:limit], dtype=np.float64), np.asarray(ds.y_train[:limit], np.int64),
            np.asarray(ds.x_test[:2000], np.float64), np.asarray(ds.y_test[:2000], np.int64), name)


def run_config(device: str, n: int, lr: float, batch: int, params: str | None):
    doc = {"device": {"kind": device}, "pulses": {"n": n}, "optim": {"lr": lr, "batch_size": batch}}
    if params and device == "ctf":
        doc["device"]["params_file"] = params
    return validate(doc)


class Ctfrpu:
    """One of ctfrpu's engines on the MLP ``ctfrpu train`` builds (seed 0)."""

    def __init__(self, cfg, engine: str, x, y):
        self.model = build_model(cfg, 784, 10, np.random.SeedSequence(0))
        self.engine, self.lr, self.bs = engine, cfg.optim.lr, cfg.optim.batch_size
        self.x, self.y = x, y
        self.loop = CompiledLoop(self.model, x, y, self.bs, "sigmoid") if engine == "compiled" else None
        self.order = np.arange(len(y), dtype=np.int64)

    def train(self, b0: int, b1: int) -> float:
        """Train samples b0..b1 (b0, b1 on batch boundaries); seconds."""
        with threadpool_limits(1, "blas"):
            start = time.perf_counter()
            if self.loop is not None:
                self.loop.run(self.order, b0, b1, self.lr)
            elif self.bs == 1:
                step, x, y, lr = self.model.train_step, self.x, self.y, self.lr
                for i in range(b0, b1):
                    step(x[i], int(y[i]), lr)
            else:
                for k in range(b0, b1, self.bs):
                    self.model.train_batch(self.x[k:k + self.bs], self.y[k:k + self.bs], self.lr)
            return time.perf_counter() - start

    @property
    def pulses(self) -> int:
        return sum(t.stats["pulses"] for t in self.model.tiles if hasattr(t, "stats"))

    def accuracy(self, x, y) -> float:
        return self.model.evaluate(x, y)[0]


class Torch:
    """Idiomatic PyTorch: nn.Sequential + SGD, zero_grad / backward / step per mini-batch."""

    def __init__(self, threads: int, lr: float, bs: int, x, y):
        torch.manual_seed(0)
        self.threads = threads or torch.get_num_threads()
        self.model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.Sigmoid(), torch.nn.Linear(256, 128),
                                         torch.nn.Sigmoid(), torch.nn.Linear(128, 10))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.crit = torch.nn.CrossEntropyLoss()
        self.bs = bs
        self.x, self.y = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)

    def train(self, b0: int, b1: int) -> float:
        old = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            model, opt, crit, x, y, bs = self.model, self.opt, self.crit, self.x, self.y, self.bs
            start = time.perf_counter()
            for i in range(b0, b1, bs):
                opt.zero_grad()
                loss = crit(model(x[i:i + bs]), y[i:i + bs])
                loss.backward()
                opt.step()
            return time.perf_counter() - start
        finally:
            torch.set_num_threads(old)

    pulses = 0

    def accuracy(self, x, y) -> float:
        with torch.no_grad():
            return float((self.model(torch.from_numpy(x.astype(np.float32))).argmax(1).numpy() == y).mean())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def interleaved(methods: dict, ns: int, block: int, first: int) -> dict[str, float]:
    """Seconds per method over samples first..ns, alternating every ``block`` samples."""
    sec = dict.fromkeys(methods, 0.0)
    for b0 in range(first, ns, block):
        b1 = min(ns, b0 + block)
        for name, m in methods.items():
            sec[name] += m.train(b0, b1)
    return sec


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="ctf", choices=["ctf", "ideal", "fp"])
    ap.add_argument("--n", type=int, default=1000, help="N of the main comparison")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=60000, help="samples in the timed epoch")
    ap.add_argument("--block", type=int, default=500, help="the methods alternate every BLOCK samples")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--params", default=None, help="CTF parameter file, e.g. preset:ctf_paper (default: ours)")
    ap.add_argument("--methods", default="compiled,reference,torch")
    ap.add_argument("--torch-threads", default="1,0", help="torch thread counts (0 = torch's default)")
    ap.add_argument("--n-sweep", default="", help="N values of the time-vs-N sweep (compiled), e.g. 100,300,1000,3000")
    ap.add_argument("--sweep-limit", type=int, default=3000, help="samples per point of the sweeps")
    ap.add_argument("--batch-sweep", default="", help="batch sizes of the time-vs-batch sweep, e.g. 1,8,32,128")
    ap.add_argument("--project", default="", help="reproduction profile to project (e.g. full)")
    ap.add_argument("--project-workers", default="2,64")
    args = ap.parse_args(argv)
    x, y, xte, yte, name = load(args.train_limit)
    ns, bs = len(y), args.batch_size
    ns -= ns % bs
    wanted = args.methods.split(",")
    print(f"data: {name}, {ns} training samples, batch {bs}, lr {args.lr}, 784-256-128-10 sigmoid MLP; "
          f"torch {torch.__version__} (default threads {torch.get_num_threads()}); ctfrpu: {args.device} device"
          + (f", N = {args.n}, exact mode, update management" if args.device != "fp" else "")
          + f"; methods interleaved every {args.block} samples")
    cfg = run_config(args.device, args.n, args.lr, bs, args.params)
    methods: dict = {}
    for engine in ("compiled", "reference"):
        if engine in wanted:
            methods[engine] = Ctfrpu(cfg, engine, x, y)
    if "torch" in wanted:
        for th in dict.fromkeys(int(v) for v in args.torch_threads.split(",")):
            m = Torch(th, args.lr, bs, x, y)
            methods[f"torch {m.threads} thread{'s' if m.threads > 1 else ''}"] = m
    # warm-up (numba cache load, first-call costs) on the first block, not timed
    first = min(ns, max(bs, (args.block // bs) * bs))
    for m in methods.values():
        m.train(0, first)
    sec = interleaved(methods, ns, args.block, first)
    timed = ns - first
    print(f"\n{'method':<18} {'us/sample':>10} {'s/60k epoch':>12} {'Mpulses/s':>10} {'test acc':>9}")
    for label, m in methods.items():
        mp = f"{m.pulses * timed / ns / sec[label] / 1e6:10.1f}" if m.pulses else f"{'-':>10}"
        print(f"{label:<18} {sec[label] / timed * 1e6:10.1f} {sec[label] / timed * 60000:12.1f} {mp} "
              f"{m.accuracy(xte, yte):9.3f}")
    for label in methods:
        if label.startswith("torch"):
            for engine in ("compiled", "reference"):
                if engine in sec:
                    print(f"ratio {engine} / {label}: {sec[engine] / sec[label]:.2f}")
    if "compiled" in methods:
        print(f"pulses per sample (compiled): {methods['compiled'].pulses / ns:.0f}")
    print(f"peak RSS of this process (data, torch, every model): {peak_rss_mb():.0f} MB")

    lim = min(args.sweep_limit, ns)
    if args.n_sweep and args.device != "fp":
        print(f"\ntime per sample vs N (compiled, first {lim} samples after a {args.block}-sample warm-up):")
        print(f"{'N':>6} {'us/sample':>10} {'s/60k epoch':>12} {'pulses/sample':>14} {'Mpulses/s':>10}")
        for n in (int(v) for v in args.n_sweep.split(",")):
            m = Ctfrpu(run_config(args.device, n, args.lr, 1, args.params), "compiled", x, y)
            m.train(0, args.block)
            p0 = m.pulses
            s = m.train(args.block, args.block + lim)
            pul = m.pulses - p0
            print(f"{n:>6} {s / lim * 1e6:10.1f} {s / lim * 60000:12.1f} {pul / lim:14.0f} {pul / s / 1e6:10.1f}")
    if args.batch_sweep:
        print(f"\ntime per sample vs batch size (first {lim} samples, interleaved; torch one thread):")
        print(f"{'batch':>6} {'compiled us':>12} {'torch us':>9} {'ratio':>6}")
        for b in (int(v) for v in args.batch_sweep.split(",")):
            lim_b = lim - lim % b
            pair = {"c": Ctfrpu(run_config(args.device, args.n, args.lr, b, args.params), "compiled", x, y),
                    "t": Torch(1, args.lr, b, x, y)}
            blk = max(b, (args.block // b) * b)
            for m in pair.values():
                m.train(0, blk)
            s = interleaved(pair, blk + lim_b, blk, blk)
            print(f"{b:>6} {s['c'] / lim_b * 1e6:12.1f} {s['t'] / lim_b * 1e6:9.1f} {s['c'] / s['t']:6.2f}")


    if args.project:
        main_us = sec["compiled"] / timed * 1e6 if "compiled" in sec and bs == 1 else None
        project(args.project, args.project_workers, args.block, lim, cfg, main_us)


def project(name: str, workers: str, warm: int, lim: int, main_cfg, main_us: float | None) -> None:
    """The paper-scale line (see the module doc)."""
    import sys
    from pathlib import Path

    from ctfrpu.data import load_dataset
    from ctfrpu.pipeline.reproduce import get_profile, grid_configs

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from project_profile import lpt

    configs = [c.model_copy(update={"optim": c.optim.model_copy(update={"engine": "compiled"})})
               for c in grid_configs(get_profile(name))]

    def key(c):
        return (c.data.dataset, c.device.kind, c.update.mode, c.pulses.n if c.device.kind != "fp" else 0,
                c.compensation.kind, c.optim.batch_size)

    classes: dict = {}
    for c in configs:
        classes.setdefault(key(c), c)
    data = {}
    print(f"\nprojection of profile {name!r}: {len(configs)} runs, {len(classes)} cost classes, each timed over "
          f"training samples {warm}-{warm + lim} (compiled engine)")
    print(f"{'dataset':8} {'device':6} {'mode':9} {'N':>5} {'comp':5} {'us/sample':>10}")
    per_sample = {}
    for k, c in classes.items():
        if c.data.dataset not in data:
            ds = load_dataset(c.data.dataset)
            data[c.data.dataset] = (np.ascontiguousarray(ds.x_train[:warm + lim]), ds.y_train[:warm + lim].astype(np.int64))
        x, y = data[c.data.dataset]
        m = Ctfrpu(c, "compiled", x, y)
        m.train(0, warm)
        per_sample[k] = m.train(warm, warm + lim) / lim
        print(f"{k[0]:8} {k[1]:6} {k[2]:9} {k[3]:>5} {k[4]:5} {per_sample[k] * 1e6:10.1f}")
    times = [per_sample[key(c)] * (c.data.train_limit or 60000) * c.optim.epochs for c in configs]
    factor = None
    if main_us is not None:
        mk = ("mnist", main_cfg.device.kind, "exact", main_cfg.pulses.n, "none", 1)
        if mk in per_sample and main_cfg.optim.lr == configs[0].optim.lr:
            factor = main_us / (per_sample[mk] * 1e6)
    print(f"sum of run times: {sum(times) / 3600:.1f} h")
    for w in (int(v) for v in workers.split(",")):
        line = f"wall on {w:3d} workers (LPT packing): {lpt(times, w) / 3600:.1f} h"
        if factor:
            line += f"; {lpt([t * factor for t in times], w) / 3600:.1f} h scaled by the main comparison's " \
                    f"longer-epoch per-sample time (x{factor:.2f})"
        print(line)


if __name__ == "__main__":
    main()
