"""Issue 13, defects 1-7 of the PyTorch front end, one test (or more) each.

Only the names that existed before the fix are imported at module level, so that every test here
runs -- and fails -- against the old ``ctfrpu.nn``; the new names are imported inside the tests.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from ctfrpu.config import IOConfig, PulseConfig, UpdateConfig
from ctfrpu.devices import CTFDevice, IdealDevice
from ctfrpu.errors import CtfrpuError
from ctfrpu.nn import AnalogLinear, AnalogSGD, RPUConfig

# CTF exact mode with carried enhancement (clock and pulse history matter) and output noise (the
# tile's generator matters): every part of the tile's state is exercised by a continuation.
CTF = RPUConfig(device=CTFDevice(carry_enhancement=True), pulses=PulseConfig(n=60), io=IOConfig(out_noise=0.02),
                update=UpdateConfig(update_management=True))


def mlp(seed: int, rpu: RPUConfig = CTF) -> torch.nn.Sequential:
    rng = np.random.default_rng(seed)
    return torch.nn.Sequential(AnalogLinear(8, 6, rpu_config=rpu, rng=rng), torch.nn.Sigmoid(),
                               AnalogLinear(6, 3, rpu_config=rpu, rng=rng))


XS = torch.rand(24, 8, generator=torch.Generator().manual_seed(0))
YS = torch.randint(0, 3, (24,), generator=torch.Generator().manual_seed(1))


def train(model, opt, steps, start=0, batch=4):
    for s in range(start, start + steps):
        i = (s * batch) % len(XS)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(XS[i:i + batch]), YS[i:i + batch]).backward()
        opt.step()


def tiles(model):
    return [m.tile for m in model if isinstance(m, AnalogLinear)]


def assert_same_model(a, b):
    for ta, tb in zip(tiles(a), tiles(b), strict=True):
        np.testing.assert_array_equal(ta.weights, tb.weights)
        assert ta.stats == tb.stats and ta.clock == tb.clock
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        if isinstance(pa, torch.Tensor):
            assert torch.equal(pa, pb)


def saved(obj, weights_only: bool):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=weights_only)


# -- 1. state_dict carries the analog weights and the tile's state ------------------------------

def test_1_state_dict_has_analog_weights_and_reload_restores_the_model():
    model = mlp(0)
    train(model, AnalogSGD(model.parameters(), lr=0.1), 6)
    sd = model.state_dict()
    assert {"0.weight", "0.bias", "0.analog_tile_cells", "2.weight"} <= set(sd)
    np.testing.assert_array_equal(sd["0.weight"].numpy(), model[0].tile.weights)
    other = mlp(1)                                        # different weights and device draws
    assert not np.array_equal(other[0].tile.weights, model[0].tile.weights)
    result = other.load_state_dict(saved(sd, weights_only=True))     # no pickled code needed
    assert not result.missing_keys and not result.unexpected_keys
    assert_same_model(model, other)
    with torch.no_grad():                                 # same output noise draws too
        assert torch.equal(other(XS), model(XS))


def test_1_load_refuses_a_state_of_another_shape_or_device():
    model = mlp(0)
    with pytest.raises(RuntimeError, match="shape|does not fit"):
        torch.nn.Sequential(AnalogLinear(8, 5, rpu_config=CTF), torch.nn.Sigmoid(),
                            AnalogLinear(5, 3, rpu_config=CTF)).load_state_dict(model.state_dict())
    with pytest.raises(RuntimeError, match="state of a ctf tile, this layer's tile is ideal"):
        mlp(0, RPUConfig(device=IdealDevice())).load_state_dict(model.state_dict())


@pytest.mark.parametrize("how", ["state_dict", "deepcopy", "pickle"])
def test_1_train_save_load_keep_training_equals_training_straight_through(how):
    straight = mlp(3)
    train(straight, AnalogSGD(straight.parameters(), lr=0.1), 12)

    first = mlp(3)
    train(first, AnalogSGD(first.parameters(), lr=0.1), 6)
    if how == "state_dict":
        resumed = mlp(4)
        resumed.load_state_dict(saved(first.state_dict(), weights_only=True))
    elif how == "deepcopy":
        resumed = copy.deepcopy(first)
    else:
        resumed = saved(first, weights_only=False)
    train(resumed, AnalogSGD(resumed.parameters(), lr=0.1), 6, start=6)
    assert_same_model(straight, resumed)
    assert tiles(resumed)[0].stats["pulses"] > 0


# -- 2. copy.deepcopy -------------------------------------------------------------------------

def test_2_deepcopy_gives_an_independent_layer_that_trains():
    model = mlp(0)
    twin = copy.deepcopy(model)                           # old: TypeError in AnalogContext.__new__
    assert twin[0].tile is not model[0].tile
    np.testing.assert_array_equal(twin[0].tile.weights, model[0].tile.weights)
    before = model[0].tile.get_weights()
    train(twin, AnalogSGD(twin.parameters(), lr=0.1), 3)
    assert not np.array_equal(twin[0].tile.weights, before)
    np.testing.assert_array_equal(model[0].tile.weights, before)      # the original is untouched


# -- 3. torch.save(model) / torch.load ------------------------------------------------------------

def test_3_pickled_model_keeps_its_tiles_and_trains():
    model = mlp(0)
    loaded = saved(model, weights_only=False)
    ctx = loaded[0].analog_ctx
    assert type(ctx) is type(model[0].analog_ctx) and ctx.tile is not model[0].tile
    opt = AnalogSGD(loaded.parameters(), lr=0.1)
    before = loaded[0].tile.get_weights()
    train(loaded, opt, 2)
    assert not np.array_equal(loaded[0].tile.weights, before)        # old: step changed nothing
    assert loaded[0].analog_ctx.pending == []                          # old: the queue grew


# -- 4. a plain torch optimiser is an error, the queue is bounded ---------------------------------

@pytest.mark.parametrize("cls", [torch.optim.SGD, torch.optim.Adam])
def test_4_plain_torch_optimizer_on_analog_weights_is_an_error(cls):
    model = mlp(0)
    opt = cls(model.parameters(), lr=0.01)
    torch.nn.functional.cross_entropy(model(XS[:4]), YS[:4]).backward()
    before = model[0].tile.get_weights()
    with pytest.raises(CtfrpuError, match=f"{cls.__name__} would leave the analog weights unchanged"):
        opt.step()
    np.testing.assert_array_equal(model[0].tile.weights, before)
    # an optimiser of digital parameters only is fine
    torch.optim.Adam([model[0].bias], lr=0.01).step()


def test_4_pending_updates_cannot_grow_without_bound():
    lin = AnalogLinear(8, 3, rpu_config=CTF, rng=0)
    limit = getattr(type(lin.analog_ctx), "max_pending", 256)      # old code: no limit
    for _ in range(limit):
        lin(XS[:2]).sum().backward()
    assert len(lin.analog_ctx.pending) == limit
    with pytest.raises(CtfrpuError, match="waiting for an optimiser step"):
        lin(XS[:2]).sum().backward()
    assert len(lin.analog_ctx.pending) == limit


# -- 5. writes to .weight program the tile ------------------------------------------------------------

def test_5_weight_writes_program_the_tile_clipped():
    lin = AnalogLinear(4, 3, rpu_config=RPUConfig(device=IdealDevice(w_min=-0.5, w_max=0.5)), rng=0)
    target = torch.linspace(-0.4, 0.4, 12).reshape(3, 4)
    with torch.no_grad():
        lin.weight.copy_(target)
    np.testing.assert_allclose(lin.tile.weights, target.numpy(), rtol=0, atol=1e-7)
    torch.nn.init.zeros_(lin.weight)
    assert np.all(lin.tile.weights == 0)
    with torch.no_grad():
        lin.weight[1] = 2.0                              # outside the window: clipped to w_max
        lin.weight[2].fill_(-3.0)                        # through a view
    np.testing.assert_array_equal(lin.tile.weights, [[0] * 4, [0.5] * 4, [-0.5] * 4])
    torch.nn.init.kaiming_uniform_(lin.weight)
    assert np.all(np.abs(lin.tile.weights) <= 0.5) and np.any(lin.tile.weights != 0)
    assert torch.equal(lin.weight, torch.tensor(lin.tile.weights, dtype=torch.float32))
    lin.weight = target                                   # assignment programs too
    np.testing.assert_allclose(lin.tile.weights, target.numpy(), rtol=0, atol=1e-7)
    lin.weight.data.mul_(0.5)
    np.testing.assert_allclose(lin.tile.weights, 0.5 * target.numpy(), rtol=0, atol=1e-7)
    # copies are plain tensors: writing them does not touch the tile
    w = lin.weight.clone()
    w.zero_()
    assert not np.all(lin.tile.weights == 0) and type(w) is torch.Tensor
    with pytest.raises(CtfrpuError, match="shape"):
        lin.weight = torch.zeros(2, 2)


# -- 6. zero_grad drops pending updates -----------------------------------------------------------------

def test_6_zero_grad_drops_pending_updates():
    model = mlp(0)
    opt = AnalogSGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(XS[:4]), YS[:4]).backward()
    opt.zero_grad()
    before = [t.get_weights() for t in tiles(model)]
    opt.step()                                            # old: applied the stale update
    for t, w in zip(tiles(model), before):
        np.testing.assert_array_equal(t.weights, w)
    # the layer's own zero_grad drops its queue too
    lin = model[0]
    model(XS[:4]).sum().backward()
    lin.zero_grad()
    assert lin.analog_ctx.pending == [] and model[2].analog_ctx.pending != []


# -- 7. the layer pins BLAS and torch threads in its hot path --------------------------------------------

@pytest.mark.parametrize("pin", [True, False])
def test_7_hot_path_runs_with_one_blas_and_torch_thread(pin):
    from threadpoolctl import threadpool_info, threadpool_limits

    lin = AnalogLinear(8, 3, rpu_config=CTF, rng=0)
    seen = []
    tile = lin.tile
    for name in ("forward", "backward", "update"):
        orig = getattr(tile, name)

        def spy(*a, _orig=orig, _name=name, **k):
            blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
            seen.append((_name, torch.get_num_threads(), max(blas)))
            return _orig(*a, **k)

        setattr(tile, name, spy)
    old_torch = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        if not pin:
            from ctfrpu.nn import set_thread_pinning

            set_thread_pinning(False)
        with threadpool_limits(limits=2, user_api="blas"):
            opt = AnalogSGD(lin.parameters(), lr=0.1)
            x = XS[:4].clone().requires_grad_(True)
            lin(x).sum().backward()
            opt.step()
            assert torch.get_num_threads() == 2               # restored after each call
    finally:
        torch.set_num_threads(old_torch)
        if not pin:
            set_thread_pinning(True)
    assert [s[0] for s in seen] == ["forward", "backward", "update"]
    expected = 1 if pin else 2
    assert all(s[1] == expected and s[2] == expected for s in seen), seen
