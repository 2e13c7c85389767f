"""``AnalogSequential`` and ``convert_to_analog`` (aihwkit's names and behaviour).

``convert_to_analog(model, rpu_config)`` returns a copy of ``model`` (the original is left as it
is unless ``inplace=True``) in which every ``torch.nn.Linear`` becomes an
:class:`~ctfrpu.nn.AnalogLinear` and every ``torch.nn.Conv2d`` an :class:`~ctfrpu.nn.AnalogConv2d`,
with the digital weights programmed into the tiles (``set_weights``: clipped to the device window)
and the biases copied; every ``torch.nn.Sequential`` becomes an :class:`AnalogSequential`. All
other modules stay digital.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch

from ..errors import CtfrpuError
from ..tile import AnalogTile
from .config import RPUConfig
from .conv import AnalogConv2d
from .modules import AnalogLayerBase, AnalogLinear, check_rpu_config, make_rng


class AnalogSequential(torch.nn.Sequential):
    """torch.nn.Sequential with helpers for its analog layers (at any depth)."""

    def analog_layers(self) -> Iterator[AnalogLayerBase]:
        """The analog layers, in module order."""
        return (m for m in self.modules() if isinstance(m, AnalogLayerBase))

    def analog_tiles(self) -> Iterator[AnalogTile]:
        """The tiles of :meth:`analog_layers`."""
        return (m.tile for m in self.analog_layers())

    def zero_grad(self, set_to_none: bool = True) -> None:
        """``torch.nn.Module.zero_grad`` that also drops the pending analog updates."""
        super().zero_grad(set_to_none)
        for layer in self.analog_layers():
            layer.drop_pending()


def _convert(module: torch.nn.Module, rpu_config: RPUConfig, rng: np.random.Generator) -> torch.nn.Module:
    if isinstance(module, AnalogLayerBase):
        return module
    if type(module) is torch.nn.Linear:
        new = AnalogLinear(module.in_features, module.out_features, bias=module.bias is not None,
                           rpu_config=rpu_config, rng=rng)
    elif type(module) is torch.nn.Conv2d:
        if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise CtfrpuError(f"convert_to_analog: {module} is not supported (groups = 1, numeric zero padding only)")
        new = AnalogConv2d(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                           padding=module.padding, dilation=module.dilation, bias=module.bias is not None,
                           rpu_config=rpu_config, rng=rng)
    else:
        for name, child in module.named_children():
            setattr(module, name, _convert(child, rpu_config, rng))
        if type(module) is torch.nn.Sequential:
            seq = AnalogSequential()
            for name, child in module.named_children():
                seq.add_module(name, child)
            seq.train(module.training)
            return seq
        return module
    with torch.no_grad():
        new.set_weights(module.weight.detach(), None if module.bias is None else module.bias.detach())
    new.train(module.training)
    return new


def convert_to_analog(model: torch.nn.Module, rpu_config: RPUConfig | None = None,
                      rng: np.random.Generator | int | None = None, inplace: bool = False) -> torch.nn.Module:
    """``model`` with its Linear / Conv2d layers on analog tiles (see the module doc). ``rng``
    seeds the tiles' generators (default: from torch's global generator)."""
    if not isinstance(model, torch.nn.Module):
        raise CtfrpuError(f"convert_to_analog: expected a torch.nn.Module, got {type(model).__name__}")
    rpu_config = check_rpu_config(rpu_config, "convert_to_analog")
    gen = make_rng(rng, "convert_to_analog")
    return _convert(model if inplace else copy.deepcopy(model), rpu_config, gen)
