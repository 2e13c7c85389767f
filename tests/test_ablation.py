"""Ablation arms (our design): configs, classification, matched noise, update statistics, sweep files."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ctfrpu.config import RunConfig, merge, validate
from ctfrpu.design.helper import matched_noise_scale
from ctfrpu.devices import CTFDevice, IdealDevice, PulseTrain
from ctfrpu.errors import CtfrpuError
from ctfrpu.experiments.ablation import (ARM_ORDER, ablation_configs, arm_config, classify, ideal_params_for,
                                         measure_arms, stats_hash)
from ctfrpu.pipeline.reproduce import (PROFILES, check_datasets, get_profile, grid_configs, sweep_doc,
                                          write_sweep_file)
from ctfrpu.experiments.update_stats import LayerPairs, measure
from ctfrpu.store import Store

from conftest import CTFRPU

BASE = {"data": {"dataset": "synthetic", "train_limit": 100}, "optim": {"epochs": 1, "lr": 0.05},
        "model": {"hidden": [16]}, "pulses": {"n": 300, "gap": 1e-5}}


def test_every_arm_builds_its_config_and_is_classified_back():
    for arm in ARM_ORDER:
        cfg = validate(arm_config(BASE, arm))
        assert classify(cfg.to_dict()) == arm
        assert cfg.data.dataset == "synthetic" and cfg.optim.lr == 0.05 and cfg.model.hidden == [16]
        if arm != "fp":
            assert (cfg.pulses.n, cfg.pulses.gap) == (300, 1e-5)
    fp = validate(arm_config(BASE, "fp"))
    assert fp.pulses == RunConfig().pulses          # one FP run per study and seed, whatever the design
    assert validate(arm_config(BASE, "ctf_expected")).update.mode == "expected"
    assert validate(arm_config(BASE, "ctf_comp")).compensation.kind == "gain"
    assert validate(arm_config(BASE, "ctf")).compensation.kind == "none"


def test_ideal_arms_get_the_ctf_rate_and_window_and_matched_noise():
    dev = CTFDevice(kappa_p=300.0, kappa_e=300.0)
    base = merge(BASE, {"device": {"kind": "ctf", "params": {"kappa_p": 300.0, "kappa_e": 300.0}}})
    ideal = validate(arm_config(base, "ideal"))
    assert ideal.device.kind == "ideal"
    assert ideal.device.params["rate"] == pytest.approx(dev.nominal_dw(1.0))
    gauss = validate(arm_config(base, "ideal_gauss"))
    assert gauss.update.mode == "gaussian"
    want = matched_noise_scale(dev, IdealDevice(rate=dev.nominal_dw(1.0)), PulseTrain.from_config(gauss.pulses), 0.05)
    assert gauss.update.noise_scale == pytest.approx(want, rel=1e-3)
    # the default preset needs no ideal-device overrides (its nominal rate is the ideal default)
    assert ideal_params_for(CTFDevice()) == {}


def test_classify_other_combinations():
    assert classify({"device": {"kind": "ideal"}, "update": {"mode": "expected"}}) is None
    assert classify({"device": {"kind": "ctf"}, "update": {"mode": "gaussian"}}) is None
    assert classify({"device": {"kind": "fp"}}) == "fp"
    with pytest.raises(CtfrpuError, match="unknown ablation arm"):
        arm_config(BASE, "bogus")


def test_ablation_configs_seeds_and_grid_reuse():
    cfgs = ablation_configs(BASE, seeds=(0, 1, 2))
    assert len(cfgs) == 3 * len(ARM_ORDER)
    assert len({c.hash() for c in cfgs}) == len(cfgs)
    prof = get_profile("smoke")
    grid = grid_configs(prof)
    hashes = [c.hash() for c in grid]
    assert len(hashes) == len(set(hashes))
    # the ablation's fp / ctf / ctf_comp runs are the grid's own runs (same hash, run once)
    arms = {classify(c.to_dict()) for c in grid}
    assert arms == set(ARM_ORDER)
    n_grid = len(prof.datasets) * len(prof.seeds) * (1 + len(prof.ns) * len(prof.gaps) * len(prof.comps))
    n_extra = len(prof.ablation_designs) * len(prof.seeds) * 3       # ideal, ctf_expected, ideal_gauss
    assert len(grid) == n_grid + n_extra


def test_quick_and_full_profiles():
    q, f = PROFILES["quick"], PROFILES["full"]
    assert set(q.datasets) == set(f.datasets) == {"mnist", "fashion"}
    assert f.train_limit is None and len(f.seeds) >= 3 and 3000 in f.ns and len(f.gaps) >= 4
    assert len(grid_configs(q)) < len(grid_configs(f))
    with pytest.raises(CtfrpuError, match="unknown profile"):
        get_profile("huge")


def test_sweep_doc_roundtrip(tmp_path):
    from ctfrpu.sweep.spec import load_sweep, parse_sweep

    cfgs = grid_configs(get_profile("smoke"))
    doc = sweep_doc("t-sweep", cfgs)
    assert [r.hash for r in parse_sweep(doc).runs] == [c.hash() for c in cfgs]
    path = write_sweep_file(doc, tmp_path / "s.toml")
    assert [r.hash for r in load_sweep(path).runs] == [c.hash() for c in cfgs]


def test_missing_dataset_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CTFRPU_DATA", str(tmp_path / "nodata"))
    with pytest.raises(CtfrpuError, match="ctfrpu data fetch"):
        check_datasets(["mnist"], str(tmp_path / "nodata"))


def test_reproduce_cli_without_data(tmp_path, cli_env):
    env = dict(cli_env, CTFRPU_DATA=str(tmp_path / "nodata"))
    res = subprocess.run([CTFRPU, "reproduce", "--profile", "quick", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and "ctfrpu data fetch" in res.stderr


# ------------------------------------------------------------------------------ update statistics


def _pairs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (4, 20))
    d = rng.normal(0, 0.3, (4, 5))
    return LayerPairs(2, rng.uniform(-0.05, 0.05, (5, 20)), x, d)


def test_update_stats_per_arm():
    pairs = _pairs()
    base = merge(BASE, {"pulses": {"n": 1000, "gap": 1e-6}, "device": {"params": {"kappa_dtod": 0.0, "window_dtod": 0.0}}})
    st = {arm: measure(validate(arm_config(base, arm)), pairs, reps=200, seed=3) for arm in ARM_ORDER}
    assert st["fp"].relative_bias == 0 and st["fp"].relative_noise == 0 and st["fp"].slope == 1
    r = float(CTFDevice().program_efficiency(1e-4, PulseTrain.from_on_time(1000, 5e-3, 1e-6)))
    # bias-only arm: slope r, no noise
    assert st["ctf_expected"].relative_noise == 0
    assert st["ctf_expected"].slope == pytest.approx(r, abs=0.03)
    # noise-only arms: unbiased within sampling error
    for arm in ("ideal", "ideal_gauss", "ctf_comp"):
        s = st[arm]
        assert abs(s.slope - 1) < 5 * s.slope_se + 0.03, arm
    assert abs(st["ctf"].slope - r) < 5 * st["ctf"].slope_se + 0.03
    # the Gaussian arm's noise matches the full CTF model's (variance matched; 200 repeats)
    assert st["ideal_gauss"].relative_noise == pytest.approx(st["ctf"].relative_noise, rel=0.15)
    # the CTF programs less per pulse than the ideal device: less absolute noise
    assert st["ctf"].relative_noise < st["ideal"].relative_noise


def test_measure_arms_records_and_resumes(tmp_path):
    from ctfrpu.data import make_synthetic

    ds = make_synthetic(n_train=60, n_test=20)
    store = Store(tmp_path / "s.db")
    cfgs = ablation_configs(BASE, (0,))
    logs: list[str] = []
    res = measure_arms(cfgs, ds, store, pairs=2, reps=3, warmup=10, log=logs.append)
    assert set(res) == set(ARM_ORDER)
    recs = store.list(sweep="update-stats")
    assert len(recs) == len(ARM_ORDER)
    assert all(r.final["kind"] == "update_stats" and len(r.final["layers"]) == 2 for r in recs)
    assert recs[0].config_hash == stats_hash(cfgs[0], 2, 3, 10) != cfgs[0].hash()
    logs.clear()
    res2 = measure_arms(cfgs, ds, store, pairs=2, reps=3, warmup=10, log=logs.append)
    assert all("already in the store" in line for line in logs)
    assert res2["ctf"]["layers"] == res["ctf"]["layers"]
    assert len(store.list(sweep="update-stats")) == len(ARM_ORDER)


def test_u_typ_reaches_only_the_compensated_arm():
    base = merge(BASE, {"compensation": {"u_typ": 0.05}})
    assert validate(arm_config(base, "ctf_comp")).compensation.u_typ == 0.05
    assert validate(arm_config(base, "ctf")).compensation == RunConfig().compensation
    assert validate(arm_config(base, "ctf")).hash() == validate(arm_config(BASE, "ctf")).hash()


@pytest.mark.parametrize("profile,folder,params_file", [
    ("medium", "medium", None), ("paper", "paper", None),
    ("medium", "tau_off", "results/tau_off/ctf_tau_off_10ms.toml")])
def test_committed_sweep_files_match_their_profiles(profile, folder, params_file, monkeypatch):
    """A committed sweep file run with `ctfrpu sweep` must resume its store: the same config hashes
    as `reproduce` (a file written before optim.engine existed ran every run afresh on the compiled
    engine)."""
    from ctfrpu.sweep.spec import load_sweep

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    cfgs = grid_configs(get_profile(profile), params_file=params_file)
    runs = load_sweep(root / "results" / folder / "sweeps" / f"reproduce-{profile}.toml").runs
    assert [r.hash for r in runs] == [c.hash() for c in cfgs]


@pytest.mark.parametrize("timing", ["slot", "burst", "train"])
def test_the_noise_only_arm_is_matched_under_the_runs_own_timing(timing):
    """The CTF variance depends on the timing model; the Gaussian arm must be matched to the ctf arm
    it stands in for (the paper study's arm was once matched under slot timing: 0.74 instead of 0.98)."""
    from ctfrpu.devices import build_device

    base = merge(BASE, {"device": {"kind": "ctf", "params_file": "preset:ctf_paper"},
                        "pulses": {"n": 100, "gap": 1e-7}, "optim": {"lr": 0.1}, "update": {"timing": timing}})
    gauss = validate(arm_config(base, "ideal_gauss"))
    ctf = build_device("ctf", "preset:ctf_paper", {})
    ideal = build_device("ideal", None, gauss.device.params)
    train = PulseTrain.from_config(gauss.pulses)
    want = matched_noise_scale(ctf, ideal, train, 0.1, timing=timing)
    assert gauss.update.noise_scale == pytest.approx(want, rel=1e-3)
    if timing != "slot":
        assert abs(want - matched_noise_scale(ctf, ideal, train, 0.1)) > 0.05      # the timing matters here
