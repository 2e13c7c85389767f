"""One epoch of exact-mode CTF training (batch 1) against idiomatic PyTorch float training.

Network (Gokmen & Vlasov): 784-256-128-10, sigmoid hidden layers, softmax + cross-entropy, SGD,
batch 1, lr 0.01, the same data in the same process.

* analog: three :class:`~ctfrpu.tile.AnalogTile` (CTF device, exact mode, update management) in a
  tight numpy loop -- forward ``tile.weights @ x`` by BLAS, sigmoid, softmax-CE backward through
  ``tile.weights.T``, then ``tile.update(x, d, lr)`` per layer; digital biases;
* torch: ``nn.Sequential`` + ``torch.optim.SGD``, ``zero_grad / loss.backward / step`` per sample,
  timed with torch's default thread count and with ``torch.set_num_threads(1)``.

Prints the time per sample and per epoch, the ratio analog / torch (target <= 1), the pulses per
second, the epoch time vs N (100, 300, 1000, 3000) and the peak RSS. MNIST if fetched
(``ctfrpu data fetch``), else random data of the same shapes.

Usage::

    python benchmarks/bench_ctf_training.py [--train-limit 60000] [--n 1000] [--torch-threads 1,2]
                                            [--n-sweep 100,300,1000,3000] [--sweep-limit 3000]
                                            [--device ctf|ideal] [--mode exact|expected|gaussian]

On a loaded machine torch with several threads can be far slower than with one (its worker threads
spin for cores that other processes hold); the methods alternate every --block samples so that
both see the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time

import numpy as np
import torch

from ctfrpu.config import IOConfig, UpdateConfig
from ctfrpu.devices import CTFDevice, IdealDevice, PulseTrain
from ctfrpu.tile import AnalogTile

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
            x_train = rng.random((n, 784), dtype=np.float32) * (rng.random((n, 784)) < 0.19)
            y_train = rng.integers(0, 10, n)
            x_test = x_train[:1000]
            y_test = y_train[:1000]
        ds, name = _D(), "random data (MNIST not fetched)"
    return (np.ascontiguousarray(ds.x_train[:limit]), np.asarray(ds.y_train[:limit]),
            np.ascontiguousarray(ds.x_test[:2000]), np.asarray(ds.y_test[:2000]), name)


def single_thread_blas():
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(1)
    except ImportError:                                            # pragma: no cover
        return contextlib.nullcontext()


class AnalogMLP:
    """The analog network and its training step (a tight numpy loop, as the training engine does)."""

    def __init__(self, n, device, lr=0.01, seed=0, mode="exact"):
        rng = np.random.default_rng(seed)
        train = PulseTrain.from_on_time(n, 5e-3, 1e-6)
        self.tiles, self.biases = [], []
        for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
            bound = 1.0 / np.sqrt(fan_in)
            self.tiles.append(AnalogTile(fan_out, fan_in, device, train, UpdateConfig(mode=mode), IOConfig(), rng,
                                         w0=rng.uniform(-bound, bound, (fan_out, fan_in))))
            self.biases.append(rng.uniform(-bound, bound, fan_out))
        self.lr = lr
        # compile / load the numba cache outside any timing
        t0 = AnalogTile(2, 2, device, train, UpdateConfig(mode=mode), IOConfig(), np.random.default_rng(1))
        t0.update(np.ones(2), np.ones(2) * 0.1, lr)

    def train(self, xs, ys):
        """Batch-1 SGD over xs (float64, C-contiguous); returns seconds (conversion not timed)."""
        w1, w2, w3 = (t.weights for t in self.tiles)        # live read-only views
        t1, t2, t3 = self.tiles
        b1, b2, b3 = self.biases
        lr = self.lr
        eye = np.eye(10)
        with single_thread_blas():
            start = time.perf_counter()
            for i in range(xs.shape[0]):
                a0 = xs[i]
                h1 = 1.0 / (1.0 + np.exp(-(w1 @ a0 + b1)))
                h2 = 1.0 / (1.0 + np.exp(-(w2 @ h1 + b2)))
                z = w3 @ h2 + b3
                z -= z.max()
                pz = np.exp(z)
                pz /= pz.sum()
                d3 = pz - eye[ys[i]]
                d2 = (d3 @ w3) * h2 * (1.0 - h2)
                d1 = (d2 @ w2) * h1 * (1.0 - h1)
                t3.update(h2, d3, lr)
                t2.update(h1, d2, lr)
                t1.update(a0, d1, lr)
                b3 -= lr * d3
                b2 -= lr * d2
                b1 -= lr * d1
            return time.perf_counter() - start

    @property
    def pulses(self) -> int:
        return sum(t.stats["pulses"] for t in self.tiles)

    def accuracy(self, x, y):
        h = x.astype(np.float64)
        for k, (t, b) in enumerate(zip(self.tiles, self.biases)):
            h = h @ t.weights.T + b
            if k < 2:
                h = 1.0 / (1.0 + np.exp(-h))
        return float(np.mean(h.argmax(1) == y))


class TorchMLP:
    """Idiomatic PyTorch: nn.Sequential + SGD, zero_grad / backward / step per sample."""

    def __init__(self, threads, lr=0.01, seed=0):
        torch.manual_seed(seed)
        self.threads = threads
        self.model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.Sigmoid(), torch.nn.Linear(256, 128),
                                         torch.nn.Sigmoid(), torch.nn.Linear(128, 10))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.crit = torch.nn.CrossEntropyLoss()

    def train(self, xt, yt):
        old = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            model, opt, crit = self.model, self.opt, self.crit
            start = time.perf_counter()
            for i in range(xt.shape[0]):
                opt.zero_grad()
                loss = crit(model(xt[i:i + 1]), yt[i:i + 1])
                loss.backward()
                opt.step()
            return time.perf_counter() - start
        finally:
            torch.set_num_threads(old)

    def accuracy(self, x, y):
        with torch.no_grad():
            return float((self.model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    """Current resident set size (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:                                                # pragma: no cover
        return peak_rss_mb()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-limit", type=int, default=60000, help="samples in the timed epoch")
    ap.add_argument("--n", type=int, default=1000, help="N of the main comparison")
    ap.add_argument("--block", type=int, default=250,
                    help="the methods alternate every BLOCK samples, so that a shared machine's load hits both alike")
    ap.add_argument("--n-sweep", default="100,300,1000,3000", help="N values of the epoch-time sweep ('' = skip)")
    ap.add_argument("--sweep-limit", type=int, default=3000, help="samples per point of the N sweep")
    ap.add_argument("--torch-threads", default=f"1,{torch.get_num_threads()}",
                    help="torch thread counts to compare with (comma-separated)")
    ap.add_argument("--device", default="ctf", choices=["ctf", "ideal"])
    ap.add_argument("--mode", default="exact", choices=["exact", "expected", "gaussian"])
    args = ap.parse_args(argv)
    x, y, xte, yte, name = load(args.train_limit)
    device = CTFDevice() if args.device == "ctf" else IdealDevice()
    ns = x.shape[0]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    print(f"data: {name}, {ns} training samples, batch 1, lr 0.01, 784-256-128-10 sigmoid MLP")
    print(f"torch {torch.__version__}, default threads {torch.get_num_threads()}; analog: {args.device} device, "
          f"{args.mode} mode, N={args.n}, update management, numpy BLAS single-threaded in the loop; "
          f"methods interleaved every {args.block} samples")

    rss0 = rss_mb()
    analog = AnalogMLP(args.n, device, mode=args.mode)
    rss1 = rss_mb()
    torches = [TorchMLP(th) for th in sorted({int(v) for v in args.torch_threads.split(",")})]
    sec_a = 0.0
    sec_t = [0.0] * len(torches)
    for b0 in range(0, ns, args.block):
        b1 = min(ns, b0 + args.block)
        sec_a += analog.train(x[b0:b1].astype(np.float64), y[b0:b1])
        for k, tm in enumerate(torches):
            sec_t[k] += tm.train(xt[b0:b1], yt[b0:b1])
    full = 60000 / ns
    pulses = analog.pulses
    print(f"\nanalog N={args.n}: {sec_a / ns * 1e6:8.1f} us/sample  ({sec_a * full:7.1f} s per 60k epoch)  "
          f"{pulses / ns:6.0f} pulses/sample  {pulses / sec_a / 1e6:5.1f} M pulses/s  "
          f"test acc {analog.accuracy(xte, yte):.3f}")
    for tm, st in zip(torches, sec_t):
        print(f"torch {tm.threads} thread(s): {st / ns * 1e6:7.1f} us/sample  ({st * full:7.1f} s per 60k epoch)  "
              f"test acc {tm.accuracy(xte, yte):.3f}   ratio analog/torch = {sec_a / st:.2f}")
    print(f"RSS: {rss0:.0f} MB after imports and data, +{rss1 - rss0:.0f} MB for the three analog tiles; "
          f"peak RSS so far {peak_rss_mb():.0f} MB")

    if args.n_sweep:
        lim = min(args.sweep_limit, ns)
        print(f"\nepoch time vs N (first {lim} samples, extrapolated to 60k):")
        print(f"{'N':>6} {'us/sample':>10} {'s/60k epoch':>12} {'pulses/sample':>14} {'Mpulses/s':>10} {'peak RSS MB':>12}")
        for n in (int(v) for v in args.n_sweep.split(",")):
            net = AnalogMLP(n, device, mode=args.mode)
            sec = net.train(x[:lim].astype(np.float64), y[:lim])
            pul = net.pulses
            print(f"{n:>6} {sec / lim * 1e6:10.1f} {sec / lim * 60000:12.1f} {pul / lim:14.0f} "
                  f"{pul / sec / 1e6:10.1f} {peak_rss_mb():12.0f}")


if __name__ == "__main__":
    main()
