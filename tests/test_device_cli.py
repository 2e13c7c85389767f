"""`ctfrpu device ...`: files written, labels, and one-line errors (exit 2) for bad input."""

import csv

import numpy as np
import pytest

from ctfrpu.cli.main import main
from ctfrpu.devices import CTFDevice
from ctfrpu.lab.response import noise_free
from ctfrpu.lab.trace import trace


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def read_csv(path):
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    return list(csv.DictReader(lines))


def test_response_writes_csv_and_figures(tmp_path, capsys):
    rc, out, err = run(capsys, "device", "response", "--points", "5", "--gaps", "1us,1ms", "--t-on", "50us",
                       "--pw-min", "1us", "--out", str(tmp_path))
    assert rc == 0, err
    for name in ("device_response.csv", "device_response.png", "device_response.svg"):
        assert (tmp_path / name).stat().st_size > 0
        assert str(tmp_path / name) in out
    rows = read_csv(tmp_path / "device_response.csv")
    assert list(rows[0]) == ["pw_s", "n_pulses", "gap_s", "dvt_V", "ideal_dvt_V", "ratio"]
    assert sorted({float(r["gap_s"]) for r in rows}) == [pytest.approx(1e-6), pytest.approx(1e-3)]
    for r in rows:
        assert int(r["n_pulses"]) * float(r["pw_s"]) == pytest.approx(50e-6)     # fixed ON time
        assert float(r["ratio"]) == pytest.approx(float(r["dvt_V"]) / float(r["ideal_dvt_V"]), rel=1e-6)
    assert "our CTF model" in (tmp_path / "device_response.csv").read_text().splitlines()[0]
    assert "our CTF model (illustrative preset)" in (tmp_path / "device_response.svg").read_text()


def test_trace_writes_files_and_matches_the_simulator(tmp_path, capsys):
    rc, out, err = run(capsys, "device", "trace", "--pulses", "3", "--pw", "4us", "--gap", "2us", "--samples", "6",
                       "--out", str(tmp_path))
    assert rc == 0, err
    for name in ("device_trace.csv", "device_trace.png", "device_trace.svg"):
        assert (tmp_path / name).stat().st_size > 0 and str(tmp_path / name) in out
    rows = read_csv(tmp_path / "device_trace.csv")
    assert list(rows[0]) == ["t_s", "vt_V", "e", "pulse", "on"]
    t = np.array([float(r["t_s"]) for r in rows])
    assert np.all(np.diff(t) > 0)
    e = np.array([float(r["e"]) for r in rows])
    assert np.all((e >= 0) & (e <= 1))
    # the sampled trace passes through the states apply_pulses computes at the pulse ends
    dev = noise_free(CTFDevice())
    tr = trace(dev, n=3, pw=4e-6, gap=2e-6, samples=6)
    state = dev.init_state((1,), np.random.default_rng(0))
    out_state = dev.apply_pulses(state, np.arange(3) * 6e-6, 4e-6, np.ones(3))
    assert tr.vt_ends[-1] == pytest.approx(out_state.vt[0], rel=1e-14)
    assert tr.e_ends[-1] == pytest.approx(out_state.e[0], rel=1e-12)
    # gaps relax e; nothing moves during a gap but e
    gap_rows = [r for r in rows if r["on"] == "0" and r["pulse"] == "0"]
    assert float(gap_rows[-1]["e"]) < float(gap_rows[0]["e"])
    assert len({r["vt_V"] for r in gap_rows}) == 1


def test_back_to_back_trace_has_increasing_times():
    tr = trace(CTFDevice(), n=4, pw=2e-6, gap=0.0, samples=5)
    assert np.all(np.diff(tr.t) > 0) and tr.t[-1] == pytest.approx(4 * 2e-6 + 2e-6)   # tail = one pw


def test_erase_trace(tmp_path, capsys):
    rc, out, err = run(capsys, "device", "trace", "--pulses", "2", "--erase", "--vt0", "3.5", "--samples", "3",
                       "--out", str(tmp_path))
    assert rc == 0, err
    rows = read_csv(tmp_path / "device_trace.csv")
    assert float(rows[-1]["vt_V"]) < 3.5


def test_params_lists_docstrings(capsys):
    rc, out, _ = run(capsys, "device", "params")
    assert rc == 0
    assert "not measured data" in out and "OUR reconstruction" in out
    assert "Program rate kappa without enhancement, V/s." in out
    assert "tau_off" in out and "20us" in out
    rc, out, _ = run(capsys, "device", "params", "--device", "ideal")
    assert rc == 0 and "dw_min = rate * pw" in out


