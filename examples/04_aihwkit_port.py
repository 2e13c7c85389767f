"""An aihwkit user's script, ported: MLP and CNN, DataLoader batch 32, save/load mid-training,
any torch optimiser.

    python examples/04_aihwkit_port.py [--train-limit 2000] [--dataset fashion|synthetic]

1. 784-128-10 MLP of AnalogLinear layers, AnalogSGD, one epoch; torch.save(state_dict) in the
   middle, reload into a fresh model (torch.load weights_only=True), finish: same weights as the
   run straight through.
2. A digital torch CNN converted with convert_to_analog (AnalogConv2d + AnalogLinear), trained
   with AnalogOptimizer(torch.optim.Adam, ...): Adam on the biases, pulsed SGD on the tiles.
3. copy.deepcopy of the trained model, a write into .weight, and the error a plain torch
   optimiser gives.
"""

from __future__ import annotations

import argparse
import copy
import io
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ctfrpu.config import PulseConfig, UpdateConfig
from ctfrpu.data import load_dataset
from ctfrpu.devices import CTFDevice
from ctfrpu.errors import CtfrpuError
from ctfrpu.nn import AnalogLinear, AnalogOptimizer, AnalogSequential, AnalogSGD, RPUConfig, convert_to_analog


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    model.train()
    return acc


def run(model, opt, loader, skip=0, stop=None):
    for i, (xb, yb) in enumerate(loader):
        if i < skip:
            continue
        if stop is not None and i >= stop:
            break
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion")
    ap.add_argument("--train-limit", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=0.05)
    args = ap.parse_args(argv)
    data = load_dataset(args.dataset)
    x = torch.from_numpy(data.x_train[:args.train_limit]).float()
    y = torch.from_numpy(data.y_train[:args.train_limit]).long()
    xt, yt = torch.from_numpy(data.x_test[:2000]).float(), torch.from_numpy(data.y_test[:2000]).long()
    rpu = RPUConfig(device=CTFDevice(), pulses=PulseConfig(n=100),
                    update=UpdateConfig(update_management=True, update_bl_management=True))

    def loader():
        return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))

    def mlp():
        rng = np.random.default_rng(0)
        return AnalogSequential(AnalogLinear(784, 128, rpu_config=rpu, rng=rng), torch.nn.Sigmoid(),
                                AnalogLinear(128, 10, rpu_config=rpu, rng=rng))

    # 1. MLP, save / load mid-epoch
    half = len(loader()) // 2
    t = time.perf_counter()
    straight = mlp()
    run(straight, AnalogSGD(straight.parameters(), lr=args.lr), loader())
    print(f"MLP straight through: test accuracy {accuracy(straight, xt, yt):.3f} ({time.perf_counter() - t:.1f} s)")
    first = mlp()
    run(first, AnalogSGD(first.parameters(), lr=args.lr), loader(), stop=half)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = mlp()
    resumed[0].set_weights(torch.zeros(128, 784))              # prove the load overwrites it
    print("load_state_dict:", resumed.load_state_dict(torch.load(buf, weights_only=True)))
    run(resumed, AnalogSGD(resumed.parameters(), lr=args.lr), loader(), skip=half)
    same = all(np.array_equal(a.weights, b.weights) for a, b in zip(straight.analog_tiles(), resumed.analog_tiles()))
    print(f"MLP saved after {half} batches, reloaded, finished: test accuracy {accuracy(resumed, xt, yt):.3f}, "
          f"weights identical to straight through: {same}")

    # 2. CNN converted from a digital model, Adam for the digital parameters
    torch.manual_seed(0)
    digital = torch.nn.Sequential(torch.nn.Unflatten(1, (1, 28, 28)), torch.nn.Conv2d(1, 8, 5), torch.nn.Tanh(),
                                  torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 16, 5), torch.nn.Tanh(),
                                  torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(256, 10))
    cnn = convert_to_analog(digital, rpu, rng=0)
    opt = AnalogOptimizer(torch.optim.Adam, cnn.parameters(), lr=args.lr)
    t = time.perf_counter()
    run(cnn, opt, loader())
    el = time.perf_counter() - t
    print(f"CNN ({type(opt).__name__}): test accuracy {accuracy(cnn, xt, yt):.3f}, {el:.1f} s, "
          f"{el / len(x) * 1e3:.2f} ms per training sample")

    # 3. deepcopy, .weight writes, plain optimiser
    twin = copy.deepcopy(cnn)
    print(f"deepcopy: same test accuracy {accuracy(twin, xt, yt) == accuracy(cnn, xt, yt)}")
    torch.nn.init.zeros_(twin[1].weight)
    print(f"nn.init.zeros_ on the copy's conv weight programs its tile: {bool(np.all(twin[1].tile.weights == 0))}, "
          f"original untouched: {bool(np.any(cnn[1].tile.weights != 0))}")
    sgd = torch.optim.SGD(twin.parameters(), lr=0.01)
    F.cross_entropy(twin(x[:32]), y[:32]).backward()
    try:
        sgd.step()
    except CtfrpuError as exc:
        print(f"plain torch.optim.SGD: error: {exc}")


if __name__ == "__main__":
    main()
