"""The 2x2 bias x noise ablation in the report: arms found in the store, effects, verdict."""

import csv

import numpy as np
import pytest

from ctfrpu.config import merge, validate
from ctfrpu.experiments.ablation import arm_config, factorial_cell, factorial_configs
from ctfrpu.report import build_report
from ctfrpu.report import verdict as V
from ctfrpu.report.build import factorial_design, study_verdicts
from ctfrpu.report.data import load_studies
from ctfrpu.store import Store

BASE = {"data": {"dataset": "mnist", "train_limit": 2000}, "optim": {"epochs": 2, "lr": 0.1, "lr_decay": 0.6},
        "pulses": {"gap": 1e-7}}


def factorial_store(path, means, seeds=(0, 1, 2, 3, 4), sd=0.002, sweep="fake"):
    """FP plus the four arms with known means {(bias level, noise level): accuracy}."""
    store = Store(path)
    rng = np.random.default_rng(1)

    def add(cfg, acc):
        store.record_run(cfg.to_dict(), cfg.hash(), "finished", [{"epoch": 1, "test_accuracy": acc}],
                         {"test_accuracy": acc}, None, 0.0, 1.0, sweep=sweep)

    for s in seeds:
        add(validate(dict(arm_config(BASE, "fp"), seed=s)), 0.95 + rng.normal(0, sd))
    seed_shift = {s: rng.normal(0, 0.004) for s in seeds}  # shared per seed: pairing removes it
    for cfg in factorial_configs(merge(BASE, {"device": {"kind": "ctf"}}), 100, 1000, seeds):
        key = factorial_cell(cfg.to_dict(), 100, 1000)
        add(cfg, means[key] + seed_shift[cfg.seed] + rng.normal(0, sd))
    return store


NOISE_DRIVEN = {("small", "small"): 0.90, ("small", "large"): 0.93, ("large", "small"): 0.905,
                ("large", "large"): 0.935}
BIAS_DRIVEN = {("small", "small"): 0.90, ("small", "large"): 0.905, ("large", "small"): 0.93,
               ("large", "large"): 0.935}
NO_GAIN = {k: 0.90 for k in NOISE_DRIVEN}


def _factorial_verdict(store):
    vs = [v for v in study_verdicts(load_studies(store)[0]) if v.finding.startswith("(iii) 2x2")]
    assert len(vs) == 1
    return vs[0]


@pytest.mark.parametrize("means, status", [(NOISE_DRIVEN, V.HOLDS), (BIAS_DRIVEN, V.FAILS),
                                           (NO_GAIN, V.NO_IMPROVEMENT)])
def test_factorial_verdict_from_store(tmp_path, means, status):
    store = factorial_store(tmp_path / "s.db", means)
    fd = factorial_design(load_studies(store)[0].runs)
    assert fd.sizes == (100, 1000) and fd.gap == pytest.approx(1e-7)
    assert {k: c.n for k, c in fd.arms.items()} == {k: 5 for k in NOISE_DRIVEN}
    v = _factorial_verdict(store)
    assert v.status == status, v.summary
    if status == V.HOLDS:
        assert v.numbers["noise"]["effect"] == pytest.approx(0.03, abs=0.004)
        assert v.numbers["bias"]["effect"] == pytest.approx(0.005, abs=0.004)


def test_one_seed_factorial_is_inconclusive(tmp_path):
    v = _factorial_verdict(factorial_store(tmp_path / "s.db", NOISE_DRIVEN, seeds=(0,)))
    assert v.status == V.INCONCLUSIVE and "one seed" in v.summary


def test_study_label_names_the_lr_schedule(tmp_path):
    st = load_studies(factorial_store(tmp_path / "s.db", NOISE_DRIVEN, seeds=(0,)))[0]
    assert "lr 0.1 (x0.6 per epoch)" in st.label


@pytest.mark.slow
def test_report_has_factorial_tables_and_figure(tmp_path):
    out = tmp_path / "rep"
    html = build_report(factorial_store(tmp_path / "s.db", NOISE_DRIVEN), out).read_text()
    assert "2 x 2 ablation: bias x noise" in html
    assert (out / "figures" / "s1_factorial.png").stat().st_size > 1000
    with open(out / "tables" / "s1_factorial_effects.csv") as fh:
        rows = {r["effect"]: r for r in csv.DictReader(line for line in fh if not line.startswith("#"))}
    noise = rows["noise (N_sigma)"]
    assert float(noise["ci95_low_pp"]) < float(noise["estimate_pp"]) < float(noise["ci95_high_pp"])
    assert float(noise["estimate_pp"]) == pytest.approx(3.0, abs=0.4) and noise["paired_seeds"] == "5"


@pytest.mark.slow
def test_report_map_section_outlines_the_preset(tmp_path):
    from ctfrpu.design.explore import map_for

    points, mark = map_for("preset:ctf_paper")
    assert mark == (5.0, 3e-05, 2e-05)
    # the chosen preset's column passes both conditions for every timing x compensation but train/stretch
    col = [p for p in points if (p.coarseness, p.tau_on, p.tau_off) == mark]
    assert {(p.timing, p.compensation) for p in col if not p.promising} == {("train", "stretch")}
    out = tmp_path / "rep"
    html = build_report(factorial_store(tmp_path / "s.db", NOISE_DRIVEN, seeds=(0, 1)), out, explore_points=points,
                        explore_mark=mark).read_text()
    assert "Where can our model show the paper's findings?" in html
    assert (out / "figures" / "explore_map.png").stat().st_size > 1000
    assert (out / "tables" / "explore_map.csv").exists()


def test_report_cli_map_with_unknown_preset_is_one_line(tmp_path, cli_env):
    import subprocess
    import sys

    factorial_store(tmp_path / "s.db", NOISE_DRIVEN, seeds=(0,))
    r = subprocess.run([sys.executable, "-m", "ctfrpu.cli.main", "report", "--store", str(tmp_path / "s.db"),
                        "--out", str(tmp_path / "r"), "--map", "preset:nope"], capture_output=True, text=True,
                       env=cli_env)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["error: unknown device preset 'nope'; choose from "
                                                                   "ctf_illustrative, ctf_paper"]


def test_missing_runs_of_a_profile_study_point_at_the_profile(tmp_path):
    from ctfrpu.report.build import missing_notes

    st = load_studies(factorial_store(tmp_path / "s.db", NOISE_DRIVEN, seeds=(0,), sweep="reproduce-paper"))[0]
    assert st.profile == "paper"
    missing, optional = missing_notes(st, "x.db")
    assert missing and all("`ctfrpu reproduce --profile paper --store x.db`" in m for m in missing)
    assert all("not part of profile 'paper'" in o for o in optional)
    # without a profile label the notes keep their single-run commands
    st2 = load_studies(factorial_store(tmp_path / "t.db", NOISE_DRIVEN, seeds=(0,)))[0]
    assert st2.profile is None and any("ctfrpu ablation" in m for m in missing_notes(st2, "t.db")[0] +
                                       missing_notes(st2, "t.db")[1])
