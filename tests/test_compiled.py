"""The compiled training loop (ctfrpu.training.compiled) against the reference per-sample engine.

The compiled loop calls the very kernels the tiles call with the same random streams, so the two
paths agree to rounding: numba's exp/BLAS calls may differ from numpy's in the last bit. Tested
here: the weights, biases and losses of both paths after a few hundred samples agree to 1e-10
(FP, ideal, CTF with cycle-to-cycle and output noise and I/O quantisation, the Gaussian and
factorial modes, batch 1 and mini-batches); the compiled path is bit-identical for the same config
and seed however the samples are split into chunks; errors are the reference's one-line errors.
"""

import numpy as np
import pytest

from ctfrpu.config import stored_config, validate
from ctfrpu.data import load_dataset
from ctfrpu.devices.ctf_update import ctf_var_table
from ctfrpu.errors import CtfrpuError
from ctfrpu.training.compiled import CompiledLoop
from ctfrpu.training.runner import build_model, train_run

CASES = {
    "fp": ({}, 1),
    "fp-batch8": ({}, 8),
    "ideal": ({"device": {"kind": "ideal", "params": {"dw_min_std": 0.3}}, "pulses": {"n": 100}}, 1),
    "ctf": ({"device": {"kind": "ctf"}, "pulses": {"n": 300}}, 1),
    "ctf-noisy-io": ({"device": {"kind": "ctf", "params": {"dv_std": 0.1}}, "pulses": {"n": 100},
                      "io": {"out_noise": 0.02, "inp_res": 1 / 64, "out_res": 1 / 256}}, 1),
    "ctf-batch5": ({"device": {"kind": "ctf", "params": {"dv_std": 0.1}}, "pulses": {"n": 100},
                    "io": {"out_noise": 0.02}}, 5),
    "ctf-gaussian-blm": ({"device": {"kind": "ctf"}, "pulses": {"n": 100},
                          "update": {"mode": "gaussian", "update_bl_management": True}}, 1),
    "ctf-factorial": ({"device": {"kind": "ctf"}, "pulses": {"n": 100},
                       "update": {"mode": "factorial", "bias_pulses": 30}}, 1),
    "softbounds-expected": ({"device": {"kind": "softbounds"}, "pulses": {"n": 100},
                             "update": {"mode": "expected"}}, 2),
}
SAMPLES = 240
LR = 0.1


@pytest.fixture(scope="module")
def data():
    ds = load_dataset("synthetic")
    x = np.array(ds.x_train[:SAMPLES], dtype=np.float64)
    x[np.random.default_rng(0).random(x.shape) < 0.8] = 0.0     # image-like: most inputs zero
    return x, ds.y_train[:SAMPLES].astype(np.int64)


def _models(case):
    doc, bs = CASES[case]
    cfg = validate({**doc, "model": {"hidden": [24, 16]}, "optim": {"lr": LR, "batch_size": bs}})
    return [build_model(cfg, 784, 10, np.random.SeedSequence(7)) for _ in range(2)], bs


def _reference(model, x, y, bs):
    loss = 0.0
    for k in range(0, len(y), bs):
        if bs == 1:
            loss += model.train_step(x[k], int(y[k]), LR)
        else:
            loss += model.train_batch(x[k:k + bs], y[k:k + bs], LR) * len(y[k:k + bs])
    return loss


def _state(model):
    return [t.get_weights() for t in model.tiles], [b.copy() for b in model.biases]


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_loop_agrees_with_the_reference_engine(data, case):
    x, y = data
    (ref, comp), bs = _models(case)
    loss_ref = _reference(ref, x, y, bs)
    loop = CompiledLoop(comp, x, y, bs, "sigmoid")
    # the pulse-exact runs at batch 1 without I/O periphery take the input-sparse first layer
    assert loop.sparse_input == (bs == 1 and CASES[case][0].get("update", {}).get("mode", "exact") == "exact"
                                 and "device" in CASES[case][0] and "io" not in CASES[case][0])
    loss_comp = loop.run(np.arange(len(y), dtype=np.int64), 0, len(y), LR)
    assert loss_comp == pytest.approx(loss_ref, rel=1e-10)
    (w_ref, b_ref), (w_comp, b_comp) = _state(ref), _state(comp)
    for a, b in zip(w_ref + b_ref, w_comp + b_comp):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-10)
    for t_ref, t_comp in zip(ref.tiles, comp.tiles):      # the same streams were consumed
        s_ref, s_comp = getattr(t_ref, "stats", {}), getattr(t_comp, "stats", {})
        assert s_ref == pytest.approx(s_comp, rel=1e-12)   # expected train pulses: floats from d
        assert [s_ref.get(k) for k in ("updates", "pulses", "clipped")] == \
            [s_comp.get(k) for k in ("updates", "pulses", "clipped")]
        if hasattr(t_ref, "clock"):
            assert (t_ref.clock, t_ref._counter) == (t_comp.clock, t_comp._counter)
            assert t_ref.rng.bit_generator.state == t_comp.rng.bit_generator.state


@pytest.mark.parametrize("case", ["ctf-noisy-io", "ctf-batch5", "fp-batch8"])
def test_chunking_does_not_change_the_result(data, case):
    """Same config, seed and samples: bit-identical whatever the chunk boundaries (on batch boundaries)."""
    x, y = data
    (a, b), bs = _models(case)
    order = np.random.default_rng(3).permutation(len(y))
    CompiledLoop(a, x, y, bs, "sigmoid").run(order, 0, len(y), LR)
    loop = CompiledLoop(b, x, y, bs, "sigmoid")
    cuts = [0, bs, 7 * bs, 20 * bs, len(y)]
    for p0, p1 in zip(cuts[:-1], cuts[1:]):
        loop.run(order, p0, p1, LR)
    for u, v in zip(_state(a)[0] + _state(a)[1], _state(b)[0] + _state(b)[1]):
        assert np.array_equal(u, v)


