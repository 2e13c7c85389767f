"""``AnalogSGD``: SGD whose step lets each analog tile apply its own pulsed update (aihwkit)."""

from __future__ import annotations

import torch

from .modules import AnalogContext


class AnalogSGD(torch.optim.SGD):
    """torch.optim.SGD for digital parameters; for every :class:`~ctfrpu.nn.AnalogLinear` it asks
    the tile to apply the stochastic pulse-train update from the (x, d) pairs stored by the
    forward/backward passes since the last step, sample by sample, with the group's lr::

        tile.update(x, d, lr)      E[dW] = -lr * sum_b outer(d_b, x_b)

    With a mean-reduced loss d already carries the 1/B of the batch, so the expected update is the
    SGD step. momentum / weight_decay / nesterov act on the digital parameters only.
    """

    def __init__(self, params, lr: float = 0.01, **kwargs):
        super().__init__(params, lr=lr, **kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)          # analog contexts have no .grad: SGD skips them
        for group in self.param_groups:
            for p in group["params"]:
                if isinstance(p, AnalogContext) and p.pending:
                    pending, p.pending = p.pending, []
                    for x, d in pending:
                        p.tile.update(x, d, group["lr"])
        return loss
