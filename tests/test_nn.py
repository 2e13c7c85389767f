"""AnalogLinear / AnalogSGD: forward = x W^T + b, input gradient = d W, no weight gradient, the
optimiser step applies the tile's pulsed update (sign and, in expected mode, exact value)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctfrpu.config import PulseConfig, RunConfig, UpdateConfig
from ctfrpu.devices import CTFDevice, IdealDevice
from ctfrpu.errors import CtfrpuError
from ctfrpu.nn import AnalogContext, AnalogLinear, AnalogSGD, RPUConfig


def layer(mode="exact", n=1000, device=None, seed=0, bias=True):
    cfg = RPUConfig(device=device or IdealDevice(), pulses=PulseConfig(n=n), update=UpdateConfig(mode=mode))
    return AnalogLinear(6, 4, bias=bias, rpu_config=cfg, rng=seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_and_input_gradient(dtype):
    lin = layer()
    w = torch.tensor(lin.tile.weights, dtype=torch.float64)
    x = torch.randn(5, 6, dtype=dtype, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = lin(x)
    assert y.dtype == dtype and y.shape == (5, 4)
    ref = x.detach().double() @ w.T + lin.bias.detach().double()
    torch.testing.assert_close(y.double(), ref, rtol=1e-6, atol=1e-6)
    g = torch.randn(5, 4, dtype=dtype, generator=torch.Generator().manual_seed(1))
    y.backward(g)
    torch.testing.assert_close(x.grad.double(), g.double() @ w, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(lin.bias.grad.double(), g.double().sum(0), rtol=1e-6, atol=1e-6)
    # no weight gradient anywhere: the context's grad stays None, no parameter of W's size
    assert lin.analog_ctx.grad is None
    assert all(p.numel() != 24 for p in lin.parameters())
    assert len(lin.analog_ctx.pending) == 1
    x3 = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(3))  # leading dims
    assert lin(x3).shape == (2, 3, 4)


def test_backward_called_when_input_needs_no_grad_and_not_in_eval():
    lin = layer()
    x = torch.rand(3, 6, generator=torch.Generator().manual_seed(0))   # first layer: no input grad
    lin(x).sum().backward()
    assert len(lin.analog_ctx.pending) == 1
    with torch.no_grad():
        lin(x)
    assert len(lin.analog_ctx.pending) == 1                   # evaluation stores nothing


def test_step_expected_mode_is_exact_sgd_and_bias_plain_sgd():
    """Ideal device, expected mode: the tile applies exactly -lr sum_b d_b x_b^T."""
    lin = layer(mode="expected")
    opt = AnalogSGD(lin.parameters(), lr=0.05)
    w0 = lin.tile.get_weights()
    b0 = lin.bias.detach().clone()
    x = torch.rand(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    opt.zero_grad()
    loss = ((lin(x) - target) ** 2).mean()
    loss.backward()
    xd, dd = lin.analog_ctx.pending[0]
    opt.step()
    np.testing.assert_allclose(lin.tile.weights, w0 - 0.05 * dd.T @ xd, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(lin.bias.detach(), (b0 - 0.05 * lin.bias.grad).float())
    assert lin.analog_ctx.pending == [] and lin.analog_ctx.grad is None


def test_step_exact_mode_moves_weights_down_the_gradient():
    lin = layer(mode="exact", n=1000, seed=3)
    opt = AnalogSGD(lin.parameters(), lr=0.1)
    w0 = lin.tile.get_weights()
    x = torch.rand(8, 6, generator=torch.Generator().manual_seed(3))
    target = torch.randn(8, 4, generator=torch.Generator().manual_seed(4))
    loss = ((lin(x) - target) ** 2).mean()
    loss.backward()
    grad = sum(d.T @ xx for xx, d in lin.analog_ctx.pending)
    opt.step()
    dw = lin.tile.weights - w0
    assert np.any(dw != 0)
    assert np.corrcoef(dw.ravel(), -grad.ravel())[0, 1] > 0.8      # ~0.93 (counting noise)
    # the loss went down
    with torch.no_grad():
        assert ((lin(x) - target) ** 2).mean() < loss


def test_training_a_small_regression_ctf_exact():
    torch.manual_seed(0)
    dev = CTFDevice()
    lin = AnalogLinear(5, 2, rpu_config=RPUConfig(device=dev, pulses=PulseConfig(n=300)), rng=1)
    w_true = torch.tensor([[0.3, -0.2, 0.1, 0.0, 0.25], [-0.1, 0.2, 0.3, -0.3, 0.05]])
    opt = AnalogSGD(lin.parameters(), lr=0.05)
    xs = torch.rand(400, 5, generator=torch.Generator().manual_seed(2))
    ys = xs @ w_true.T
    with torch.no_grad():
        first = ((lin(xs) - ys) ** 2).mean().item()
    for i in range(400):
        opt.zero_grad()
        ((lin(xs[i]) - ys[i]) ** 2).sum().backward()
        opt.step()
    with torch.no_grad():
        last = ((lin(xs) - ys) ** 2).mean().item()
    assert last < 0.2 * first


def test_same_seed_same_layer_and_torch_seed_default():
    a, b = layer(seed=5), layer(seed=5)
    assert np.array_equal(a.tile.weights, b.tile.weights)
    torch.manual_seed(1)
    c = AnalogLinear(3, 2)
    torch.manual_seed(1)
    d = AnalogLinear(3, 2)
    assert np.array_equal(c.tile.weights, d.tile.weights)


def test_config_and_errors():
    cfg = RPUConfig.from_run_config(RunConfig.model_validate({"device": {"kind": "ctf", "params": {"dv_std": 0.0}},
                                                              "pulses": {"n": 200}}))
    assert isinstance(cfg.device, CTFDevice) and cfg.device.dv_std == 0.0 and cfg.train.n == 200
    with pytest.raises(CtfrpuError, match="fp"):
        RPUConfig.from_run_config(RunConfig())
    with pytest.raises(CtfrpuError):
        RPUConfig(device="ctf")
    with pytest.raises(CtfrpuError):
        RPUConfig(gain=-1.0)
    with pytest.raises(CtfrpuError):
        AnalogLinear(0, 3)
    with pytest.raises(CtfrpuError, match="features"):
        layer()(torch.zeros(2, 5))
    lin = layer()
    lin.set_weights(torch.zeros(4, 6), torch.ones(4))
    w, b = lin.get_weights()
    assert torch.all(w == 0) and torch.all(b == 1)
    assert isinstance(lin.analog_ctx, AnalogContext) and not isinstance(lin.weight, torch.nn.Parameter)
    with pytest.raises(CtfrpuError, match="NaN"):
        lin(torch.tensor([[float("nan")] * 6]))
