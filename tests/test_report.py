"""Report: verdict rules on constructed inputs with known answers, the report from a constructed
store (structurally real runs written with the store API), partial stores, and a tiny real run."""

from __future__ import annotations

import csv
import subprocess

import numpy as np
import pytest

from ctfrpu.config import merge, validate
from ctfrpu.experiments.ablation import arm_config
from ctfrpu.report import build_report
from ctfrpu.report import verdict as V
from ctfrpu.report.build import missing_notes, study_verdicts
from ctfrpu.report.data import load_studies
from ctfrpu.store import Store

from conftest import CTFRPU


def cell(mean, sd=0.003, n=3, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1, n)
    v = (v - v.mean()) / (v.std(ddof=1) if n > 1 else 1) * sd if n > 1 else np.zeros(1)
    return V.Cell(list(mean + v))


# ------------------------------------------------------------------------------ verdict rules


def test_gap_tests_rule():
    dep = V.gap_tests({1e-7: cell(0.90), 1e-4: cell(0.85, seed=1)}, 10000)
    assert dep.status == "dependent" and dep.trend.estimate.est == pytest.approx(-0.05)
    assert dep.trend.p < 0.01 and dep.violated
    ins = V.gap_tests({1e-7: cell(0.90), 1e-4: cell(0.902, seed=1)}, 10000)
    assert ins.status == "insensitive"
    # a 2 pp difference with a seed sd of 3 pp cannot be called either way
    noisy = V.gap_tests({1e-7: cell(0.90, 0.03), 1e-4: cell(0.92, 0.03, seed=1)}, 10000)
    assert noisy.status == "undecided" and not noisy.violated
    assert V.gap_tests({1e-7: cell(0.9)}, 10000) is None


def test_verdict_i_cases():
    fp = cell(0.95)
    small = {100: {1e-7: cell(0.90, seed=3), 1e-4: cell(0.90, seed=4)}}
    near_flat = V.verdict_i(fp, {1e-7: cell(0.945), 1e-4: cell(0.946, seed=2)}, 10000, "mnist", 1000, small=small)
    assert near_flat.status == V.HOLDS
    far = V.verdict_i(fp, {1e-7: cell(0.90), 1e-4: cell(0.90, seed=2)}, 10000, "mnist", 1000, small=small)
    assert far.status == V.FAILS and "near software" in far.summary.split("violated:")[1]
    sensitive = V.verdict_i(fp, {1e-7: cell(0.95), 1e-4: cell(0.93, seed=2)}, 10000, "mnist", 1000, small=small)
    assert sensitive.status == V.FAILS and "insensitive to t_gap" in sensitive.summary.split("violated:")[1]
    single = V.verdict_i(V.Cell([0.95]), {1e-7: V.Cell([0.95]), 1e-4: V.Cell([0.95])}, 10000, "mnist", 1000)
    assert single.status == V.INCONCLUSIVE and "one seed" in single.summary
    missing = V.verdict_i(V.Cell([]), {}, 10000, "mnist", None)
    assert missing.status == V.INCONCLUSIVE and "missing" in missing.summary


def test_verdict_ii_cases():
    dep = {100: {1e-7: cell(0.85), 1e-4: cell(0.80, seed=1)}, 300: {1e-7: cell(0.9), 1e-4: cell(0.87, seed=2)}}
    assert V.verdict_ii(dep, 10000, "mnist").status == V.HOLDS
    flat = {100: {1e-7: cell(0.85), 1e-4: cell(0.851, seed=1)}, 300: {1e-7: cell(0.9), 1e-4: cell(0.9, seed=2)}}
    assert V.verdict_ii(flat, 10000, "mnist").status == V.FAILS
    mixed = {100: dep[100], 300: flat[300]}
    assert V.verdict_ii(mixed, 10000, "mnist").status == V.INCONCLUSIVE
    only_big = {1000: {1e-7: cell(0.9), 1e-4: cell(0.8)}}
    assert V.verdict_ii(only_big, 10000, "mnist").status == V.INCONCLUSIVE