def test_a_run_is_bit_reproducible_and_close_to_the_reference_run():
    ds = load_dataset("synthetic")
    doc = {"data": {"dataset": "synthetic", "train_limit": 400, "test_limit": 300}, "model": {"hidden": [32]},
           "optim": {"epochs": 2, "lr": 0.1}, "device": {"kind": "ctf", "params": {"dv_std": 0.1}},
           "pulses": {"n": 100}, "io": {"out_noise": 0.02}}
    a, b = train_run(validate(doc), ds), train_run(validate(doc), ds)
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]
    ref = train_run(validate({**doc, "optim": {**doc["optim"], "engine": "reference"}}), ds)
    for e_c, e_r in zip(a["epochs"], ref["epochs"]):
        assert e_c["train_loss"] == pytest.approx(e_r["train_loss"], rel=1e-9)
        assert e_c["test_accuracy"] == e_r["test_accuracy"]


def test_the_engine_is_in_the_hash_and_stored_configs_without_it_ran_on_the_reference():
    doc = {"device": {"kind": "ctf"}}
    compiled, reference = validate(doc), validate({**doc, "optim": {"engine": "reference"}})
    assert compiled.optim.engine == "compiled" and compiled.hash() != reference.hash()
    old = reference.to_dict()
    del old["optim"]["engine"]                       # a store record written before the field existed
    assert stored_config(old).optim.engine == "reference"
    assert stored_config(old).hash() == reference.hash()
    assert stored_config(compiled.to_dict()).hash() == compiled.hash()
    with pytest.raises(CtfrpuError, match="optim.engine"):
        validate({"optim": {"engine": "jit"}})


def test_errors_are_the_reference_engines(data):
    x, y = data
    doc = {"device": {"kind": "ideal"}, "pulses": {"n": 10}, "update": {"update_management": False},
           "model": {"hidden": [24, 16]}, "optim": {"lr": 50.0}}
    cfg = validate(doc)
    msgs = []
    for engine in ("compiled", "reference"):
        model = build_model(cfg, 784, 10, np.random.SeedSequence(1))
        with pytest.raises(CtfrpuError) as err:
            if engine == "compiled":
                CompiledLoop(model, x, y, 1, "sigmoid").run(np.arange(4), 0, 4, 50.0)
            else:
                model.train_step(x[0], int(y[0]), 50.0)
        msgs.append(str(err.value))
    assert msgs[0] == msgs[1] and "pulse probability above 1" in msgs[0]
    bad = x.copy()
    bad[2, 5] = np.nan
    model = build_model(cfg, 784, 10, np.random.SeedSequence(1))
    with pytest.raises(CtfrpuError, match="forward: input contains NaN or inf"):
        CompiledLoop(model, bad, y, 1, "sigmoid").run(np.arange(4), 0, 4, 1e-3)


def test_gaussian_mode_with_bl_management_uses_each_samples_own_variance_table(data):
    x, y = data
    (model, _), _ = _models("ctf-gaussian-blm")
    CompiledLoop(model, x, y, 1, "sigmoid").run(np.arange(40, dtype=np.int64), 0, 40, 3.0)
    plans = [t._plan for t in model.tiles]
    assert max(np.count_nonzero(p._have) for p in plans) > 1     # BL management: several BLs occurred
    for plan in plans:
        for bl in np.flatnonzero(plan._have):
            np.testing.assert_array_equal(plan._var_tabs[bl], ctf_var_table(plan._cst_mean, int(bl)))
        assert not plan._var_tabs[~plan._have].any()


@pytest.mark.parametrize("kind", ["ctf", "ideal"])
def test_column_major_weights_pulse_like_row_major(data, kind):
    """The compiled loop's tiles keep W column-major; the pulsed update is the same, bit for bit."""
    from ctfrpu.config import IOConfig, UpdateConfig
    from ctfrpu.devices import CTFDevice, IdealDevice, PulseTrain
    from ctfrpu.tile import AnalogTile

    x, _ = data
    dev = CTFDevice(dv_std=0.1) if kind == "ctf" else IdealDevice(dw_min_std=0.2)
    d = np.random.default_rng(1).normal(0, 0.05, (40, 12))
    w0 = np.random.default_rng(2).uniform(-0.1, 0.1, (12, 784))
    tiles = [AnalogTile(12, 784, dev, PulseTrain.from_on_time(300, 5e-3, 1e-6), UpdateConfig(), IOConfig(),
                        np.random.default_rng(3), w0=w0, weight_order=order) for order in ("C", "F")]
    assert tiles[1].weights.flags.f_contiguous
    for t in tiles:
        t.update(x[:40], d, 0.1)
    assert np.array_equal(tiles[0].weights, tiles[1].weights)
    assert np.array_equal(tiles[0]._cells, tiles[1]._cells)


def test_float32_inputs_train_exactly_like_their_float64_values(data):
    """The runner keeps float32 datasets float32 for the compiled loop (half the memory); each sample
    is widened exactly as it is copied in, so the run is the same bit for bit."""
    x, y = data
    x32 = x.astype(np.float32)
    (a, b), bs = _models("ctf")
    order = np.arange(len(y), dtype=np.int64)
    CompiledLoop(a, x32.astype(np.float64), y, bs, "sigmoid").run(order, 0, len(y), LR)
    loop = CompiledLoop(b, x32, y, bs, "sigmoid")
    assert loop.x.dtype == np.float32
    loop.run(order, 0, len(y), LR)
    for u, v in zip(_state(a)[0] + _state(a)[1], _state(b)[0] + _state(b)[1]):
        assert np.array_equal(u, v)
