"""Fitting OUR CTF model to pulse-train data: recovery of known parameters, uncertainties, the
parameter file it writes, and one-line errors for bad data."""

import dataclasses
import tomllib

import numpy as np
import pytest

from ctfrpu.devices import CTFDevice, build_device
from ctfrpu.devices.fit import (FIT_PARAMS, Measurements, fit, model_dvt, parse_fix, read_measurements,
                                synthesize, write_measurements, write_params)
from ctfrpu.errors import CtfrpuError

TRUE = CTFDevice(kappa_p=180.0, a_p=1.4, tau_on_p=2.2e-6, t_d_p=0.9e-6, tau_off=35e-6)
# start far from the truth: the illustrative preset
START = CTFDevice()


@pytest.fixture(scope="module")
def weighted_fit():
    m = synthesize(TRUE, t_on=(100e-6, 30e-6), noise_rel=0.01, noise_abs=1e-4, seed=2024)
    return m, fit(m, base=START)


def test_fit_recovers_known_parameters_within_3_sigma_and_10_percent(weighted_fit):
    m, res = weighted_fit
    assert res.success and res.free == FIT_PARAMS and not res.at_bound
    for k in FIT_PARAMS:
        true, v, s = getattr(TRUE, k), res.values[k], res.sigma[k]
        assert np.isfinite(s) and 0 < s < 0.1 * true, (k, s)
        assert abs(v - true) < 3 * s, (k, true, v, s)
        assert abs(v - true) < 0.10 * true, (k, true, v)
    # the noise is what dVT_err says: chi2_red ~ 1 within 4 sigma of its sampling spread sqrt(2 / dof)
    assert abs(res.chi2_red - 1.0) < 4 * np.sqrt(2.0 / res.dof)
    assert res.r2 > 0.99
    np.testing.assert_allclose(res.model, model_dvt(res.device, m), rtol=1e-12)
    # erase mirrors the fitted program parameters by default
    assert (res.device.kappa_e, res.device.a_e, res.device.tau_on_e, res.device.t_d_e) == (
        res.device.kappa_p, res.device.a_p, res.device.tau_on_p, res.device.t_d_p)


def test_unweighted_fit_estimates_the_noise():
    m = synthesize(TRUE, t_on=(100e-6, 30e-6), noise_rel=0.0, noise_abs=3e-4, seed=5, with_err=False)
    res = fit(m, base=START)
    assert res.chi2_red is None and not res.weighted
    assert res.rms == pytest.approx(3e-4, rel=4 / np.sqrt(2 * res.dof))     # residual RMS ~ the true noise
    for k in FIT_PARAMS:
        assert abs(res.values[k] - getattr(TRUE, k)) < 3 * res.sigma[k], k
    assert ("kappa_p", "a_p") in [(a, b) for a, b, _ in res.strong_correlations(0.9)]


def test_fix_removes_parameters_and_keeps_their_values():
    m = synthesize(TRUE, noise_rel=0.01, noise_abs=1e-4, seed=1)
    res = fit(m, base=START, fix=parse_fix(["tau_off=35us", "a_p=1.4", "t_d_e=2us"]))
    assert res.free == ("kappa_p", "tau_on_p", "t_d_p")
    assert res.device.tau_off == pytest.approx(35e-6) and res.device.a_p == 1.4
    assert res.device.t_d_e == pytest.approx(2e-6)                # an explicit --fix beats mirroring
    assert abs(res.values["kappa_p"] - TRUE.kappa_p) < 3 * res.sigma["kappa_p"]
    res2 = fit(m, base=START, fix={"tau_off": 35e-6}, mirror_erase=False)
    assert res2.device.kappa_e == START.kappa_e


def test_params_file_round_trip(tmp_path, weighted_fit):
    m, res = weighted_fit
    path = write_params(res, tmp_path / "sub" / "fit.toml", "synthetic.csv")
    data = tomllib.loads(path.read_text())
    assert set(data["fit"]["sigma"]) == set(FIT_PARAMS)
    assert data["fit"]["points"] == len(m) and data["fit"]["weighted"] is True
    assert data["fit"]["r2"] == pytest.approx(res.r2)
    assert build_device("ctf", path) == res.device
    assert "OUR CTF model" in path.read_text().splitlines()[0]


def test_measurements_csv_round_trip_with_units_and_comments(tmp_path):
    m = synthesize(CTFDevice(), points=4, gaps=(1e-6, 1e-4), seed=0)
    p = write_measurements(m, tmp_path / "d.csv", comments=["synthetic"])
    back = read_measurements(p)
    np.testing.assert_allclose(back.pw, m.pw, rtol=1e-9)
    np.testing.assert_array_equal(back.n, m.n)
    np.testing.assert_allclose(back.err, m.err, rtol=1e-9)
    q = tmp_path / "units.csv"
    q.write_text("# measured somewhere\n\nPW, n ,T_GAP,dvt,extra\n2us,10,500ns,0.012,foo\n1e-5,3,0,0.02,bar\n")
    got = read_measurements(q)
    np.testing.assert_allclose(got.pw, [2e-6, 1e-5])
    np.testing.assert_allclose(got.gap, [5e-7, 0.0])
    assert got.err is None and list(got.n) == [10, 3]