def test_verdict_iii_cases():
    def arms(bias_only, noise_only, full):
        return {"fp": cell(0.95), "ctf_expected": cell(bias_only, seed=1), "ideal_gauss": cell(noise_only, seed=2),
                "ctf": cell(full, seed=3), "ctf_comp": cell(full + 0.001, seed=4), "ideal": cell(0.94, seed=5)}
    assert V.verdict_iii(arms(0.948, 0.92, 0.92), 10000, "mnist").status == V.HOLDS
    assert V.verdict_iii(arms(0.90, 0.948, 0.90), 10000, "mnist").status == V.FAILS
    # full model loses, noise-only arm does not, bias-only not significantly more: does not hold
    assert V.verdict_iii(arms(0.946, 0.948, 0.92), 10000, "mnist").status == V.FAILS
    assert V.verdict_iii(arms(0.949, 0.9495, 0.949), 10000, "mnist").status == V.INCONCLUSIVE
    v = V.verdict_iii({"fp": cell(0.9)}, 10000, "mnist")
    assert v.status == V.INCONCLUSIVE and "missing arms" in v.summary
    assert V.overall([v, v]) == V.INCONCLUSIVE


# ------------------------------------------------------------------------------ constructed store

BASE = {"data": {"dataset": "mnist", "train_limit": 2000}, "optim": {"epochs": 3, "lr": 0.05}}
FP_ACC = {"mnist": 0.95, "fashion": 0.85}


def fake_store(path, datasets=("mnist", "fashion"), seeds=(0, 1, 2), arms=True, gap_effect=0.03, stats=True):
    """Runs with real configs and epochs, accuracies built so that the answers are known:
    N = 1000 is 0.5 pp below FP and flat in t_gap; N < 500 loses 3 pp more at t_gap = 100 us;
    the ablation's noise-only arm loses more than its bias-only arm."""
    store = Store(path)
    rng = np.random.default_rng(0)

    def add(cfg_dict, acc, seed):
        cfg = validate(dict(cfg_dict, seed=seed))
        eps = [{"epoch": e, "test_accuracy": acc * (1 - 0.2 / e), "train_loss": 1.0 / e} for e in (1, 2, 3)]
        eps[-1]["test_accuracy"] = acc
        store.record_run(cfg.to_dict(), cfg.hash(), "finished", eps, {"test_accuracy": acc}, None, 0.0, 1.0,
                         sweep="fake")

    for ds in datasets:
        b = merge(BASE, {"data": {"dataset": ds}})
        fp = FP_ACC[ds]
        for seed in seeds:
            add(arm_config(b, "fp"), fp + rng.normal(0, 0.002), seed)
            for n in (100, 300, 1000):
                for gap in (1e-6, 1e-4):
                    bb = merge(b, {"pulses": {"n": n, "gap": gap}})
                    drop = {100: 0.08, 300: 0.04, 1000: 0.005}[n] + (gap_effect if n < 500 and gap == 1e-4 else 0)
                    add(arm_config(bb, "ctf"), fp - drop + rng.normal(0, 0.002), seed)
                    add(arm_config(bb, "ctf_comp"), fp - drop / 2 + rng.normal(0, 0.002), seed)
                    if arms and n == 1000 and gap == 1e-6:
                        for arm, d in (("ideal", 0.02), ("ctf_expected", 0.001), ("ideal_gauss", 0.02)):
                            add(arm_config(bb, arm), fp - d + rng.normal(0, 0.002), seed)
        if stats and arms:
            cfg = validate(arm_config(merge(b, {"pulses": {"n": 1000, "gap": 1e-6}}), "ctf"))
            for k, arm in enumerate(("fp", "ideal", "ctf_expected", "ctf", "ctf_comp", "ideal_gauss")):
                lay = {"layer": 0, "shape": [10, 20], "pairs": 2, "reps": 3, "slope": 1.0, "slope_se": 0.01,
                       "relative_bias": 0.1 * k, "relative_noise": 0.2 * k, "relative_error": 0.3, "gain": 1.0}
                store.record_run(cfg.to_dict(), f"us-{ds}-{arm}", "finished", [],
                                 {"kind": "update_stats", "arm": arm, "pairs": 2, "reps": 3, "warmup": 1,
                                  "n": 1000, "gap": 1e-6, "layers": [lay]}, None, 0, 1, sweep="update-stats")
    return store


def _verdict_rows(out):
    with open(out / "tables" / "s1_verdicts.csv") as fh:
        return [r for r in csv.DictReader(line for line in fh if not line.startswith("#"))]


