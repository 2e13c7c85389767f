"""Benchmark: one MNIST epoch of ctfrpu's FP training vs idiomatic PyTorch, batch 1, same process.

    .venv/bin/python benchmarks/bench_fp_epoch.py [--samples 60000] [--dataset mnist]

Both train the 784-256-128-10 sigmoid MLP with plain SGD (lr 0.01, batch 1) on the same samples.
PyTorch is timed with its default thread count and with one thread (the fair setting for batch 1
on a shared machine). Prints the seconds per epoch and the ratios ours / PyTorch (< 1: faster).
Compare ratios, not absolute seconds: shared machines are noisy.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ctfrpu.config import validate
from ctfrpu.data import load_dataset
from ctfrpu.training.runner import train_run


def torch_epoch(x: np.ndarray, y: np.ndarray, threads: int | None) -> float:
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.Sigmoid(), torch.nn.Linear(256, 128),
                              torch.nn.Sigmoid(), torch.nn.Linear(128, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    t0 = time.perf_counter()
    for i in range(len(ys)):
        opt.zero_grad()
        loss_fn(net(xs[i:i + 1]), ys[i:i + 1]).backward()
        opt.step()
    dt = time.perf_counter() - t0
    torch.set_num_threads(old)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--dataset", default="mnist")
    args = ap.parse_args()
    ds = load_dataset(args.dataset)
    cfg = validate({"data": {"dataset": args.dataset, "train_limit": args.samples, "test_limit": 1000},
                    "optim": {"epochs": 1}})
    res = train_run(cfg, ds)
    ours = res["epochs"][0]["seconds"]
    n = res["final"]["train_samples"]
    x = ds.x_train[:n].astype(np.float32)
    y = ds.y_train[:n]
    t_default = torch_epoch(x, y, None)
    t_one = torch_epoch(x, y, 1)
    print(f"samples per epoch           : {n}")
    print(f"ctfrpu FP (fused numpy/BLAS): {ours:8.2f} s  ({ours / n * 1e6:6.1f} us/step)")
    print(f"PyTorch, {torch.get_num_threads()} threads (default) : {t_default:8.2f} s  ({t_default / n * 1e6:6.1f} us/step)")
    print(f"PyTorch, 1 thread           : {t_one:8.2f} s  ({t_one / n * 1e6:6.1f} us/step)")
    print(f"ratio ours/PyTorch default  : {ours / t_default:.3f}")
    print(f"ratio ours/PyTorch 1 thread : {ours / t_one:.3f}")


if __name__ == "__main__":
    main()