def test_synth_fit_and_use_the_fitted_file(tmp_path, capsys):
    data = tmp_path / "d.csv"
    rc, out, err = run(capsys, "device", "synth", "--out", str(data), "--points", "6", "--noise-rel", "0.01",
                       "--noise-abs", "0.1mV", "--seed", "4")
    assert rc == 0, err
    params = tmp_path / "p.toml"
    rc, out, err = run(capsys, "device", "fit", str(data), "--out", str(params), "--plot", str(tmp_path / "fit.png"),
                       "--fix", "tau_off=20us")
    assert rc == 0, err
    assert "kappa_p" in out and "+/-" in out and "R^2" in out and "chi2_red" in out and "tau_off" not in out
    assert params.is_file() and (tmp_path / "fit.png").is_file() and (tmp_path / "fit.svg").is_file()
    rc, out, err = run(capsys, "device", "params", "--device-params", str(params))
    assert rc == 0 and str(params) in out
    rc, out, err = run(capsys, "device", "response", "--device-params", str(params), "--points", "3",
                       "--gaps", "1us", "--out", str(tmp_path / "r"))
    assert rc == 0, err


BAD = [
    ["device", "response", "--points", "1"],
    ["device", "response", "--points", "many"],
    ["device", "response", "--t-on", "-1us"],
    ["device", "response", "--t-on", "nan"],
    ["device", "response", "--gaps", "1us,-1us"],
    ["device", "response", "--gaps", ","],
    ["device", "response", "--pw-min", "0"],
    ["device", "response", "--pw-min", "1 parsec"],
    ["device", "response", "--pw-min", "200us"],
    ["device", "response", "--device-params", "/nonexistent.toml"],
    ["device", "trace", "--pulses", "0"],
    ["device", "trace", "--pulses", "2.5"],
    ["device", "trace", "--pw", "0"],
    ["device", "trace", "--pw", "inf"],
    ["device", "trace", "--gap", "-1us"],
    ["device", "trace", "--e0", "1.5"],
    ["device", "trace", "--vt0", "99"],
    ["device", "params", "--device", "flash"],
    ["device", "fit"],
    ["device", "fit", "/nonexistent.csv"],
    ["device", "synth", "--noise-abs", "lots"],
    ["device", "synth", "--set", "kappa_p=-1"],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a[1:]) for a in BAD])
def test_bad_input_is_one_line_error(tmp_path, capsys, argv):
    rc, out, err = run(capsys, *argv, *(["--out", str(tmp_path / "o")] if argv[1] in ("response", "trace") else []))
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err


def test_bad_data_files_are_one_line_errors(tmp_path, capsys):
    for text in ("pw,N,t_gap\n1e-6,3,0\n", "pw,N,t_gap,dVT\n-1e-6,3,0,0.01\n", "pw,N,t_gap,dVT\n1e-6,3,0,inf\n",
                 "pw,N,t_gap,dVT\n1e-6,3,0,0.01\n2e-6,3,0,0.02\n", "pw,N,t_gap,dVT\n1e-6,3\n"):
        p = tmp_path / "bad.csv"
        p.write_text(text)
        rc, out, err = run(capsys, "device", "fit", str(p), "--out", str(tmp_path / "x.toml"))
        assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


def test_help_labels_the_model_as_ours(capsys):
    for sub in ("response", "trace", "fit", "synth"):
        rc = main(["device", sub, "--help"])
        out = capsys.readouterr().out
        assert rc == 0 and "our ctf model" in " ".join(out.lower().split()), sub
    rc = main(["device", "--help"])
    assert "OUR reconstruction" in capsys.readouterr().out


@pytest.mark.parametrize("argv, name", [
    (["device", "response", "--points", "3", "--gaps", "1us"], "device_response.csv"),
    (["device", "trace", "--pulses", "2", "--samples", "3"], "device_trace.csv"),
])
def test_a_second_run_needs_force_to_replace_the_first_ones_files(tmp_path, capsys, argv, name):
    rc, _, err = run(capsys, *argv, "--out", str(tmp_path))
    assert rc == 0, err
    first = (tmp_path / name).read_bytes()
    (tmp_path / name).write_text("my notes\n")                  # an earlier output the user edited
    rc, out, err = run(capsys, *argv, "--out", str(tmp_path))
    assert rc == 2 and "exists; pass --force" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / name).read_text() == "my notes\n"       # untouched
    rc, _, err = run(capsys, *argv, "--out", str(tmp_path), "--force")
    assert rc == 0, err
    assert (tmp_path / name).read_bytes() == first


def test_output_over_the_parameter_file_is_refused(tmp_path, capsys):
    """A params file named like an output, in the output folder, is never written over (even with --force)."""
    params = tmp_path / "device_response.csv"
    params.write_text("# not really a CSV\n")
    rc, _, err = run(capsys, "device", "response", "--device-params", str(params), "--out", str(tmp_path), "--force")
    assert rc == 2 and "is the input" in err
    assert params.read_text() == "# not really a CSV\n"
