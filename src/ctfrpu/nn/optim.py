"""Analog optimisers (aihwkit's ``AnalogOptimizerMixin`` / ``AnalogOptimizer`` / ``AnalogSGD``).

Any ``torch.optim`` optimiser steps the digital parameters (biases, digital layers) as usual;
every analog layer in its parameter groups gets its pulsed update instead, with the lr of its
group::

    tile.update(x, d, lr)      E[dW] = -lr * gain * sum_b outer(d_b, x_b)   (ideal device)

from the (x, d) pairs stored by the forward/backward passes since the last step, sample by sample
in order. With a mean-reduced loss d already carries the 1/B of the batch, so the expected
update is the SGD step. The optimiser's own rule (momentum, Adam moments, weight decay) applies to
the digital parameters only: the tile's update is always plain SGD, as in aihwkit.

* ``AnalogSGD(params, lr=...)``: torch.optim.SGD + the analog step;
* ``AnalogOptimizer(torch.optim.Adam, params, lr=...)``: any optimiser class + the analog step;
* ``zero_grad()`` also drops the pending (x, d) pairs of its analog layers;
* ``regroup_param_groups()`` puts each analog layer in a group of its own (to give it its own lr).

A plain ``torch.optim`` optimiser whose parameters include an analog layer would step the digital
parameters and silently leave the analog weights unchanged; its ``step()`` raises CtfrpuError
instead (a global optimiser step pre-hook registered by this module).
"""

from __future__ import annotations

import weakref

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from ..errors import CtfrpuError
from .modules import AnalogContext
from .threads import pinned


def _analog_contexts(optimizer: torch.optim.Optimizer):
    for group in optimizer.param_groups:
        for p in group["params"]:
            if isinstance(p, AnalogContext):
                yield group, p


class AnalogOptimizerMixin:
    """Mixin before a ``torch.optim.Optimizer`` class: ``step`` also applies the analog updates,
    ``zero_grad`` also drops them (see the module doc)."""

    def step(self, closure=None):
        loss = super().step(closure)          # analog contexts have no .grad: the optimiser skips them
        with pinned(), torch.no_grad():
            for group, ctx in _analog_contexts(self):
                if ctx.pending:
                    ctx.apply_pending(float(group["lr"]))
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for _, ctx in _analog_contexts(self):
            ctx.pending.clear()

    def regroup_param_groups(self) -> None:
        """Give every analog layer a parameter group of its own (same hyper-parameters as the group
        it came from, marked ``group['analog'] = True``), so that e.g. its lr can be set alone."""
        groups = []
        for group in self.param_groups:
            digital = [p for p in group["params"] if not isinstance(p, AnalogContext)]
            analog = [p for p in group["params"] if isinstance(p, AnalogContext)]
            if digital or not analog:
                groups.append({**group, "params": digital})
            groups.extend({**group, "params": [p], "analog": True} for p in analog)
        self.param_groups = [g for g in groups if g["params"]]


class AnalogSGD(AnalogOptimizerMixin, torch.optim.SGD):
    """torch.optim.SGD for the digital parameters; the analog layers get their pulsed update with the
    group's lr. momentum / weight_decay / nesterov act on the digital parameters only."""

    def __init__(self, params, lr: float = 0.01, **kwargs):
        super().__init__(params, lr=lr, **kwargs)


_CLASSES: dict[type, type] = {}


class AnalogOptimizer(AnalogOptimizerMixin, torch.optim.Optimizer):
    """``AnalogOptimizer(torch.optim.Adam, model.parameters(), lr=1e-3)``: an instance of the given
    optimiser class with the analog step mixed in (aihwkit's ``AnalogOptimizer``); the remaining
    arguments go to that class."""

    def __new__(cls, optimizer_cls, *args, **kwargs):
        if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer)):
            raise CtfrpuError(f"AnalogOptimizer: the first argument must be a torch.optim.Optimizer class, "
                              f"got {optimizer_cls!r}")
        if issubclass(optimizer_cls, AnalogOptimizerMixin):
            raise CtfrpuError(f"AnalogOptimizer: {optimizer_cls.__name__} already applies analog updates")
        sub = _CLASSES.get(optimizer_cls)
        if sub is None:
            sub = type(f"Analog{optimizer_cls.__name__}", (cls, optimizer_cls), {"__module__": __name__})
            _CLASSES[optimizer_cls] = sub
        return super().__new__(sub)

    def __init__(self, optimizer_cls, *args, **kwargs):
        super().__init__(*args, **kwargs)


# Which optimisers hold analog layers, by the parameter count at the last look (an optimiser
# can gain parameters through add_param_group).
_seen: "weakref.WeakKeyDictionary[torch.optim.Optimizer, tuple[int, bool]]" = weakref.WeakKeyDictionary()


def _refuse_plain_optimizer(optimizer, args, kwargs):
    if isinstance(optimizer, AnalogOptimizerMixin):
        return None
    n = sum(len(g["params"]) for g in optimizer.param_groups)
    seen = _seen.get(optimizer)
    if seen is None or seen[0] != n:
        seen = (n, any(True for _ in _analog_contexts(optimizer)))
        _seen[optimizer] = seen
    if seen[1]:
        name = type(optimizer).__name__
        raise CtfrpuError(f"torch.optim.{name} would leave the analog weights unchanged: use "
                          f"ctfrpu.nn.AnalogOptimizer(torch.optim.{name}, params, ...) or ctfrpu.nn.AnalogSGD")
    return None


_hook = register_optimizer_step_pre_hook(_refuse_plain_optimizer)