@pytest.mark.slow
def test_report_from_constructed_store(tmp_path):
    store = fake_store(tmp_path / "s.db")
    out = tmp_path / "rep"
    path = build_report(store, out)
    html = path.read_text()
    assert html.count("data:image/png;base64,") >= 6
    assert "OUR reconstruction" in html and "in our model" in html
    for stem in ("device_response", "program_efficiency", "s1_accuracy_vs_n", "s1_accuracy_vs_epoch",
                 "s1_ablation_accuracy", "s1_update_stats_mnist_1000"):
        assert (out / "figures" / f"{stem}.png").stat().st_size > 1000
        assert (out / "figures" / f"{stem}.svg").exists()
    rows = _verdict_rows(out)
    got = {(r["finding"][:4], r["dataset"], "comp" in r["finding"]): r["verdict"] for r in rows}
    for ds in ("mnist", "fashion"):
        assert got[("(i) ", ds, False)] == V.HOLDS
        assert got[("(ii)", ds, False)] == V.HOLDS
        assert got[("(iii", ds, False)] == V.HOLDS
    # verdicts are data: effect, interval, power per row
    for r in rows:
        assert list(r) == V.VERDICT_COLUMNS
        if r["verdict"] == V.HOLDS:
            assert float(r["ci_low"]) <= float(r["effect"]) <= float(r["ci_high"]) and float(r["mde_80"]) > 0
            assert r["paired"] == "True" and r["n_seeds"] == "3"
    with open(out / "tables" / "s1_final_accuracy.csv") as fh:
        table = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    fp = [r for r in table if r["arm"] == "fp" and r["dataset"] == "mnist"]
    assert len(fp) == 1 and fp[0]["n_seeds"] == "3"
    assert float(fp[0]["mean_acc_pct"]) == pytest.approx(95.0, abs=0.5)
    # the update statistics: every row complete, the FP arm shown at the analog arms' design
    with open(out / "tables" / "s1_update_stats.csv") as fh:
        stats = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    assert stats and all(None not in r.values() and "x" in r["in_x_out"] for r in stats)
    designs = {(r["N"], r["t_gap_s"]) for r in stats if r["arm"] != "fp"}
    assert {(r["N"], r["t_gap_s"]) for r in stats if r["arm"] == "fp"} <= designs
    # nothing is missing in the complete store
    assert missing_notes(load_studies(store)[0], "s.db") == ([], [])


def test_verdicts_flip_when_the_gap_effect_is_absent(tmp_path):
    store = fake_store(tmp_path / "s.db", datasets=("mnist",), gap_effect=0.0, arms=False)
    st = load_studies(store)[0]
    v = {(x.finding[:4], "comp" in x.finding): x for x in study_verdicts(st)}
    assert v[("(ii)", False)].status == V.FAILS
    assert v[("(i) ", False)].status == V.HOLDS
    assert v[("(iii", False)].status == V.NOT_RUN          # no arms in this store: nothing was tested
    assert v[("(iii", False)].summary.startswith("not run")


def test_partial_store_names_what_is_missing(tmp_path):
    store = fake_store(tmp_path / "s.db", datasets=("mnist",), arms=False)
    notes = " ".join(sum(missing_notes(load_studies(store)[0], "s.db"), []))
    assert "Fashion-MNIST" in notes and "ctfrpu reproduce" in notes
    assert "ctfrpu ablation --dataset mnist" in notes
    html = build_report(store, tmp_path / "rep").read_text()
    assert "Missing for the full comparison" in html and "No ablation runs" in html


def test_report_of_empty_store(tmp_path):
    html = build_report(Store(tmp_path / "e.db"), tmp_path / "rep").read_text()
    assert "no finished runs" in html


def test_failed_and_stats_records_are_not_training_runs(tmp_path):
    store = fake_store(tmp_path / "s.db", datasets=("mnist",), seeds=(0,))
    cfg = validate(arm_config(BASE, "fp"))
    store.record_run(cfg.to_dict(), "x", "failed", [], None, "boom", 0, 1)
    st = load_studies(store)[0]
    assert all(r.arm is not None for r in st.runs)
    assert len([r for r in st.runs if r.arm == "fp"]) == 1
    assert len(st.stats) == 6


