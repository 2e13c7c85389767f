"""``AnalogConv2d``: a 2-D convolution whose kernel lives on an analog tile (im2col, as aihwkit).

The kernel (out_channels, in_channels, kh, kw) is held by one tile of out_channels rows and
in_channels * kh * kw columns. The forward pass unfolds the input into its patches
(``torch.nn.functional.unfold``), one column vector per output position, and runs them through the
tile as a batch: patch p of sample b is sample b * L + p of the tile (L = output positions, in
row-major order). The backward pass computes the patches' gradients on the tile (W^T d) and
autograd folds them back into the input gradient. The update applies every patch as one update
sample, in that order (sample-major, then output position), with d the output gradient at that
position -- aihwkit's convolution update. Its expected value is the SGD step of the kernel, which
sums over positions; note that a conv layer therefore receives L pulse trains per image.

Padding is zero padding; groups, other padding modes and string padding are not supported.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CtfrpuError
from .config import RPUConfig
from .modules import AnalogLayerBase, _AnalogMVM, check_positive_int, check_rpu_config, make_rng
from .threads import pinned


def _pair(v, what: str, minimum: int) -> tuple[int, int]:
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(vals) != 2 or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < minimum
                             for a in vals):
        raise CtfrpuError(f"AnalogConv2d: {what} must be an integer >= {minimum} or a pair of them, got {v!r}")
    return int(vals[0]), int(vals[1])


class AnalogConv2d(AnalogLayerBase):
    """torch.nn.Conv2d with the kernel on an analog tile (aihwkit's ``AnalogConv2d``).

    Arguments as torch.nn.Conv2d (``kernel_size``, ``stride``, ``padding``, ``dilation``: int or pair;
    zero padding only) plus ``rpu_config`` and ``rng`` as :class:`~ctfrpu.nn.AnalogLinear`. Weights
    and bias start uniform in +-1/sqrt(in_channels * kh * kw) (PyTorch's default bound).
    ``weight`` / ``get_weights`` use torch's kernel shape (out, in, kh, kw).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 bias: bool = True, rpu_config: RPUConfig | None = None, rng: np.random.Generator | int | None = None):
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels", "AnalogConv2d")
        self.out_channels = check_positive_int(out_channels, "out_channels", "AnalogConv2d")
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.dilation = _pair(dilation, "dilation", 1)
        kh, kw = self.kernel_size
        self.weight_shape = (self.out_channels, self.in_channels, kh, kw)
        self._init_analog(self.out_channels, self.in_channels * kh * kw, bias,
                          check_rpu_config(rpu_config, "AnalogConv2d"), make_rng(rng, "AnalogConv2d"))

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """Output height and width for an input of h x w (torch.nn.Conv2d's formula)."""
        out = []
        for size, k, s, p, d in zip((h, w), self.kernel_size, self.stride, self.padding, self.dilation):
            out.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        return out[0], out[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise CtfrpuError(f"AnalogConv2d: input must be (B, {self.in_channels}, H, W) or "
                              f"({self.in_channels}, H, W), got {tuple(x.shape)}")
        single = x.dim() == 3
        if single:
            x = x.unsqueeze(0)
        ho, wo = self.output_size(x.shape[2], x.shape[3])
        if ho < 1 or wo < 1:
            raise CtfrpuError(f"AnalogConv2d: input {tuple(x.shape[2:])} is smaller than the kernel "
                              f"{self.kernel_size} (dilation {self.dilation}, padding {self.padding})")
        b = x.shape[0]
        with pinned():
            cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
            patches = cols.transpose(1, 2).reshape(b * ho * wo, -1)       # sample-major, then position
        y = _AnalogMVM.apply(patches, self.analog_ctx)                     # (b * L, out)
        y = y.reshape(b, ho * wo, self.out_channels).transpose(1, 2).reshape(b, self.out_channels, ho, wo)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype).view(1, -1, 1, 1)
        return y[0] if single else y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}, tile={self.tile!r}")