BAD_CSV = {
    "missing column": ("pw,N,t_gap\n1e-6,3,0\n", "missing column"),
    "ragged row": ("pw,N,t_gap,dVT\n1e-6,3,0\n", "fields"),
    "negative width": ("pw,N,t_gap,dVT\n-1e-6,3,0,0.01\n", "pw must be > 0"),
    "zero width": ("pw,N,t_gap,dVT\n0,3,0,0.01\n", "pw must be > 0"),
    "negative gap": ("pw,N,t_gap,dVT\n1e-6,3,-1us,0.01\n", "t_gap must be >= 0"),
    "nan": ("pw,N,t_gap,dVT\n1e-6,3,0,nan\n", "finite"),
    "inf width": ("pw,N,t_gap,dVT\ninf,3,0,0.01\n", "finite"),
    "text": ("pw,N,t_gap,dVT\n1e-6,three,0,0.01\n", "not a number"),
    "fractional N": ("pw,N,t_gap,dVT\n1e-6,2.5,0,0.01\n", "integer"),
    "bad err": ("pw,N,t_gap,dVT,dVT_err\n1e-6,2,0,0.01,0\n", "dVT_err"),
    "empty": ("", "no header"),
    "header only": ("pw,N,t_gap,dVT\n", "no data rows"),
    "duplicate": ("pw,N,t_gap,dVT,pw\n1e-6,2,0,0.01,1e-6\n", "duplicate"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_csv_is_a_one_line_error(tmp_path, case):
    text, match = BAD_CSV[case]
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(CtfrpuError, match=match) as exc:
        read_measurements(p)
    assert "\n" not in str(exc.value)


def test_fit_input_errors(tmp_path):
    with pytest.raises(CtfrpuError, match="not found"):
        read_measurements(tmp_path / "nope.csv")
    few = Measurements(pw=np.array([2e-6, 5e-6, 1e-5]), n=np.array([5, 2, 1]), gap=np.zeros(3),
                       dvt=np.array([0.001, 0.002, 0.003]))
    with pytest.raises(CtfrpuError, match="fewer than the 5 free parameters"):
        fit(few)
    assert fit(few, fix={"a_p": 1.0, "tau_on_p": 3e-6}).dof == 0          # 3 points, 3 free: allowed
    with pytest.raises(CtfrpuError, match="nothing to fit"):
        fit(few, fix={k: getattr(START, k) for k in FIT_PARAMS})
    for bad in (["a_p"], ["nope=1"], ["a_p=x"], ["tau_off=5 parsecs"], ["carry_enhancement=maybe"]):
        with pytest.raises(CtfrpuError):
            parse_fix(bad)
    with pytest.raises(CtfrpuError):
        fit(few, fix={"kappa_p": -1.0})
    with pytest.raises(CtfrpuError, match="every dVT is zero"):
        fit(dataclasses.replace(few, dvt=np.zeros(3)), fix={"a_p": 1.0, "tau_on_p": 3e-6})
    with pytest.raises(CtfrpuError, match="vt0 must lie in the V_T window"):
        fit(dataclasses.replace(few, vt0=np.array([3.0, 3.0, 7.0])), fix={"a_p": 1.0, "tau_on_p": 3e-6})


def test_synthesize_is_reproducible_and_noisy_as_stated():
    a = synthesize(TRUE, seed=3, noise_rel=0.02, noise_abs=0.0)
    b = synthesize(TRUE, seed=3, noise_rel=0.02, noise_abs=0.0)
    np.testing.assert_array_equal(a.dvt, b.dvt)
    clean = model_dvt(TRUE, dataclasses.replace(a, dvt=np.zeros(len(a))))
    z = (a.dvt - clean)[clean > 0] / a.err[clean > 0]
    assert abs(z.std() - 1.0) < 4 / np.sqrt(2 * z.size)
    with pytest.raises(CtfrpuError):
        synthesize(TRUE, noise_rel=0.0, noise_abs=0.0)


def test_a_parameter_the_data_cannot_see_is_undetermined_not_exact():
    """Single pulses (N = 1) never relax between pulses: tau_off has no effect on the data. Its
    uncertainty must be infinite (a pseudo-inverse alone reports 0 along such a direction)."""
    from ctfrpu.devices.fit import Measurements

    pw = np.geomspace(1.5e-6, 100e-6, 14)
    ones = np.ones_like(pw)
    m = Measurements(pw=pw, n=ones.astype(int), gap=1e-6 * ones, dvt=np.zeros_like(pw), err=None)
    clean = model_dvt(TRUE, m)
    rng = np.random.default_rng(7)
    err = 0.01 * np.abs(clean) + 1e-4
    m = dataclasses.replace(m, dvt=clean + err * rng.standard_normal(pw.size), err=err)
    res = fit(m, base=START)
    assert res.sigma["tau_off"] == np.inf
    assert np.isfinite(res.sigma["tau_on_p"]) and res.sigma["tau_on_p"] > 0
    # (the well-posed fits above keep every uncertainty finite: no false alarm)
