"""``AnalogLinear``: a linear layer whose weights live on an :class:`~ctfrpu.tile.AnalogTile`.

As in aihwkit, the weight gradient is never formed. The forward pass computes W x on the tile and
keeps x; the backward pass computes W^T d on the tile (the gradient wrt the input) and keeps d
(the gradient wrt the output); an analog optimiser (:class:`~ctfrpu.nn.AnalogSGD`,
:class:`~ctfrpu.nn.AnalogOptimizer`) then asks the tile to apply its pulsed rank-1 update from the
stored (x, d) pairs, sample by sample. The bias is digital (a ``torch.nn.Parameter``).

The tile is reached through ``layer.analog_ctx``, an empty ``torch.nn.Parameter`` (so that
optimisers see the layer and autograd calls the backward even when the input needs no gradient);
its ``.grad`` stays None. The (x, d) pairs wait in ``analog_ctx.pending`` until the optimiser's
``step()`` applies them or its ``zero_grad()`` drops them; at most
:attr:`AnalogContext.max_pending` backward passes may wait (a loop whose optimiser never applies
them fails with a one-line error instead of leaking memory).

State (:class:`AnalogLayerBase`): ``state_dict()`` holds the analog weights under ``weight`` and the
tile's full state (device records, counters, clock, sample counter, gain) as tensors under
``analog_tile_*``, plus the generator state (a nested dict of plain values) as the layer's extra
state (:mod:`ctfrpu.nn.tilestate`): ``torch.save(model.state_dict())`` and
``torch.load(..., weights_only=True)`` round-trip it and training continues bit-identically.
Pending (x, d) pairs are not part of the state: save after ``step()``. ``copy.deepcopy`` and
pickling (``torch.save(model)``) copy the tile the same way.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from ..errors import CtfrpuError
from ..tile import AnalogTile
from . import tilestate
from .config import RPUConfig
from .threads import pinned
from .weight import AnalogWeight


class AnalogContext(torch.nn.Parameter):
    """Empty parameter carrying an analog tile and the (x, d) pairs awaiting its update."""

    max_pending: int = 256
    """Backward passes whose (x, d) may wait for an optimiser step (gradient accumulation over up
    to this many micro-batches); one more is a CtfrpuError -- the sign of an optimiser that does
    not apply analog updates."""

    def __new__(cls, tile: AnalogTile):
        obj = super().__new__(cls, torch.empty(0), requires_grad=True)
        obj.tile = tile
        obj.pending = []
        return obj

    def __repr__(self) -> str:
        return f"AnalogContext({self.tile!r}, pending={len(self.pending)})"

    def push(self, x: np.ndarray, d: np.ndarray) -> None:
        if len(self.pending) >= self.max_pending:
            raise CtfrpuError(f"{len(self.pending)} backward passes of an analog layer are waiting for an optimiser "
                              f"step: use ctfrpu.nn.AnalogSGD or AnalogOptimizer(torch.optim.<cls>, ...) -- a plain "
                              f"torch optimiser never applies analog updates")
        self.pending.append((x, d))

    def apply_pending(self, lr: float) -> None:
        """Apply the waiting (x, d) pairs with learning rate ``lr``, in order, and drop them."""
        pending, self.pending = self.pending, []
        for x, d in pending:
            self.tile.update(x, d, lr)

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        new = AnalogContext(tilestate.deepcopy_tile(self.tile, memo))
        new.pending = copy.deepcopy(self.pending, memo)
        new.requires_grad_(self.requires_grad)
        memo[id(self)] = new
        return new

    def __reduce_ex__(self, protocol):
        # torch.nn.Parameter pickles as a plain Parameter (losing the tile); rebuild ours instead.
        # The tile's constructor arguments and state are data (arrays, dataclasses, a generator).
        return (_rebuild_context, (tilestate.tile_args(self.tile), self.tile.state_dict(), self.pending,
                                   self.requires_grad))


def _rebuild_context(args: dict, state: dict, pending: list, requires_grad: bool) -> AnalogContext:
    ctx = AnalogContext(tilestate.rebuild_tile(args, state))
    ctx.pending = list(pending)
    ctx.requires_grad_(requires_grad)
    return ctx


class _AnalogMVM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, analog_ctx):
        xn = x.detach().to("cpu", torch.float64, copy=True).numpy()
        with pinned():
            y = analog_ctx.tile.forward(xn)
        ctx.analog_ctx = analog_ctx
        ctx.x = xn
        return torch.from_numpy(np.ascontiguousarray(y)).to(device=x.device, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad_y):
        d = grad_y.detach().to("cpu", torch.float64, copy=True).numpy()
        actx = ctx.analog_ctx
        actx.push(ctx.x, d)
        gx = None
        if ctx.needs_input_grad[0]:
            with pinned():
                gx = actx.tile.backward(d)
            gx = torch.from_numpy(np.ascontiguousarray(gx)).to(device=grad_y.device, dtype=grad_y.dtype)
        return gx, None


def make_rng(rng, who: str) -> np.random.Generator:
    if rng is None:       # follow torch's global seed (torch.manual_seed), like nn.Linear's init
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise CtfrpuError(f"{who}: rng must be a numpy Generator, a seed >= 0 or None, got {rng!r}")


def check_rpu_config(rpu_config, who: str) -> RPUConfig:
    rpu_config = RPUConfig() if rpu_config is None else rpu_config
    if not isinstance(rpu_config, RPUConfig):
        raise CtfrpuError(f"{who}: rpu_config must be an RPUConfig, got {type(rpu_config).__name__}")
    return rpu_config


def check_positive_int(v, what: str, who: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise CtfrpuError(f"{who}: {what} must be an integer >= 1, got {v!r}")
    return int(v)


class AnalogLayerBase(torch.nn.Module):
    """What every analog layer shares: the tile (via ``analog_ctx``), a digital bias, ``weight``
    reads and writes, ``get_weights`` / ``set_weights`` and the layer's state dict.

    Subclasses call :meth:`_init_analog` and set ``weight_shape`` (the shape of ``weight``; the
    tile holds it as (out, prod(rest)))."""

    weight_shape: tuple[int, ...]

    def _init_analog(self, out_size: int, in_size: int, bias: bool, rpu_config: RPUConfig, rng) -> None:
        """Weights and bias uniform in +-1/sqrt(in_size) (torch.nn.Linear / Conv2d), weights clipped
        to the device window. ``rng`` draws them, then one seed for the tile's own generator, so
        that each layer's state is self-contained even when layers share ``rng`` (ours)."""
        self.rpu_config = rpu_config
        bound = 1.0 / math.sqrt(in_size)
        w0 = rng.uniform(-bound, bound, (out_size, in_size))
        b0 = rng.uniform(-bound, bound, out_size) if bias else None
        tile_rng = np.random.default_rng(int(rng.integers(0, 2**63)))
        tile = rpu_config.make_tile(out_size, in_size, tile_rng, w0)
        self.analog_ctx = AnalogContext(tile)
        self.bias = torch.nn.Parameter(torch.tensor(b0, dtype=torch.float32)) if bias else None

    @property
    def tile(self) -> AnalogTile:
        return self.analog_ctx.tile

    # -- weights ------------------------------------------------------------------------------

    @property
    def weight(self) -> torch.Tensor:
        """A float32 copy of the tile's weights (``weight_shape``); not a parameter, never has a grad.
        In-place writes into it (``copy_``, ``zero_``, ``torch.nn.init.*``, ``w[i] = ...``) program the
        tile, clipped to the device window (:mod:`ctfrpu.nn.weight`); so does ``layer.weight = t``."""
        return AnalogWeight(torch.tensor(self.tile.weights, dtype=torch.float32).reshape(self.weight_shape), self)

    @weight.setter
    def weight(self, value) -> None:
        self.set_weights(value)

    def __setattr__(self, name, value):
        if name == "weight":          # also for a Parameter, which torch.nn.Module would register
            self.set_weights(value)
            return
        super().__setattr__(name, value)

    def get_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) float32 copies, as in aihwkit (plain tensors, not linked to the tile)."""
        w = torch.tensor(self.tile.weights, dtype=torch.float32).reshape(self.weight_shape)
        return w, (None if self.bias is None else self.bias.detach().clone())

    def set_weights(self, weight, bias=None) -> None:
        """Program the tile's weights (shape ``weight_shape`` or the tile's (out, in); clipped to each
        cell's window; CTF: V_T set, cell left relaxed) and optionally the bias."""
        if isinstance(weight, torch.Tensor):
            with torch._C.DisableTorchFunctionSubclass():
                w = weight.detach().to("cpu", torch.float64).numpy()
        else:
            w = np.asarray(weight, dtype=np.float64)
        if w.shape not in (tuple(self.weight_shape), (self.tile.out_size, self.tile.in_size)):
            raise CtfrpuError(f"{type(self).__name__}.set_weights: weight has shape {w.shape}, expected "
                              f"{tuple(self.weight_shape)}")
        self.tile.set_weights(w.reshape(self.tile.out_size, self.tile.in_size))
        if bias is not None:
            if self.bias is None:
                raise CtfrpuError(f"{type(self).__name__}.set_weights: this layer has no bias")
            with torch.no_grad():
                self.bias.copy_(torch.as_tensor(bias, dtype=self.bias.dtype).reshape(self.bias.shape))

    def drop_pending(self) -> None:
        """Forget the (x, d) pairs waiting for an optimiser step."""
        self.analog_ctx.pending.clear()

    def zero_grad(self, set_to_none: bool = True) -> None:
        """``torch.nn.Module.zero_grad`` that also drops this layer's pending analog updates."""
        super().zero_grad(set_to_none)
        self.drop_pending()

    # -- state dict ---------------------------------------------------------------------------

    def get_extra_state(self) -> dict:
        return tilestate.split_state(self.tile.state_dict())[1]

    def set_extra_state(self, state) -> None:
        # read together with the tensor entries in _load_from_state_dict (one tile.load_state_dict)
        if not isinstance(state, dict):
            raise CtfrpuError(f"{type(self).__name__}: analog extra state must be a dict, got {type(state).__name__}")

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination.pop(prefix + "analog_ctx", None)          # an empty tensor: nothing to save
        tensors, _ = tilestate.split_state(self.tile.state_dict())
        tensors["weight"] = tensors["weight"].reshape(self.weight_shape)
        for key, value in tensors.items():
            destination[prefix + key] = value

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if prefix + "analog_ctx" in missing_keys:
            missing_keys.remove(prefix + "analog_ctx")
        keys = tilestate.expected_keys(self.tile)
        for key in keys:
            if prefix + key in unexpected_keys:
                unexpected_keys.remove(prefix + key)
        extra_key = prefix + torch.nn.modules.module._EXTRA_STATE_KEY_SUFFIX
        absent = [k for k in keys if prefix + k not in state_dict]
        if not absent and extra_key in state_dict:
            tensors = {k: state_dict[prefix + k] for k in keys}
            if tensors["weight"].numel() == self.tile.out_size * self.tile.in_size:     # weight_shape -> tile's
                tensors["weight"] = tensors["weight"].reshape(self.tile.out_size, self.tile.in_size)
            try:
                self.tile.load_state_dict(tilestate.join_state(tensors, state_dict[extra_key], self.tile))
            except (ValueError, KeyError, CtfrpuError) as exc:
                error_msgs.append(f"analog tile state of {prefix or 'the layer'}: {exc}")
            return
        if absent == [k for k in keys if k != "weight"] and prefix + "weight" in state_dict:
            # weights only (e.g. a torch.nn.Linear / Conv2d state dict): program them; the tile's
            # entries are reported missing (torch passes strict=True here whatever the caller
            # asked, and filters afterwards: load such a state with strict=False)
            try:
                self.set_weights(state_dict[prefix + "weight"])
            except CtfrpuError as exc:
                error_msgs.append(str(exc))
        missing_keys.extend(prefix + k for k in absent)


class AnalogLinear(AnalogLayerBase):
    """y = W x + b with W on an analog tile (aihwkit's ``AnalogLinear``).

    ``rpu_config`` (:class:`RPUConfig`, default: ideal device, default pulses/update/io) sets the
    device, pulse train and update; ``rng`` draws the initial weights and bias and the seed of the
    tile's own generator (default: seeded from torch's global generator). Weights start uniform in
    +-1/sqrt(in_features) (as torch.nn.Linear; clipped to the device window), the bias likewise.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rpu_config: RPUConfig | None = None,
                 rng: np.random.Generator | int | None = None):
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features", "AnalogLinear")
        self.out_features = check_positive_int(out_features, "out_features", "AnalogLinear")
        self.weight_shape = (self.out_features, self.in_features)
        self._init_analog(self.out_features, self.in_features, bias, check_rpu_config(rpu_config, "AnalogLinear"),
                          make_rng(rng, "AnalogLinear"))

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
