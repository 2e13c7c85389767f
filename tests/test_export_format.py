"""Issue 13 item 9: exports with ISO timestamps, empty non-applicable fields, stable dtypes, units."""

import json
import re

import pandas as pd
import pyarrow.parquet as pq

from ctfrpu.config import validate
from ctfrpu.store import Store
from ctfrpu.sweep.export import export_runs, tables
from ctfrpu.training.runner import device_parameters


def _store(path, kinds=("fp", "ctf")):
    with Store(path) as s:
        for i, kind in enumerate(kinds):
            doc = {"seed": i, "data": {"dataset": "synthetic"}, "device": {"kind": kind}}
            if kind != "fp":
                doc["device"]["params"] = {"tau_off": "20us"}
            cfg = validate(doc)
            s.record_run(cfg.to_dict(), cfg.hash(), "finished", [{"epoch": 1, "test_accuracy": 0.5, "seconds": 1.0}],
                         {"test_accuracy": 0.5, "epochs": 1, "seconds": 2.0}, None, 1.7e9 + i, 1.7e9 + i + 0.25,
                         device=device_parameters(cfg))
    return path


def test_timestamps_are_iso_utc(tmp_path):
    db = _store(tmp_path / "s.db")
    with Store(db) as s:
        runs_csv, _ = export_runs(s, "csv", tmp_path / "x")
        runs_pq, _ = export_runs(s, "parquet", tmp_path / "x")
    text = pd.read_csv(runs_csv, dtype=str)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", v) for v in text.started)
    assert text.started[0] == "2023-11-14T22:13:20.000000Z"
    pq_runs = pd.read_parquet(runs_pq)
    assert str(pq_runs.started.dtype).startswith("datetime64") and str(pq_runs.started.dt.tz) == "UTC"
    parsed = pd.read_csv(runs_csv, parse_dates=["started", "ended"])
    assert (parsed.ended - parsed.started).dt.total_seconds().tolist() == [0.25, 0.25]


def test_fields_that_do_not_apply_are_empty(tmp_path):
    db = _store(tmp_path / "s.db")
    with Store(db) as s:
        runs, epochs = tables(s)
    fp, ctf = runs.iloc[0], runs.iloc[1]
    assert pd.isna(fp["pulses.n"]) and pd.isna(fp["pulses.gap"]) and pd.isna(fp["update.mode"])
    assert pd.isna(fp["io.out_noise"]) and pd.isna(fp["device.resolved.tau_off"] if "device.resolved.tau_off" in runs
                                                      else None)
    assert ctf["pulses.n"] == 1000 and ctf["pulses.gap"] == 1e-6 and ctf["device.resolved.tau_off"] == 2e-5
    assert pd.isna(ctf["pulses.pw"]) and ctf["pulses.t_on"] == 5e-3  # on_time mode: pw is derived, not set
    assert pd.isna(ctf["update.noise_scale"]) and pd.isna(ctf["compensation.u_typ"])
    assert pd.isna(epochs.iloc[0]["pulses.n"]) and epochs.iloc[1]["pulses.n"] == 1000


def test_dtypes_do_not_depend_on_which_runs_there_are(tmp_path):
    with Store(_store(tmp_path / "a.db", ("fp",))) as a, Store(_store(tmp_path / "b.db", ("ctf",))) as b:
        ra, _ = tables(a)
        rb, _ = tables(b)
        export_runs(a, "parquet", tmp_path / "a")
        export_runs(b, "parquet", tmp_path / "b")
    shared = [c for c in ra.columns if c in rb.columns]
    assert {c: str(ra[c].dtype) for c in shared} == {c: str(rb[c].dtype) for c in shared}
    assert str(ra["pulses.n"].dtype) == "Int64" and str(ra["error"].dtype) == "string"  # all empty, still typed
    sa, sb = pq.read_schema(tmp_path / "a_runs.parquet"), pq.read_schema(tmp_path / "b_runs.parquet")
    assert {c: str(sa.field(c).type) for c in shared} == {c: str(sb.field(c).type) for c in shared}
    assert str(sa.field("error").type) in ("string", "large_string") and str(sa.field("pulses.gap").type) == "double"


def test_parquet_carries_units(tmp_path):
    with Store(_store(tmp_path / "s.db")) as s:
        runs_pq, epochs_pq = export_runs(s, "parquet", tmp_path / "x")
    schema = pq.read_schema(runs_pq)
    assert schema.field("pulses.gap").metadata == {b"unit": b"s"}
    assert schema.field("device.resolved.tau_off").metadata == {b"unit": b"s"}
    units = json.loads(schema.metadata[b"ctfrpu.units"])
    assert units["test_accuracy"] == "fraction" and units["seconds"] == "s" and units["started"] == "UTC"
    assert json.loads(pq.read_schema(epochs_pq).metadata[b"ctfrpu.units"])["pulses.t_on"] == "s"
