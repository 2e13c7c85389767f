"""Train a small MLP whose weights live on analog tiles (aihwkit-style PyTorch front end).

    python examples/01_analog_layer.py [--device ctf|ideal] [--n 300] [--epochs 3]

``AnalogLinear`` keeps its weight matrix on an :class:`~ctfrpu.tile.AnalogTile` (here OUR CTF
model, exact pulse mode); the bias is an ordinary digital parameter. ``AnalogSGD`` lets each tile
apply its own stochastic pulse-train update from the stored inputs x and output gradients d --
no weight gradient is ever formed -- and does plain SGD on the biases.

Data: ``ctfrpu.data.load_dataset("synthetic")``, a small generated 28x28 set (not MNIST; its
accuracies mean nothing outside this project). Runs in well under a minute on a laptop core.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ctfrpu.config import PulseConfig, UpdateConfig
from ctfrpu.data import load_dataset
from ctfrpu.devices import CTFDevice, IdealDevice
from ctfrpu.nn import AnalogLinear, AnalogSGD, RPUConfig


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="ctf", choices=["ctf", "ideal"])
    ap.add_argument("--n", type=int, default=300, help="pulse-train length N")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=1, help="mini-batch (analog layers update sample by sample)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    data = load_dataset("synthetic")
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)

    device = CTFDevice() if args.device == "ctf" else IdealDevice()
    rpu = RPUConfig(device=device, pulses=PulseConfig(n=args.n), update=UpdateConfig(mode="exact"))
    rng = np.random.default_rng(args.seed)           # every random draw of the tiles comes from here
    model = torch.nn.Sequential(
        AnalogLinear(784, 64, rpu_config=rpu, rng=rng),
        torch.nn.Sigmoid(),
        AnalogLinear(64, 10, rpu_config=rpu, rng=rng),
    )
    opt = AnalogSGD(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    print(model)
    print(f"pulse train: {rpu.train.describe()}, dw_min = {model[0].tile.dw_min:.2e}")

    def accuracy() -> float:
        with torch.no_grad():
            return float((model(x_test).argmax(1) == y_test).float().mean())

    print(f"epoch 0: test accuracy {accuracy():.3f}")
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        perm = torch.randperm(len(x_train))
        total = 0.0
        for b0 in range(0, len(perm), args.batch):
            idx = perm[b0:b0 + args.batch]
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        pulses = sum(m.tile.stats["pulses"] for m in model if isinstance(m, AnalogLinear))
        print(f"epoch {epoch}: train loss {total / len(perm):.3f}, test accuracy {accuracy():.3f}, "
              f"{time.perf_counter() - start:.1f} s, {pulses:,} device pulses so far")
    assert model[0].analog_ctx.grad is None            # the weight gradient was never formed


if __name__ == "__main__":
    main()
