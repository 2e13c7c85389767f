"""Issue 12 item 4: outputs are atomic and never clobber input, earlier outputs or symlink targets."""

import os
import tomllib

import pytest

from ctfrpu.cli.main import main
from ctfrpu.config import validate
from ctfrpu.store import Store


def _err(capsys, argv, *words):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (code, err)
    for w in words:
        assert w in err, err


@pytest.fixture
def meas(tmp_path):
    p = tmp_path / "meas.csv"
    assert main(["device", "synth", "--out", str(p), "--points", "4", "--gaps", "1us,100us"]) == 0
    return p


def test_device_fit_refuses_to_write_over_its_data(meas, capsys):
    before = meas.read_bytes()
    capsys.readouterr()
    _err(capsys, ["device", "fit", str(meas), "--out", str(meas)], "is the input")
    link = meas.with_name("alias.csv")
    link.symlink_to(meas)
    _err(capsys, ["device", "fit", str(meas), "--out", str(link)])
    assert meas.read_bytes() == before


@pytest.mark.slow
def test_synth_and_fit_need_force_to_overwrite(meas, capsys):
    capsys.readouterr()
    _err(capsys, ["device", "synth", "--out", str(meas)], "exists", "--force")
    assert main(["device", "synth", "--out", str(meas), "--points", "4", "--gaps", "1us,100us", "--force"]) == 0
    out = meas.with_name("fit.toml")
    assert main(["device", "fit", str(meas), "--out", str(out), "--fix", "tau_off=20us"]) == 0
    capsys.readouterr()
    _err(capsys, ["device", "fit", str(meas), "--out", str(out)], "exists")
    assert main(["device", "fit", str(meas), "--out", str(out), "--force", "--fix", "tau_off=20us"]) == 0


@pytest.mark.slow
def test_fit_toml_quotes_odd_file_names(tmp_path, meas, capsys):
    odd = tmp_path / 'we"ird \\ name.csv'
    odd.write_bytes(meas.read_bytes())
    out = tmp_path / "fit.toml"
    assert main(["device", "fit", str(odd), "--out", str(out), "--fix", "tau_off=20us"]) == 0
    doc = tomllib.loads(out.read_text())
    assert doc["fit"]["data"] == str(odd) and doc["params"]["tau_off"] == 2e-5
    assert main(["device", "params", "--device-params", str(out)]) == 0


def _store(tmp_path):
    db = tmp_path / "s.db"
    cfg = validate({"data": {"dataset": "synthetic"}})
    with Store(db) as s:
        s.record_run(cfg.to_dict(), cfg.hash(), "finished", [{"epoch": 1, "test_accuracy": 0.5}],
                     {"test_accuracy": 0.5}, None, 0.0, 1.0)
    return db


def test_export_needs_force_and_refuses_symlinks_and_the_store(tmp_path, capsys):
    db = _store(tmp_path)
    out = tmp_path / "x"
    assert main(["runs", "export", "--store", str(db), "--out", str(out)]) == 0
    _err(capsys, ["runs", "export", "--store", str(db), "--out", str(out)], "exists", "--force")
    assert main(["runs", "export", "--store", str(db), "--out", str(out), "--force"]) == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "y_runs.csv").symlink_to(victim)
    _err(capsys, ["runs", "export", "--store", str(db), "--out", str(tmp_path / "y"), "--force"], "symbolic link")
    assert victim.read_text() == "keep me"
    (tmp_path / "db_dir").mkdir()
    (tmp_path / "db_dir" / "z_runs.csv").symlink_to(db)
    _err(capsys, ["runs", "export", "--store", str(db), "--out", str(tmp_path / "db_dir" / "z"), "--force"])


def test_a_failed_export_leaves_neither_table(tmp_path, monkeypatch):
    from ctfrpu.errors import CtfrpuError
    from ctfrpu.sweep import export

    db = _store(tmp_path)
    real, calls = export._write, []

    def full_disk(df, fmt, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(df, fmt, path)

    monkeypatch.setattr(export, "_write", full_disk)
    with Store(db) as s, pytest.raises(CtfrpuError, match="No space left"):
        export.export_runs(s, "csv", tmp_path / "x")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(("x_", ".x_"))]


@pytest.mark.slow
def test_report_needs_force_and_refuses_a_symlinked_folder(tmp_path, capsys):
    db = _store(tmp_path)
    out = tmp_path / "rep"
    assert main(["report", "--store", str(db), "--out", str(out)]) == 0
    _err(capsys, ["report", "--store", str(db), "--out", str(out)], "exists", "--force")
    assert main(["report", "--store", str(db), "--out", str(out), "--force"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out2 = tmp_path / "rep2"
    out2.mkdir()
    (out2 / "figures").symlink_to(elsewhere)
    _err(capsys, ["report", "--store", str(db), "--out", str(out2)], "symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_a_failed_report_write_leaves_no_half_page(tmp_path, monkeypatch):
    from ctfrpu import outfiles
    from ctfrpu.errors import CtfrpuError
    from ctfrpu.report import build_report

    db = _store(tmp_path)
    real = outfiles.write_bytes

    def full(path, data):
        if str(path).endswith("report.html"):
            with outfiles.atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    fh.write(data[: len(data) // 2])
                raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(outfiles, "write_bytes", full)
    with Store(db) as s, pytest.raises(CtfrpuError, match="No space left"):
        build_report(s, tmp_path / "rep")
    assert not (tmp_path / "rep" / "report.html").exists()
    assert not [p for p in (tmp_path / "rep").iterdir() if p.name.endswith(".html")]
