"""A small CNN on Fashion-MNIST with every conv / linear layer on CTF tiles (OUR device model).

    python examples/03_cnn_fashion.py [--n 100] [--epochs 1] [--train-limit 60000] [--batch 32]

LeNet-like: AnalogConv2d(1, 8, 5) - tanh - maxpool 2 - AnalogConv2d(8, 16, 5) - tanh - maxpool 2 -
AnalogLinear(256, 10). Pulse-exact update, update and BL management on. Each conv patch is one
update sample (im2col, as aihwkit): 576 + 64 + 1 pulse trains per image. Needs the fetched data
(``ctfrpu data fetch``). Prints accuracy on the full test set and the time per training sample.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from ctfrpu.config import PulseConfig, UpdateConfig
from ctfrpu.data import load_dataset
from ctfrpu.devices import CTFDevice
from ctfrpu.nn import AnalogConv2d, AnalogLinear, AnalogSequential, AnalogSGD, RPUConfig


def build(rpu: RPUConfig, seed: int) -> AnalogSequential:
    rng = np.random.default_rng(seed)
    return AnalogSequential(
        AnalogConv2d(1, 8, 5, rpu_config=rpu, rng=rng), torch.nn.Tanh(), torch.nn.MaxPool2d(2),
        AnalogConv2d(8, 16, 5, rpu_config=rpu, rng=rng), torch.nn.Tanh(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), AnalogLinear(256, 10, rpu_config=rpu, rng=rng))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="pulse-train length N")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-limit", type=int, default=None, help="use only the first K training samples")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    data = load_dataset("fashion")
    x = torch.from_numpy(data.x_train[:args.train_limit]).float().reshape(-1, 1, 28, 28)
    y = torch.from_numpy(data.y_train[:args.train_limit]).long()
    xt = torch.from_numpy(data.x_test).float().reshape(-1, 1, 28, 28)
    yt = torch.from_numpy(data.y_test).long()
    rpu = RPUConfig(device=CTFDevice(), pulses=PulseConfig(n=args.n),
                    update=UpdateConfig(update_management=True, update_bl_management=True))
    model = build(rpu, args.seed)
    opt = AnalogSGD(model.parameters(), lr=args.lr)
    print(model)
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(len(x))
        start = time.perf_counter()
        model.train()
        for b0 in range(0, len(perm), args.batch):
            idx = perm[b0:b0 + args.batch]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        elapsed = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            acc = float((model(xt).argmax(1) == yt).float().mean())
        print(f"epoch {epoch}: {len(x)} training samples, test accuracy {acc:.4f}, {elapsed:.1f} s, "
              f"{elapsed / len(x) * 1e3:.2f} ms per training sample (N = {args.n})")


if __name__ == "__main__":
    main()
