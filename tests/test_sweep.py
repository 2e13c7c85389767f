"""Sweeps: file expansion and validation, dry run, a real 2-worker LocalCluster sweep, export."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from distributed import LocalCluster

from ctfrpu.cli.main import main
from ctfrpu.errors import CtfrpuError
from ctfrpu.store import Store
from ctfrpu.sweep.engine import run_sweep
from ctfrpu.sweep.export import export_runs, output_paths, tables
from ctfrpu.sweep.spec import load_sweep, parse_sweep

CTFRPU = str(Path(sys.executable).with_name("ctfrpu"))

BASE = {"data": {"dataset": "synthetic", "train_limit": 100, "test_limit": 100},
        "model": {"hidden": [16]}, "optim": {"epochs": 2}}

SMALL = """
name = "small"
[base]
data = { dataset = "synthetic", train_limit = 100, test_limit = 100 }
model = { hidden = [16] }
optim = { epochs = 2 }
[grid]
seed = [0, 1, 2]
"optim.lr" = [0.01, 0.1]
[[runs]]
"data.dataset" = "mnist"     # fails: the sweep points the workers at an empty data dir
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------ expansion


def test_grid_product_then_explicit_runs():
    sw = parse_sweep({"name": "s", "base": BASE,
                      "grid": {"pulses.n": [100, 1000], "pulses.gap": ["1us", "100us"], "seed": [0, 1]},
                      "runs": [{"device.kind": "ideal", "optim": {"lr": 0.5}}]})
    assert len(sw.runs) == 2 * 2 * 2 + 1
    assert [r.index for r in sw.runs] == list(range(1, 10))
    first, second, last = sw.runs[0], sw.runs[1], sw.runs[-1]
    assert first.varied == {"pulses.n": 100, "pulses.gap": "1us", "seed": 0}
    assert second.varied["seed"] == 1                      # last axis varies fastest
    assert first.config.pulses.gap == pytest.approx(1e-6)  # units parsed by the config
    assert last.config.device.kind == "ideal" and last.config.optim.lr == 0.5
    assert last.varied == {"device.kind": "ideal", "optim.lr": 0.5}
    assert all(r.config.sweep == "s" for r in sw.runs)
    assert len({r.hash for r in sw.runs}) == len(sw.runs)
    assert all(r.hash == r.config.hash() for r in sw.runs)


def test_nested_grid_tables_and_duplicates():
    sw = parse_sweep({"name": "s", "base": BASE, "grid": {"pulses": {"n": [10, 20, 10]}},
                      "runs": [{"pulses.n": 20}]})
    assert [r.varied for r in sw.runs] == [{"pulses.n": 10}, {"pulses.n": 20}]
    assert sw.duplicates == 2


def test_no_grid_is_the_base_run():
    sw = parse_sweep({"name": "s", "base": BASE})
    assert len(sw.runs) == 1 and sw.runs[0].varied == {}


def test_shipped_example_is_valid():
    sw = load_sweep("example")
    assert sw.name == "example" and len(sw.runs) >= 4
    assert all(r.config.sweep == "example" and r.config.data.dataset == "synthetic" for r in sw.runs)