def test_report_cli_errors(tmp_path, cli_env):
    res = subprocess.run([CTFRPU, "report", "--store", str(tmp_path / "none.db"), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, env=cli_env)
    assert res.returncode == 2 and res.stderr.startswith("error: run store not found")
    res = subprocess.run([CTFRPU, "report", "--store", str(tmp_path), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, env=cli_env)
    assert res.returncode == 2 and "is a directory" in res.stderr and res.stderr.count("\n") == 1


# ------------------------------------------------------------------------------ tiny real run


@pytest.mark.slow
def test_tiny_real_reproduce_and_report(tmp_path):
    """The smoke profile (synthetic data, tiny MLP) through the in-process runner, then resumed."""
    from ctfrpu.pipeline.reproduce import reproduce

    store = Store(tmp_path / "r.db")
    logs: list[str] = []
    res = reproduce("smoke", store, tmp_path / "out", workers=1, log=logs.append)
    assert res["counts"]["failed"] == 0 and res["counts"]["finished"] == res["runs"]
    html = (tmp_path / "out" / "report" / "report.html").read_text()
    assert "synthetic" in html and "Verdicts on the paper" in html
    st = load_studies(store)[0]
    assert {r.arm for r in st.runs} == {"fp", "ideal", "ctf_expected", "ctf", "ctf_comp", "ideal_gauss"}
    assert len(st.stats) == 6
    res2 = reproduce("smoke", store, tmp_path / "out", workers=1, log=logs.append, report=False)
    assert res2["counts"]["finished"] == 0 and res2["counts"]["skipped-finished"] == res["runs"]


def test_report_warns_when_device_parameters_are_mixed(tmp_path):
    store = fake_store(tmp_path / "s.db", datasets=("mnist",), seeds=(0, 1), arms=False)
    cfg = validate(merge(arm_config(merge(BASE, {"pulses": {"n": 300}}), "ctf"),
                         {"device": {"params": {"tau_off": 1e-4}}}))
    store.record_run(cfg.to_dict(), cfg.hash(), "finished", [], {"test_accuracy": 0.9}, None, 0, 1)
    html = build_report(store, tmp_path / "rep").read_text()
    assert "different device parameter sets" in html


def test_report_names_the_device_parameters_that_differ_from_our_preset():
    from ctfrpu.devices import CTFDevice
    from ctfrpu.report.build import _override_note

    assert _override_note(CTFDevice(), None) == ""
    note = _override_note(CTFDevice(tau_off=0.01), "p.toml")
    assert "p.toml" in note and "tau_off = 0.01" in note and "kappa_p" not in note


# -- issue 12 item 7: report defects ---------------------------------------------------------------

def test_update_stats_caption_names_the_analog_design_not_the_fp_default():
    from ctfrpu.report import figures as F

    lay = {"layer": 0, "shape": [10, 20], "relative_bias": 0.1, "relative_noise": 0.2, "slope": 1.0,
           "slope_se": 0.1, "relative_error": 0.2, "gain": 1.0}
    fp = {"arm": "fp", "n": 1000, "gap": 1e-6, "pairs": 2, "reps": 3, "layers": [lay]}   # stored with defaults
    ctf = {"arm": "ctf", "n": 1000, "gap": 1e-7, "pairs": 2, "reps": 3, "layers": [lay]}
    fig = F.ablation_stats([fp, ctf])
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "t_gap 100 ns" in texts.replace("100ns", "100 ns") and "1 µs" not in texts and "1us" not in texts
    assert fig.legends and not any(ax.get_legend() for ax in fig.axes)  # legend outside the bars


def test_efficiency_legend_entries_all_name_visible_lines():
    from ctfrpu.devices import build_device
    from ctfrpu.report import figures as F

    fig = F.efficiency_figure(build_device("ctf"), 5e-3, [100, 1000], [1e-7, 1e-4], 0.1)
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    curves = [tuple(ln.get_ydata()) for ln in lines]
    assert len(set(curves)) == len(curves)  # no entry for a line hidden under another
    assert len(ax.get_legend().get_texts()) == len(lines)


def test_cut_accuracy_axis_is_said_plainly(tmp_path):
    from ctfrpu.report import figures as F
    from ctfrpu.report.build import ablation_design

    store = fake_store(tmp_path / "s.db", datasets=("mnist",))
    st = load_studies(store)[0]
    fig = F.ablation_accuracy(st, ["mnist"], {"mnist": ablation_design(st, "mnist")})
    ax = fig.axes[0]
    lo = ax.get_ylim()[0]
    assert lo == 0 or f"axis cut: starts at {lo:g} %" in ax.get_ylabel()


def test_suggested_commands_run_as_printed_and_optional_parts_are_not_red(tmp_path):
    import shlex

    from ctfrpu.cli.main import cli

    store = fake_store(tmp_path / "s.db", datasets=("mnist", "fashion"), stats=False)
    missing, optional = missing_notes(load_studies(store)[0], "s.db")
    cmds = [c for n in missing + optional for c in n.split("`")[1::2] if c.startswith("ctfrpu ")]
    assert cmds and all("..." not in c for c in cmds)
    for c in cmds:  # every suggestion parses with the real CLI (options and values valid)
        argv = shlex.split(c)[1:]
        ctx = cli.make_context("ctfrpu", argv, resilient_parsing=False)
        sub = cli.get_command(ctx, argv[0])
        sub.make_context(argv[0], argv[1:])
    assert optional and not missing  # only the update statistics are absent: not a red box
    html = build_report(store, tmp_path / "rep").read_text()
    assert "Missing for the full comparison" not in html and "Not in this store (not run by this profile; optional)" in html


@pytest.mark.slow
def test_verdicts_from_fewer_than_3_seeds_are_marked_indicative(tmp_path):
    html = build_report(fake_store(tmp_path / "a.db", seeds=(0, 1)), tmp_path / "a").read_text()
    assert "indicative: 2 seeds" in html and 'class="indicative"' in html
    # the mark names what the rule leans to, never "indicative (indicative: ...)"
    assert "leans &#x27;" in html or "leans '" in html
    assert "indicative (indicative" not in html
    firm = build_report(fake_store(tmp_path / "b.db", seeds=(0, 1, 2)), tmp_path / "b").read_text()
    assert "indicative: " not in firm


def test_indicative_marks_follow_each_verdicts_own_seeds(tmp_path):
    """A store part-way through a sweep: one cell has a single seed. Only the verdicts resting on
    that cell are marked indicative, not every verdict of the dataset (a 5-seed verdict is firm)."""
    store = fake_store(tmp_path / "s.db", datasets=("mnist",), stats=False)
    one_seed = [r.id for r in store.list() if r.config["device"]["kind"] == "ctf"
                and r.config["pulses"]["n"] == 1000 and r.config["compensation"]["kind"] == "none"
                and r.config["seed"] != 0]
    store.delete_runs(one_seed)
    out = tmp_path / "rep"
    html = build_report(store, out).read_text()
    rows = {r["finding"]: r for r in _verdict_rows(out)}
    plain_i = next(f for f in rows if f.startswith("(i)") and "compensation" not in f)
    plain_ii = next(f for f in rows if f.startswith("(ii)") and "compensation" not in f)
    assert rows[plain_i]["n_seeds"] == "1" and rows[plain_ii]["n_seeds"] == "3"
    summary = html[html.index("Summary of verdicts"):html.index("</table>", html.index("Summary of verdicts"))]
    rows_html = {ln.split("</td><td>")[1]: ln for ln in summary.split("<tr>")[2:]}
    assert "indicative: 1 seed" in rows_html[plain_i]
    assert all("indicative" not in ln for f, ln in rows_html.items() if f.startswith("(ii)"))


@pytest.mark.slow
def test_diverged_runs_are_listed_in_the_report(tmp_path):
    store = fake_store(tmp_path / "s.db", datasets=("mnist",))
    cfg = validate(arm_config(BASE, "fp"))
    store.record_run(cfg.to_dict(), "d", "diverged", [], {"test_accuracy": 0.1}, "diverged at epoch 1: boom",
                     0, 1)
    html = build_report(store, tmp_path / "rep").read_text()
    assert "Diverged runs" in html and "diverged at epoch 1: boom" in html


def test_report_cites_files_that_exist_in_the_repository():
    import re
    from pathlib import Path

    src = Path(__file__).parents[1] / "src" / "ctfrpu"
    for f in ("report/build.py", "report/figures.py", "cli/device_cmd.py", "cli/report_cmd.py", "devices/fit.py"):
        text = (src / f).read_text()
        assert not re.search(r"(?<!docs/)science\.md", text), f


def test_the_report_states_the_grid_of_each_study(tmp_path):
    from ctfrpu.report.build import _grid_line

    store = fake_store(tmp_path / "s.db", datasets=("mnist",))
    line = _grid_line(load_studies(store)[0])
    assert line.startswith("<p><b>Grid.</b> N ∈ {") and "t_gap ∈ {" in line and "seeds " in line
