"""Plot the device pulses of ONE stochastic update (the inspectable-pulses API).

    python examples/02_plot_pulses.py [--out pulses.png] [--n 100] [--gap 1us] [--device ctf|ideal]

``AnalogTile.trace_update(x, d, lr)`` applies one exact-mode update and returns every pulse it
gave a cell: row (input i), col (output j), slot, start time, sign, and for the CTF device the
V_T change and the enhancement e0 at the pulse's start. The figure shows

1. a raster: cells (j, i) against slot, red = potentiate (+), blue = depress (-), marker area ~ |dV_T|;
2. each pulse's |dV_T| against its e0: pulses that follow a recent pulse of the same cell start
   with a higher enhancement and program more (OUR CTF model's gap dependence);
3. the resulting weight change dW next to the SGD target -lr d x^T.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ctfrpu.config import IOConfig, UpdateConfig  # noqa: E402
from ctfrpu.devices import CTFDevice, IdealDevice, PulseTrain  # noqa: E402
from ctfrpu.tile import AnalogTile  # noqa: E402
from ctfrpu.units import parse_time  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="pulses.png")
    ap.add_argument("--n", type=int, default=100, help="slots N")
    ap.add_argument("--pw", default="2us", help="pulse width")
    ap.add_argument("--gap", default="0.5us", help="gap between slots")
    ap.add_argument("--device", default="ctf", choices=["ctf", "ideal"])
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    n_in, n_out = 12, 8
    train = PulseTrain(args.n, parse_time(args.pw, "pw"), parse_time(args.gap, "gap"))
    device = CTFDevice() if args.device == "ctf" else IdealDevice()
    tile = AnalogTile(n_out, n_in, device, train, UpdateConfig(mode="exact"), IOConfig(), rng)
    x = rng.uniform(0, 1, n_in) * (rng.random(n_in) < 0.7)
    d = rng.normal(0, 0.1, n_out)
    w0 = tile.get_weights()
    ev = tile.trace_update(x, d, args.lr)
    dw = tile.get_weights() - w0
    print(f"{train.describe()}: {len(ev)} pulses on {len(np.unique(ev['col'] * n_in + ev['row']))} cells")

    fig, axes = plt.subplots(1, 3, figsize=(16, 5), gridspec_kw={"width_ratios": [2.2, 1.2, 1.6]})
    ax = axes[0]
    cell = ev["col"] * n_in + ev["row"]
    size = np.abs(ev["dvt_V"] if args.device == "ctf" else ev["dw"])
    size = 6 + 60 * size / max(size.max(), 1e-30)
    ax.scatter(ev["slot"], cell, s=size, c=np.where(ev["sign"] > 0, "tab:red", "tab:blue"), alpha=0.8, lw=0)
    ax.set_xlabel(f"slot k (starts at k x {train.period * 1e6:.2f} us)")
    ax.set_ylabel("cell  j * n_in + i")
    ax.set_title(f"pulses of one update ({len(ev)}): red +, blue -")
    ax.set_xlim(-1, train.n)
    ax.set_ylim(-1, n_in * n_out)

    ax = axes[1]
    if args.device == "ctf":
        ax.scatter(ev["e0"], np.abs(ev["dvt_V"]) * 1e3, s=10, c=np.where(ev["sign"] > 0, "tab:red", "tab:blue"))
        ax.set_xlabel("enhancement e0 at the pulse's start")
        ax.set_ylabel("|dV_T| of the pulse (mV)")
        ax.set_title("per-pulse step vs pulse history (OUR CTF model)")
    else:
        ax.hist(np.abs(ev["dw"]), bins=20)
        ax.set_xlabel("|dw| of the pulse")
        ax.set_title("ideal device: every step the same")

    ax = axes[2]
    target = -args.lr * np.outer(d, x)
    lim = max(np.abs(dw).max(), np.abs(target).max())
    im = ax.imshow(np.hstack([dw, np.full((n_out, 1), np.nan), target]), cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title("dW of this update  |  SGD target -lr d x^T")
    ax.set_xlabel("input i")
    ax.set_ylabel("output j")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
