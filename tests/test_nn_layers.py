"""Issue 13, item 8: AnalogConv2d (im2col, one update sample per patch, in order), AnalogSequential,
convert_to_analog, AnalogOptimizer around any torch optimiser, regroup_param_groups, and the
documented limit on user-defined devices."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ctfrpu.config import PulseConfig, UpdateConfig
from ctfrpu.devices import CTFDevice, IdealDevice
from ctfrpu.errors import CtfrpuError
from ctfrpu.nn import (AnalogConv2d, AnalogLinear, AnalogOptimizer, AnalogSequential, AnalogSGD, RPUConfig,
                       convert_to_analog)

EXPECTED = RPUConfig(device=IdealDevice(), update=UpdateConfig(mode="expected"))


def plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_subclass(torch.Tensor).detach().clone()


@pytest.mark.parametrize("kw", [dict(kernel_size=3), dict(kernel_size=(3, 2), stride=2, padding=1),
                                dict(kernel_size=2, dilation=2, padding=(0, 1))])
def test_conv_forward_and_input_gradient_match_torch(kw):
    conv = AnalogConv2d(2, 3, rpu_config=EXPECTED, rng=0, **kw)
    w, b = conv.get_weights()
    assert w.shape == (3, 2, *conv.kernel_size)
    x = torch.rand(2, 2, 7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    y = conv(x)
    ref = F.conv2d(xr, w.double(), b.double(), stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-6, atol=1e-6)
    g = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y.backward(g)
    ref.backward(g)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-6, atol=1e-6)
    assert conv(x[0]).shape == ref.shape[1:]            # unbatched input


def test_conv_update_is_one_sample_per_patch_in_order_and_the_sgd_step_in_expectation():
    conv = AnalogConv2d(2, 3, 3, padding=1, rpu_config=EXPECTED, rng=1)
    w0 = torch.from_numpy(conv.tile.get_weights()).reshape(3, 2, 3, 3)       # float64, not get_weights' copy
    b0 = conv.bias.detach().double()
    x = torch.rand(2, 2, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    target = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    seen = []
    update = conv.tile.update
    conv.tile.update = lambda xx, dd, lr: (seen.append((xx.copy(), dd.copy())), update(xx, dd, lr))
    opt = AnalogSGD(conv.parameters(), lr=0.1)
    ((conv(x) - target) ** 2).mean().backward()
    opt.step()
    (xs, ds), = seen
    # patch p of sample b is update sample b * L + p (aihwkit's order): rows of unfold, sample-major
    patches = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 18)
    np.testing.assert_array_equal(xs, patches.numpy())
    assert ds.shape == (2 * 20, 3)
    # expected mode on the ideal device: the tile applied exactly -lr * (kernel gradient)
    wr = w0.clone().requires_grad_(True)
    ((F.conv2d(x, wr, b0, padding=1) - target) ** 2).mean().backward()
    np.testing.assert_allclose(conv.tile.weights, (w0 - 0.1 * wr.grad).reshape(3, 18).numpy(),
                               rtol=0, atol=1e-12)


def test_conv_state_dict_deepcopy_and_weight_writes():
    rpu = RPUConfig(device=CTFDevice(), pulses=PulseConfig(n=50), update=UpdateConfig(update_management=True))
    conv = AnalogConv2d(1, 2, 3, rpu_config=rpu, rng=0)
    opt = AnalogSGD(conv.parameters(), lr=0.05)
    x = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    conv(x).square().mean().backward()
    opt.step()
    sd = conv.state_dict()
    assert sd["weight"].shape == (2, 1, 3, 3)
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    other = AnalogConv2d(1, 2, 3, rpu_config=rpu, rng=5)
    other.load_state_dict(torch.load(buf, weights_only=True))
    twin = copy.deepcopy(conv)
    for m in (other, twin):
        np.testing.assert_array_equal(m.tile.weights, conv.tile.weights)
        assert m.tile.stats == conv.tile.stats
    torch.nn.init.zeros_(twin.weight)
    assert np.all(twin.tile.weights == 0) and np.any(conv.tile.weights != 0)


def test_convert_to_analog_keeps_the_function_and_the_original():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Flatten(),
                              torch.nn.Sequential(torch.nn.Linear(4 * 3 * 3, 8), torch.nn.Tanh()),
                              torch.nn.Linear(8, 3))
    x = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    ana = convert_to_analog(net, EXPECTED, rng=0)
    assert isinstance(ana, AnalogSequential) and isinstance(ana[4], AnalogSequential)
    assert isinstance(ana[0], AnalogConv2d) and isinstance(ana[4][0], AnalogLinear) and isinstance(ana[5], AnalogLinear)
    assert type(net[0]) is torch.nn.Conv2d                     # the original is untouched
    with torch.no_grad():
        torch.testing.assert_close(ana(x), net(x), rtol=1e-5, atol=1e-6)   # |w| < 1: nothing clipped
    assert len(list(ana.analog_layers())) == 3 and len(list(ana.analog_tiles())) == 3
    # AnalogSequential.zero_grad drops pending updates of every analog layer
    ana(x).sum().backward()
    assert all(layer.analog_ctx.pending for layer in ana.analog_layers())
    ana.zero_grad()
    assert not any(layer.analog_ctx.pending for layer in ana.analog_layers())
    with pytest.raises(CtfrpuError, match="not supported"):
        convert_to_analog(torch.nn.Conv2d(2, 2, 3, groups=2))
    with pytest.raises(CtfrpuError, match="Module"):
        convert_to_analog("model")


def test_analog_optimizer_wraps_any_torch_optimizer():
    lin = AnalogLinear(6, 4, rpu_config=EXPECTED, rng=0)
    digital = torch.nn.Linear(4, 2)
    ref = copy.deepcopy(digital)
    model = torch.nn.Sequential(lin, torch.nn.Tanh(), digital)
    opt = AnalogOptimizer(torch.optim.Adam, model.parameters(), lr=0.01)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    assert isinstance(opt, torch.optim.Adam) and isinstance(opt, AnalogOptimizer)
    x = torch.rand(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w0 = lin.tile.get_weights()
    opt.zero_grad()
    h = torch.tanh(lin(x.float()))
    model[2](h).square().sum().backward()
    xd, dd = lin.analog_ctx.pending[0]
    ref(h.detach()).square().sum().backward()
    opt.step()
    ref_opt.step()
    for p, q in zip(digital.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q)                       # the digital layer follows Adam exactly
    np.testing.assert_allclose(lin.tile.weights, w0 - 0.01 * dd.T @ xd, rtol=0, atol=1e-12)  # analog: SGD, lr
    with pytest.raises(CtfrpuError, match="Optimizer class"):
        AnalogOptimizer("adam", model.parameters())
    with pytest.raises(CtfrpuError, match="already"):
        AnalogOptimizer(AnalogSGD, model.parameters())


def test_regroup_param_groups_gives_each_analog_layer_its_own_lr():
    a = AnalogLinear(3, 3, rpu_config=EXPECTED, rng=0)
    b = AnalogLinear(3, 2, rpu_config=EXPECTED, rng=1)
    model = torch.nn.Sequential(a, b)
    opt = AnalogSGD(model.parameters(), lr=0.1, momentum=0.5)
    opt.regroup_param_groups()
    assert len(opt.param_groups) == 3 and [g.get("analog", False) for g in opt.param_groups] == [False, True, True]
    assert all(g["momentum"] == 0.5 for g in opt.param_groups)
    opt.param_groups[1]["lr"] = 0.0                          # freeze layer a only
    wa, wb = a.tile.get_weights(), b.tile.get_weights()
    model(torch.rand(2, 3)).sum().backward()
    opt.step()
    np.testing.assert_array_equal(a.tile.weights, wa)
    assert not np.array_equal(b.tile.weights, wb)


def test_a_user_defined_device_needs_registration_then_trains():
    from ctfrpu.devices.registry import DEVICES, register_device
    from ctfrpu.devices.softbounds import SoftBoundsDevice

    class MyDevice:
        kind = "mine"

    with pytest.raises(CtfrpuError, match="not a registered device"):
        RPUConfig(device=MyDevice())
    with pytest.raises(CtfrpuError, match="lacks init_state"):
        register_device("mine", MyDevice)

    class HalfRate(SoftBoundsDevice):          # a user's device: the soft-bounds plug-in at half rate
        def nominal_dw(self, pw):
            return super().nominal_dw(pw)

    register_device("halfrate_test", HalfRate)
    try:
        lin = AnalogLinear(4, 3, rpu_config=RPUConfig(device=HalfRate(rate=100.0)), rng=0)
        before = lin.tile.get_weights()
        lin(torch.ones(1, 4)).sum().backward()
        AnalogSGD(lin.parameters(), lr=0.1).step()
        assert not np.array_equal(before, lin.tile.get_weights())
    finally:
        DEVICES.pop("halfrate_test", None)
    assert "register_device" in RPUConfig.__doc__


def test_weights_only_state_dict_of_a_digital_layer_programs_the_tile():
    dense = torch.nn.Linear(4, 3)
    lin = AnalogLinear(4, 3, rpu_config=EXPECTED, rng=0)
    result = lin.load_state_dict(dense.state_dict(), strict=False)
    assert "analog_tile_cells" in result.missing_keys
    np.testing.assert_allclose(lin.tile.weights, dense.weight.detach().numpy(), rtol=0, atol=1e-7)
    torch.testing.assert_close(lin.bias.detach(), dense.bias.detach())
    with pytest.raises(RuntimeError, match="Missing key"):
        AnalogLinear(4, 3, rpu_config=EXPECTED).load_state_dict(dense.state_dict())


@pytest.mark.slow
def test_small_cnn_learns_the_synthetic_set():
    from ctfrpu.data import load_dataset

    data = load_dataset("synthetic")
    x = torch.from_numpy(data.x_train[:600]).float().reshape(-1, 1, 28, 28)
    y = torch.from_numpy(data.y_train[:600]).long()
    xt = torch.from_numpy(data.x_test).float().reshape(-1, 1, 28, 28)
    yt = torch.from_numpy(data.y_test).long()
    rpu = RPUConfig(device=CTFDevice(), pulses=PulseConfig(n=100),
                    update=UpdateConfig(update_management=True, update_bl_management=True))
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = AnalogSequential(AnalogConv2d(1, 4, 5, stride=2, rpu_config=rpu, rng=rng), torch.nn.ReLU(),
                             torch.nn.Flatten(), AnalogLinear(4 * 12 * 12, 10, rpu_config=rpu, rng=rng))
    opt = AnalogSGD(model.parameters(), lr=0.05)

    def acc():
        with torch.no_grad():
            return float((model(xt).argmax(1) == yt).float().mean())

    before = acc()
    for i in range(0, len(x), 8):
        opt.zero_grad()
        F.cross_entropy(model(x[i:i + 8]), y[i:i + 8]).backward()
        opt.step()
    after = acc()
    # chance is 0.1; 500 test samples: a 3-sigma binomial margin is ~0.04
    assert after > max(before, 0.1) + 0.2, (before, after)