@pytest.mark.parametrize("text, message", [
    ('name = "x"\n[grid]\n"pulses.n" = []', "grid 'pulses.n': empty axis"),
    ('name = "x"\n[grid]\n"pulses.nn" = [1]', "grid 'pulses.nn' = 1: unknown config key 'pulses.nn'"),
    ('name = "x"\n[grid]\n"pulses.n" = [10, 0]', "grid 'pulses.n' = 0: invalid config value for 'pulses.n'"),
    ('name = "x"\n[grid]\n"pulses.gap" = ["1 parsec"]', "grid 'pulses.gap' = \"1 parsec\": invalid config value"),
    ('name = "x"\n[grid]\n"pulses.n" = 5', "grid 'pulses.n': expected a list of values"),
    ('name = "x"\n[base]\nfoo = 1', "base: unknown config key 'foo'"),
    ('name = "x"\n[base]\nsweep = "y"', "base: 'sweep' is set from the sweep's name"),
    ('name = "x"\n[[runs]]\n"optim.lr" = -1', "runs[1] (optim.lr=-1): invalid config value for 'optim.lr'"),
    ('name = "x"\ngird = 1', "unknown top-level key 'gird'"),
    ('[grid]\nseed = [1]', "missing 'name"),
    ('name = 5\n[grid]\nseed = [1]', "name must be a string"),
    ('name = "x"\n[[runs]]\nseed = 0\n"pulses.n" = 5000\n"device.kind" = "ctf"', "changes nothing"),
    ('name = "a b"', "name 'a b': use letters"),
    ('name = "x"\n[grid\n', "invalid TOML"),
    # device parameters and train designs are checked too, not only the config's shape
    ('name = "x"\n[base]\ndevice = { kind = "ctf" }\n[grid]\n"device.params.dw_min_std" = [0.1]',
     "unknown ctf device parameter 'dw_min_std'"),
    ('name = "x"\n[base]\ndevice = { kind = "ctf" }\n[grid]\n"device.params.tau_off" = [1e-5, -1]',
     "tau_off=-1): CTFDevice.tau_off must be > 0"),
    ('name = "x"\n[[runs]]\n"device.kind" = "ideal"\n"device.params_file" = "nope.toml"',
     "device parameter file not found: nope.toml"),
])
def test_invalid_sweep_files_are_one_line_errors(tmp_path, capsys, text, message):
    path = write(tmp_path, text)
    with pytest.raises(CtfrpuError, match="^sweep file "):
        load_sweep(path)
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: sweep file {path}") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_file_and_cli_errors_exit_2(tmp_path):
    proc = subprocess.run([CTFRPU, "sweep", str(tmp_path / "nope.toml")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: sweep file not found:") and proc.stderr.count("\n") == 1
    path = write(tmp_path, SMALL)
    assert main(["sweep", str(path), "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    proc = subprocess.run([CTFRPU, "sweep", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "is a directory" in proc.stderr and proc.stderr.count("\n") == 1


def test_dry_run_lists_without_creating_a_store(tmp_path, capsys):
    path, db = write(tmp_path, SMALL), tmp_path / "dry.db"
    assert main(["sweep", str(path), "--store", str(db), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sweep small: 7 runs (seed (3) x optim.lr (2))" in out
    assert out.count("missing") == 8 and "0 finished, 0 failed, 7 missing" in out
    assert not db.exists()
    assert main(["sweep", str(path), "--store", str(db), "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"] == 7 and doc["counts"]["missing"] == 7
    assert doc["runs"][6]["varied"] == {"data.dataset": "mnist"} and doc["runs"][0]["config"]["sweep"] == "small"


# ------------------------------------------------------------------------------ real execution


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A real 2-worker LocalCluster runs SMALL once; the store is shared by the tests below."""
    tmp = tmp_path_factory.mktemp("sweep")
    sweep = load_sweep(write(tmp, SMALL))
    with Store(tmp / "store.db") as store, open(tmp / "log.txt", "w") as log:
        result = run_sweep(sweep, store, workers=2, data_dir=str(tmp / "nodata"), log=log)
    return sweep, tmp / "store.db", result, tmp


def test_a_line_per_run_with_what_is_left_and_an_eta(swept):
    """Off a terminal (no tqdm bar) every finished run is one line saying how many are left and when
    the sweep should end, from the mean wall time per completed run."""
    *_, tmp = swept
    done = [ln for ln in (tmp / "log.txt").read_text().splitlines() if " done " in ln]
    assert len(done) == 6
    # 7 runs complete (one fails): the 6 done lines carry 6 distinct counts out of 6..0
    lefts = [int(re.search(r"(\d+) left", ln).group(1)) for ln in done]
    assert len(set(lefts)) == 6 and set(lefts) <= set(range(7))
    assert all(re.search(r"\d+ left, eta \d+(h\d\dm|m)", ln) for ln in done if " 0 left" not in ln)
    # and the CPU time the run cost its worker process (all threads), beside its wall time
    assert all(re.search(r"\d+\.\ds \(cpu \d+\.\ds\)", ln) for ln in done)


def test_eta_arithmetic():
    from ctfrpu.sweep.engine import _eta

    assert _eta(100.0, 2, 0) == "0 left"
    assert _eta(100.0, 2, 3) == "3 left, eta 3m"        # 50 s per run x 3 = 150 s -> rounded up to 3 min
    assert _eta(3600.0, 10, 20) == "20 left, eta 2h00m"
    assert _eta(0.0, 0, 1) == "1 left, eta 0m"


def test_local_cluster_runs_every_run_once(swept):
    sweep, db, result, _ = swept
    assert result.n_workers == 2 and not result.interrupted and not result.complete
    assert result.count("finished") == 6 and result.count("failed") == 1
    with Store(db) as store:
        records = store.list(sweep="small")
    assert Counter(r.config_hash for r in records) == Counter(r.hash for r in sweep.runs)
    by_hash = {r.config_hash: r for r in records}
    for run in sweep.runs[:6]:
        rec = by_hash[run.hash]
        assert rec.status == "finished" and rec.config == run.config.to_dict()
        assert [m["epoch"] for m in rec.epochs] == [1, 2]
        assert 0.0 <= rec.final["test_accuracy"] <= 1.0
    failed = by_hash[sweep.runs[6].hash]
    assert failed.status == "failed" and "MNIST not found" in failed.error and failed.final is None
    # one dataset load per worker process, not per run
    assert len(result.workers) == 2
    assert all(w["dataset_loads"] == 1 for w in result.workers.values())
    assert sum(w["runs"] for w in result.workers.values()) == 7
    assert all(w["peak_rss_mb"] > 10 for w in result.workers.values())


def test_rerun_resumes_and_retries_failed_only_on_request(swept):
    sweep, db, _, tmp = swept
    with Store(db) as store:
        again = run_sweep(sweep, store, workers=2, data_dir=str(tmp / "nodata"), log=None)
        assert again.n_workers == 0  # nothing to run: no cluster started
        assert again.count("skipped-finished") == 6 and again.count("skipped-failed") == 1
        # the retry goes to an existing cluster by address, as `--scheduler tcp://...` does
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                          silence_logs=logging.CRITICAL) as cluster:
            retry = run_sweep(sweep, store, scheduler=cluster.scheduler_address,
                              data_dir=str(tmp / "nodata"), log=None, retry_failed=True)
        assert retry.scheduler == cluster.scheduler_address and retry.n_workers == 1
        assert retry.count("failed") == 1 and retry.count("skipped-finished") == 6
        statuses = Counter((r.config_hash, r.status) for r in store.list())
    assert statuses[(sweep.runs[6].hash, "failed")] == 2
    assert all(statuses[(r.hash, "finished")] == 1 for r in sweep.runs[:6])


def test_json_summary_of_a_resumed_sweep(swept, capsys):
    sweep, db, _, _ = swept
    assert main(["sweep", str(sweep.path), "--store", str(db), "--json"]) == 1  # one run failed
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"] == {"finished": 0, "diverged": 0, "failed": 0, "skipped-finished": 6,
                             "skipped-diverged": 0, "skipped-failed": 1, "not-run": 0}
    assert doc["complete"] is False
    assert all(r["final"]["test_accuracy"] >= 0 for r in doc["runs"] if r["status"] == "skipped-finished")


def test_export_tidy_tables(swept, tmp_path):
    sweep, db, _, _ = swept
    with Store(db) as store:
        n_runs = len(store.list(sweep="small"))
        runs_csv, epochs_csv = export_runs(store, "csv", tmp_path / "res.csv", sweep="small")
        runs_pq, epochs_pq = export_runs(store, "parquet", tmp_path / "res", sweep="small")
        with pytest.raises(CtfrpuError, match="no runs of sweep 'other'"):
            export_runs(store, "csv", tmp_path / "x", sweep="other")
    assert (runs_csv.name, epochs_csv.name, runs_pq.name) == ("res_runs.csv", "res_epochs.csv", "res_runs.parquet")
    for runs, epochs in ((pd.read_csv(runs_csv), pd.read_csv(epochs_csv)),
                         (pd.read_parquet(runs_pq), pd.read_parquet(epochs_pq))):
        assert len(runs) == n_runs and set(runs.status) == {"finished", "failed"}
        for col in ("run_id", "config_hash", "test_accuracy", "train_loss", "seed", "optim.lr",
                    "data.dataset", "pulses.gap", "model.hidden"):
            assert col in runs.columns, col
        assert len(epochs) == 2 * 6 and set(epochs.epoch) == {1, 2}
        assert {"run_id", "epoch", "train_loss", "test_accuracy", "seed", "optim.lr"} <= set(epochs.columns)
        fin = runs[runs.status == "finished"].set_index("run_id")
        last = epochs[epochs.epoch == 2].set_index("run_id")
        assert (fin.loc[last.index, "test_accuracy"] == last.test_accuracy).all()
        assert set(runs["model.hidden"]) == {"[16]"}


def test_export_paths_and_mixed_types(tmp_path):
    assert output_paths("parquet", tmp_path) == (tmp_path / "runs.parquet", tmp_path / "epochs.parquet")
    with pytest.raises(CtfrpuError, match="does not match --format csv"):
        output_paths("csv", tmp_path / "a.parquet")
    with pytest.raises(CtfrpuError, match="unknown export format 'xls'"):
        output_paths("xls", tmp_path / "a")
    with Store(tmp_path / "m.db") as store:
        for i, value in enumerate((0.5, "fast")):
            store.record_run({"seed": i, "device": {"kind": "ctf", "params": {"x": value}}}, f"h{i}", "finished",
                             [{"epoch": 1, "test_accuracy": 0.5}], {"test_accuracy": 0.5}, None, 0.0, 1.0)
        runs, _ = tables(store)
        assert list(runs["device.params.x"]) == ["0.5", "fast"]
        export_runs(store, "parquet", tmp_path / "m")  # mixed types must not break Parquet


def test_runs_that_compute_the_same_are_flagged_but_keep_their_hashes():
    """FP ignores the pulse train and the compensation: a grid over them repeats one computation."""
    from ctfrpu.sweep.spec import parse_sweep

    doc = {"name": "fpdup", "base": {"data": {"dataset": "synthetic", "train_limit": 50}},
           "grid": {"pulses.n": [10, 100], "compensation.kind": ["none", "gain"], "seed": [0, 1]}}
    sw = parse_sweep(doc)
    assert len({r.hash for r in sw.runs}) == 8                      # stored runs keep distinct hashes
    by_seed = {r.index: r.config.seed for r in sw.runs}
    assert len(sw.equivalent) == 6
    assert all(by_seed[a] == by_seed[b] and b < a for a, b in sw.equivalent)
    ctf = parse_sweep({**doc, "base": {**doc["base"], "device": {"kind": "ctf"}}})
    assert ctf.equivalent == ()                                      # a device that uses them: all differ
