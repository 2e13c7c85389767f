"""Issue 12 item 5: every silent surprise and traceback of the user study is a one-line error
(exit 2) -- one test per case, each failing on the earlier code."""

import json
import sqlite3
import time

import pytest

from ctfrpu.cli.main import main
from ctfrpu.cli.train_cmd import config_from_cli

SMALL = ["--dataset", "synthetic", "--train-limit", "50", "--test-limit", "50", "--hidden", "8", "--epochs", "1",
         "--no-progress"]


def _fails(capsys, argv, *words):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, code, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)
    return err


def test_a_time_flag_without_unit_is_refused(capsys):
    _fails(capsys, ["train", *SMALL, "--gap", "1"], "--gap", "no unit", "1us")
    _fails(capsys, ["train", *SMALL, "--t-on", "5"], "--t-on", "no unit")
    _fails(capsys, ["device", "trace", "--gap", "1"], "no unit")
    _fails(capsys, ["design", "--gaps", "1us,2"], "no unit")
    opts = {"gap": "0"}
    assert config_from_cli(None, opts, ()).pulses.gap == 0.0  # 0 needs no unit
    assert config_from_cli(None, {"gap": "100ns"}, ()).pulses.gap == pytest.approx(1e-7)


@pytest.mark.parametrize("cmd", [["runs", "list"], ["runs", "show", "1"], ["runs", "export", "--out", "OUT"],
                                 ["report", "--out", "OUT"]])
def test_read_commands_refuse_a_store_that_does_not_exist(tmp_path, capsys, cmd):
    typo = tmp_path / "typo" / "x.db"
    cmd = [c.replace("OUT", str(tmp_path / "out")) for c in cmd]
    _fails(capsys, [*cmd, "--store", str(typo)], "not found")
    assert not typo.parent.exists()  # neither the folder nor an empty store was created


def test_an_unknown_section_in_a_device_file_is_an_error(tmp_path, capsys):
    f = tmp_path / "dev.toml"
    f.write_text("[param]\nkappa_p = 100.0\n")
    _fails(capsys, ["device", "params", "--device-params", str(f)], "unknown section [param]")
    f.write_text("[params]\nkappa_p = 100.0\n[fit]\nr2 = 0.9\n")  # what `device fit` writes is fine
    assert main(["device", "params", "--device-params", str(f)]) == 0


def test_a_device_json_that_is_a_list_is_an_error(tmp_path, capsys):
    f = tmp_path / "dev.json"
    f.write_text("[1, 2]")
    _fails(capsys, ["device", "params", "--device-params", str(f)], "must be a table")


@pytest.mark.parametrize("line, key", [("[optim]\nepochs = true", "optim.epochs"), ("seed = true", "seed"),
                                       ('[update]\nupdate_management = "yes"', "update.update_management"),
                                       ('[optim]\nlr = "0.1"', "optim.lr"), ("[pulses]\nn = 100.0", "pulses.n")])
def test_config_types_are_strict(tmp_path, capsys, line, key):
    f = tmp_path / "c.toml"
    f.write_text(line + "\n")
    _fails(capsys, ["train", "--config", str(f), "--no-progress"], key)


def test_set_on_a_section_merges_into_it():
    cfg = config_from_cli(None, {"epochs": "1"}, ("optim={lr=0.5}",))
    assert cfg.optim.lr == 0.5 and cfg.optim.epochs == 1


def test_an_empty_hidden_is_an_error(capsys):
    _fails(capsys, ["train", *SMALL[:4], "--hidden", "", "--epochs", "1"], "--hidden")
    _fails(capsys, ["train", *SMALL[:4], "--hidden", "8,", "--epochs", "1"], "--hidden")


def test_binary_garbage_in_a_config_or_sweep_file(tmp_path, capsys):
    f = tmp_path / "garbage.toml"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 20)
    _fails(capsys, ["train", "--config", str(f)], "not UTF-8")
    _fails(capsys, ["sweep", str(f), "--dry-run"], "not UTF-8")


def test_deeply_nested_toml(tmp_path, capsys):
    f = tmp_path / "deep.toml"
    f.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    _fails(capsys, ["train", "--config", str(f)], "nested")
    _fails(capsys, ["sweep", str(f), "--dry-run"], "nested")
    _fails(capsys, ["train", *SMALL, "--set", "seed=" + "[" * 5000 + "]" * 5000], "nested")


@pytest.mark.parametrize("flag, value, key", [("--pulses", "1000000000", "pulses.n"),
                                              ("--pulses", "9223372036854775807", "pulses.n"),
                                              ("--pulses", "99999999999999999999999", "pulses.n"),
                                              ("--hidden", "100000000", "model.hidden")])
def test_absurd_sizes_are_refused_before_allocating(capsys, flag, value, key):
    args = [a for a in SMALL]
    if flag == "--hidden":
        args[args.index("--hidden") + 1] = value
    else:
        args += ["--device", "ideal", flag, value]
    _fails(capsys, ["train", *args], key)


def test_a_store_path_under_a_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    _fails(capsys, ["train", *SMALL, "--store", str(f / "x.db")], "run store")
    _fails(capsys, ["train", *SMALL, "--store", str(tmp_path)], "directory")


def _store_with_row(tmp_path, **cols):
    from ctfrpu.store import Store

    db = tmp_path / "d.db"
    with Store(db) as s:
        s.record_run({"seed": 0, "device": {"kind": "fp"}}, "h", "finished", [{"epoch": 1}], {"test_accuracy": 0.5},
                     None, 0.0, 1.0)
    con = sqlite3.connect(db)
    for col, value in cols.items():
        table, _, name = col.partition(".")
        con.execute(f"UPDATE {table} SET {name}=?", (value,))
    con.commit()
    con.close()
    return db


