"""The paper-scale profile (issue 10): its grid, the preset: device file names, the lr schedule."""

import math

import pytest

from ctfrpu.config import RunConfig, params_path, validate
from ctfrpu.devices import build_device
from ctfrpu.errors import CtfrpuError
from ctfrpu.experiments.ablation import factorial_cell
from ctfrpu.pipeline.reproduce import get_profile, grid_configs


def test_lr_decay_default_keeps_hash_and_schedule():
    plain = validate({})
    assert plain.hash() == validate({"optim": {"lr_decay": 1.0}}).hash()
    decayed = validate({"optim": {"lr": 0.1, "lr_decay": 0.6}})
    assert decayed.hash() != plain.hash()
    assert [round(decayed.optim.epoch_lr(e), 12) for e in (1, 2, 3)] == [0.1, 0.06, 0.036]
    for bad in (0, -0.5, 1.5, math.nan):
        with pytest.raises(CtfrpuError):
            validate({"optim": {"lr_decay": bad}})


def test_preset_names_resolve_and_hash_by_content():
    assert params_path("preset:ctf_paper").name == "ctf_paper.toml"
    assert build_device("ctf", "preset:ctf_paper").v_unit == pytest.approx(0.4)
    by_name = validate({"device": {"kind": "ctf", "params_file": "preset:ctf_paper"}})
    by_path = validate({"device": {"kind": "ctf", "params_file": str(params_path("preset:ctf_paper"))}})
    assert by_name.hash() == by_path.hash()
    with pytest.raises(CtfrpuError, match="unknown device preset 'nope'"):
        build_device("ctf", "preset:nope")
    with pytest.raises(CtfrpuError, match="unknown device preset"):
        params_path("preset:../../etc/passwd")


def test_paper_profile_grid():
    prof = get_profile("paper")
    cfgs = grid_configs(prof)
    assert len({c.hash() for c in cfgs}) == len(cfgs)
    for ds in ("mnist", "fashion"):
        mine = [c for c in cfgs if c.data.dataset == ds]
        assert all(c.data.train_limit is None and c.optim.epochs == prof.epochs for c in mine)
        fp = [c for c in mine if c.device.kind == "fp"]
        assert sorted(c.seed for c in fp) == [0, 1, 2, 3, 4]
        full = [c for c in mine if c.device.kind == "ctf" and c.update.mode == "exact"]
        cells = {(c.pulses.n, c.pulses.gap, c.compensation.kind) for c in full}
        assert cells == {(n, g, k) for n in (100, 300, 1000) for g in (1e-7, 1e-5, 1e-4) for k in ("none", "gain")}
        assert all(c.update.timing == "train" and c.device.params_file == "preset:ctf_paper" for c in full)
        # the off-diagonal arms are factorial-mode runs; the diagonal ones are the grid's exact runs
        off = [factorial_cell(c.to_dict(), 100, 1000) for c in mine if c.update.mode == "factorial"]
        assert sorted(set(off)) == [("large", "small"), ("small", "large")] and len(off) == 2 * 5
        assert all(c.pulses.gap == 1e-7 for c in mine if c.update.mode == "factorial")
        diag = [c for c in full if c.pulses.gap == 1e-7 and c.compensation.kind == "none" and c.pulses.n in (100, 1000)]
        assert sorted(factorial_cell(c.to_dict(), 100, 1000) for c in diag) == \
            [("large", "large")] * 5 + [("small", "small")] * 5
    # the cheap pulse-exact grid first, then the dense-mode ablation runs (factorial first, seed by seed)
    dense = [i for i, c in enumerate(cfgs) if c.update.mode in ("factorial", "expected", "gaussian")]
    assert dense == list(range(len(cfgs) - len(dense), len(cfgs))) and len(dense) == 2 * 2 * 5 + 2 * 5
    order = [(c.update.mode, c.data.dataset, c.seed) for c in cfgs[dense[0]:]]
    assert [o[0] for o in order[:20]] == ["factorial"] * 20
    assert [o[2] for o in order[:10]] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4] and order[0][1] == "mnist"


def test_profile_grids_unchanged_in_size():
    # the other profiles keep their grids (the factorial is only in 'paper')
    assert {p: len(grid_configs(get_profile(p))) for p in ("quick", "medium", "full", "smoke")} == \
        {"quick": 58, "medium": 96, "full": 234, "smoke": 24}
