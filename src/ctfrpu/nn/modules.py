"""``AnalogLinear``: a linear layer whose weights live on an :class:`~ctfrpu.tile.AnalogTile`.

As in aihwkit, the weight gradient is never formed. The forward pass computes W x on the tile and
keeps x; the backward pass computes W^T d on the tile (the gradient wrt the input) and keeps d
(the gradient wrt the output); :class:`~ctfrpu.nn.AnalogSGD` then asks the tile to apply its
pulsed rank-1 update from the stored (x, d) pairs, sample by sample. The bias is digital (a
``torch.nn.Parameter`` updated by plain SGD).

The tile is reached through ``layer.analog_ctx``, an empty ``torch.nn.Parameter`` (so that
optimisers see the layer and autograd calls the backward even when the input needs no gradient);
its ``.grad`` stays None.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import CtfrpuError
from ..tile import AnalogTile
from .config import RPUConfig


class AnalogContext(torch.nn.Parameter):
    """Empty parameter carrying an analog tile and the (x, d) pairs awaiting its update."""

    def __new__(cls, tile: AnalogTile):
        obj = super().__new__(cls, torch.empty(0), requires_grad=True)
        obj.tile = tile
        obj.pending = []
        return obj

    def __repr__(self) -> str:
        return f"AnalogContext({self.tile!r}, pending={len(self.pending)})"


class _AnalogMVM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, analog_ctx):
        xn = x.detach().to("cpu", torch.float64, copy=True).numpy()
        y = analog_ctx.tile.forward(xn)
        ctx.analog_ctx = analog_ctx
        ctx.x = xn
        return torch.from_numpy(np.ascontiguousarray(y)).to(device=x.device, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad_y):
        d = grad_y.detach().to("cpu", torch.float64, copy=True).numpy()
        actx = ctx.analog_ctx
        actx.pending.append((ctx.x, d))
        gx = None
        if ctx.needs_input_grad[0]:
            gx = torch.from_numpy(np.ascontiguousarray(actx.tile.backward(d))).to(device=grad_y.device,
                                                                                   dtype=grad_y.dtype)
        return gx, None


def _make_rng(rng) -> np.random.Generator:
    if rng is None:       # follow torch's global seed (torch.manual_seed), like nn.Linear's init
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise CtfrpuError(f"AnalogLinear: rng must be a numpy Generator, a seed >= 0 or None, got {rng!r}")


class AnalogLinear(torch.nn.Module):
    """y = W x + b with W on an analog tile (aihwkit's ``AnalogLinear``).

    ``rpu_config`` (:class:`RPUConfig`, default: ideal device, default pulses/update/io) sets the
    device, pulse train and update; ``rng`` is the generator of every random draw of the tile
    (default: seeded from torch's global generator). Weights start uniform in +-1/sqrt(in_features)
    (as torch.nn.Linear; clipped to the device window), the bias likewise.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rpu_config: RPUConfig | None = None,
                 rng: np.random.Generator | int | None = None):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise CtfrpuError(f"AnalogLinear: {name} must be an integer >= 1, got {v!r}")
        rpu_config = RPUConfig() if rpu_config is None else rpu_config
        if not isinstance(rpu_config, RPUConfig):
            raise CtfrpuError(f"AnalogLinear: rpu_config must be an RPUConfig, got {type(rpu_config).__name__}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.rpu_config = rpu_config
        gen = _make_rng(rng)
        bound = 1.0 / math.sqrt(self.in_features)
        w0 = gen.uniform(-bound, bound, (self.out_features, self.in_features))
        b0 = gen.uniform(-bound, bound, self.out_features) if bias else None
        tile = AnalogTile(self.out_features, self.in_features, rpu_config.device, rpu_config.train,
                          rpu_config.update, rpu_config.io, gen, w0=w0, gain=rpu_config.gain)
        self.analog_ctx = AnalogContext(tile)
        self.bias = torch.nn.Parameter(torch.tensor(b0, dtype=torch.float32)) if bias else None

    @property
    def tile(self) -> AnalogTile:
        return self.analog_ctx.tile

    @property
    def weight(self) -> torch.Tensor:
        """A float32 copy of the tile's weights (out, in); not a parameter, never has a grad."""
        return torch.tensor(self.tile.weights, dtype=torch.float32)

    def get_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) copies, as in aihwkit."""
        return self.weight, (None if self.bias is None else self.bias.detach().clone())

    def set_weights(self, weight, bias=None) -> None:
        """Program the tile's weights (clipped to the device window) and optionally the bias."""
        w = weight.detach().cpu().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight)
        self.tile.set_weights(w.astype(np.float64))
        if bias is not None:
            if self.bias is None:
                raise CtfrpuError("AnalogLinear.set_weights: this layer has no bias")
            with torch.no_grad():
                self.bias.copy_(torch.as_tensor(bias, dtype=self.bias.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise CtfrpuError(f"AnalogLinear: input has {x.shape[-1]} features, expected {self.in_features}")
        lead = x.shape[:-1]
        y = _AnalogMVM.apply(x.reshape(-1, self.in_features), self.analog_ctx).reshape(*lead, self.out_features)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, " \
               f"tile={self.tile!r}"
