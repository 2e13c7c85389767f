"""The exploration map, the device-trend check and the paper-consistent candidate preset."""

from __future__ import annotations

import subprocess

import pytest

from ctfrpu.devices import CTFDevice, build_device
from ctfrpu.devices.ctf import preset_path
from ctfrpu.devices.trends import check_trends, require_trends
from ctfrpu.errors import CtfrpuError
from ctfrpu.design.explore import device_for, explore

from conftest import CTFRPU


def test_both_presets_keep_the_device_papers_trends():
    assert check_trends(CTFDevice()) == []
    paper = build_device("ctf", preset_path("ctf_paper"), {})
    assert check_trends(paper) == []
    # coarser steps: dw_min 5x the illustrative preset's
    assert abs(paper.nominal_dw(5e-6) / CTFDevice().nominal_dw(5e-6) - 5.0) < 1e-12


@pytest.mark.parametrize("kw,trend", [({"t_d_p": 0.0, "t_d_e": 0.0}, "(2) cliff"),
                                      ({"a_p": 0.0, "a_e": 0.0}, "(3) gap"),
                                      ({"tau_off": 1e-9}, "(3) gap")])
def test_a_preset_that_breaks_a_trend_is_a_one_line_error(kw, trend):
    with pytest.raises(CtfrpuError, match=r"breaks the device paper's trends: .*" + trend.replace("(", r"\(")
                       .replace(")", r"\)")):
        require_trends(CTFDevice(**kw), "bad preset")


def test_map_point_today_is_not_promising_the_paper_preset_is():
    pts = explore(timings=("slot",), coarseness=(1.0, 5.0), tau_on=(3e-6, 30e-6), tau_off=(20e-6,),
                  compensation=("none",), gaps=(1e-7, 1e-4))
    by = {(p.coarseness, p.tau_on): p for p in pts}
    assert not by[(1.0, 3e-6)].promising          # today's preset: the gap barely matters at small N
    assert by[(5.0, 30e-6)].promising
    dev = device_for(CTFDevice(), 5.0, 30e-6, 20e-6, 5e-3)
    assert abs(dev.nominal_dw(5e-3) * 1 - 5.0) < 1e-12  # a fully-ON 5 ms train moves the weight by W


@pytest.mark.slow
def test_explore_cli(tmp_path, cli_env):
    res = subprocess.run([CTFRPU, "explore", "--out", str(tmp_path), "--timings", "slot,train", "--coarseness", "5",
                          "--tau-on", "30us", "--tau-off", "20us"], env=cli_env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "explore_map.csv").is_file() and (tmp_path / "explore_map.png").is_file()
    assert "meet both necessary conditions" in res.stdout
    again = [CTFRPU, "explore", "--out", str(tmp_path), "--timings", "slot", "--coarseness", "5", "--tau-on", "30us",
             "--tau-off", "20us"]
    res = subprocess.run(again, env=cli_env, capture_output=True, text=True)
    assert res.returncode == 2 and "exists; pass --force" in res.stderr        # the first map is kept
    res = subprocess.run(again + ["--force"], env=cli_env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[params]\ntau_off = 1e-9\n")
    res = subprocess.run([CTFRPU, "explore", "--device-params", str(bad), "--out", str(tmp_path / "x")],
                         env=cli_env, capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("error:") and "trends" in res.stderr
    res = subprocess.run([CTFRPU, "explore", "--timings", "bogus"], env=cli_env, capture_output=True, text=True)
    assert res.returncode == 2 and "unknown timing model 'bogus'" in res.stderr