@pytest.mark.parametrize("damage", [{"runs.config_json": b"\xff\xfe{"}, {"runs.config_json": "{not json"},
                                    {"runs.final_json": "[1"}, {"epochs.metrics_json": "{"},
                                    {"runs.config_json": "[1, 2]"}])
def test_damaged_store_rows_are_named_not_tracebacks(tmp_path, capsys, damage):
    db = _store_with_row(tmp_path, **damage)
    for cmd in (["runs", "list"], ["runs", "show", "1"], ["runs", "export", "--out", str(tmp_path / "x")],
                ["report", "--out", str(tmp_path / "rep")]):
        _fails(capsys, [*cmd, "--store", str(db)], "run 1", "damaged")


def test_an_old_record_without_a_device_section_lists(tmp_path, capsys):
    db = _store_with_row(tmp_path, **{"runs.config_json": json.dumps({"seed": 0})})
    assert main(["runs", "list", "--store", str(db)]) == 0
    assert "seed=0" in capsys.readouterr().out


def test_a_malformed_scheduler_address_fails_at_once(tmp_path, capsys):
    from ctfrpu.sweep.engine import check_scheduler_address

    t0 = time.perf_counter()
    _fails(capsys, ["sweep", "example", "--scheduler", "notanaddress", "--store", str(tmp_path / "s.db")],
           "HOST:PORT")
    assert time.perf_counter() - t0 < 10  # the old code waited for a 40 s timeout
    assert check_scheduler_address("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    assert check_scheduler_address("localhost:8786") == "localhost:8786"


def test_a_saturating_t_on_is_not_silent(tmp_path, capsys):
    """--t-on 1e-300 s makes every update want more than a full train: the probabilities are clipped
    to 1 (with update management). The run finishes but says so, once, on stderr."""
    store = ["--store", str(tmp_path / "s.db")]
    assert main(["train", *SMALL, *store, "--device", "ideal", "--pulses", "10", "--t-on", "1e-300s"]) == 0
    err = capsys.readouterr().err
    warn = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "clipped to 1" in warn[0] and "pulses.t_on" in warn[0], err
    # the default design saturates (almost) never: no warning
    assert main(["train", *SMALL, *store, "--device", "ideal", "--pulses", "10"]) == 0
    assert "clipped" not in capsys.readouterr().err


def test_a_store_that_cannot_be_written_is_read_by_read_commands(tmp_path, capsys, monkeypatch):
    """A store on a read-only mount: sqlite cannot open it read-write. Read commands open it
    immutable and read-only; a command that writes gets a one-line error (no traceback)."""
    import sqlite3 as real

    db = tmp_path / "s.db"
    assert main(["train", *SMALL, "--store", str(db)]) == 0
    capsys.readouterr()
    connect = real.connect

    def read_only_mount(target, *a, uri=False, **kw):
        if not uri:  # what sqlite says on a read-only file system
            raise real.OperationalError("unable to open database file")
        return connect(target, *a, uri=uri, **kw)

    monkeypatch.setattr("ctfrpu.store.sqlite3.connect", read_only_mount)
    assert main(["runs", "list", "--store", str(db)]) == 0
    assert "synthetic fp" in capsys.readouterr().out
    assert main(["runs", "export", "--store", str(db), "--out", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x_runs.csv").exists()
    _fails(capsys, ["train", *SMALL, "--store", str(db)], "cannot open run store", "unable to open")


def test_an_unknown_timing_model_is_refused_for_every_device(tmp_path, capsys):
    """Even where the timing model has no effect (the FP baseline) a misspelt name is an error,
    and a sweep file with one fails when it is read, not when its runs start."""
    _fails(capsys, ["train", *SMALL, "--store", str(tmp_path / "s.db"), "--set", "update.timing=foo"],
           "unknown timing model 'foo'", "slot")
    sweep = tmp_path / "t.toml"
    sweep.write_text('name = "t"\n[base.device]\nkind = "ideal"\n[grid]\n"update.timing" = ["slot", "bursty"]\n')
    _fails(capsys, ["sweep", str(sweep), "--store", str(tmp_path / "s.db"), "--dry-run"], "bursty")
    _fails(capsys, ["design", "--timing", "bogus"], "unknown timing model 'bogus'", "train")


def test_design_predicts_under_the_chosen_timing_model(capsys):
    """`ctfrpu design --timing` reaches the helper: under 'train' timing a 0.1 us gap keeps more of
    the build-up than a 100 us gap (r falls with the gap), under 'slot' timing at small P it does not."""
    def r_of(timing):
        assert main(["design", "--pulses", "100", "--gaps", "0.1us,100us", "--lr", "0.1", "--device-params",
                     "preset:ctf_paper", "--timing", timing, "--json"]) == 0
        pts = json.loads(capsys.readouterr().out)["points"]
        assert all(p["timing"] == timing for p in pts)
        return [p["efficiency"] for p in pts]
    slot, train = r_of("slot"), r_of("train")
    assert abs(slot[0] - slot[1]) < 0.01
    assert train[0] - train[1] > 0.1


def test_reproduce_refuses_a_device_that_breaks_the_device_papers_trends(tmp_path, capsys):
    """The study asks whether the paper's findings hold on a device like the device paper's: a
    parameter set without the short-pulse cliff or the gap recovery is refused before any run."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[params]\ntau_on_p = 1e-9\nt_d_p = 0\n")
    err = _fails(capsys, ["reproduce", "--profile", "smoke", "--device-params", str(bad), "--store",
                          str(tmp_path / "s.db"), "--out", str(tmp_path / "o")], "breaks the device paper's trends",
                 "(2) cliff")
    assert "bad.toml" in err and not (tmp_path / "s.db").exists()
