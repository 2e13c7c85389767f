"""Device response at fixed total ON time: cumulative dV_T against pulse width, one curve per gap.

The device paper (Shrivastava et al., arXiv:2307.06088) measured trains of N pulses of width
pw = T_on / N with the total ON time T_on held constant, for several gaps t_gap, and reported three
trends: fragmentation loss, a cliff below ~2 us, recovery at small gaps. This experiment computes
the same curves for OUR CTF model (docs/science.md §4) -- a reconstruction, not the paper's data.

Cells are noise-free (no device-to-device, no cycle-to-cycle variation) and nominal: each train
starts from a fully relaxed cell (e = 0) at V_T = vt_ref, and V_T is updated pulse by pulse
(:func:`ctfrpu.devices.ctf_fast.train_dvt`). The ideal (program-time-conserving) level is
``kappa_p (1 + a_p) T_on``: what the same ON time programs on the ideal device with the same rate.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..devices.ctf import CTFDevice
from ..devices.ctf_fast import train_dvt
from ..devices.pulses import MAX_PULSES, check_gaps, pw_grid  # noqa: F401 (re-exported)
from ..errors import CtfrpuError
from ..outfiles import check_outputs, figure_outputs
from ..outfiles import output_dir as out_dir
from ..plotting import MARKERS, STYLE, caption, pyplot, save_figure, time_label, write_csv

DEFAULT_GAPS = (0.1e-6, 1e-6, 10e-6, 100e-6, 1e-3)
"""Refuse designs with more pulses than this in one train (t_on / pw_min): they would take minutes."""

CSV_COLUMNS = ("pw_s", "n_pulses", "gap_s", "dvt_V", "ideal_dvt_V", "ratio")


def noise_free(device: CTFDevice) -> CTFDevice:
    """The same device without device-to-device or cycle-to-cycle variation."""
    return dataclasses.replace(device, kappa_dtod=0.0, window_dtod=0.0, dv_std=0.0)


def ideal_level(device: CTFDevice, t_on: float) -> float:
    """Program-time-conserving dV_T of ON time t_on (V): kappa_p (1 + a_p) t_on (s = 1)."""
    return device.kappa_p * (1.0 + device.a_p) * t_on


@dataclass
class Response:
    """Result of :func:`response`: one row per (gap, pw), in CSV_COLUMNS order."""

    t_on: float
    gaps: np.ndarray
    n: np.ndarray
    pw: np.ndarray
    dvt: np.ndarray          # shape (len(gaps), len(pw)), V
    ideal: float             # V

    @property
    def ratio(self) -> np.ndarray:
        return self.dvt / self.ideal

    def rows(self):
        for i, g in enumerate(self.gaps):
            for j in range(len(self.pw)):
                yield (float(self.pw[j]), int(self.n[j]), float(g), float(self.dvt[i, j]), float(self.ideal),
                       float(self.dvt[i, j] / self.ideal))


def response(device: CTFDevice, t_on: float = 100e-6, gaps=DEFAULT_GAPS, pw_min: float = 0.5e-6,
             pw_max: float = 100e-6, points: int = 25) -> Response:
    """Cumulative dV_T of program trains of total ON time t_on, for each gap and pulse width."""
    gaps = check_gaps(gaps)
    n, pw = pw_grid(t_on, pw_min, pw_max, points)
    dev = noise_free(device)
    dvt, _ = train_dvt(dev, pw[None, :], n[None, :], gaps[:, None], 1.0)
    return Response(t_on=t_on, gaps=gaps, n=n, pw=pw, dvt=dvt, ideal=ideal_level(dev, t_on))



def plot(res: Response, source: str):
    """Figure: dV_T (mV) against pw (µs, log), one curve per gap, ideal level dashed."""
    plt = pyplot()
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.2, 4.8))
        colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(res.gaps)))
        for i, g in enumerate(res.gaps):
            ax.plot(res.pw * 1e6, res.dvt[i] * 1e3, "-", marker=MARKERS[i % len(MARKERS)], color=colors[i],
                    ms=4.0, mfc="none" if i % 2 else colors[i], label=time_label(g))
        ax.axhline(res.ideal * 1e3, color="0.25", ls="--", lw=1.4, label="ideal (program time\nconserved)")
        ax.set_xscale("log")
        ax.set_xlabel("pulse width pw (µs)   [N = T_on / pw pulses]")
        ax.set_ylabel(r"cumulative $\Delta V_T$ (mV)")
        ax.set_ylim(bottom=min(0.0, float(np.min(res.dvt)) * 1e3), top=res.ideal * 1e3 * 1.12)
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        sec = ax.secondary_yaxis("right", functions=(lambda y: y / (res.ideal * 1e3), lambda r: r * res.ideal * 1e3))
        sec.set_ylabel("fraction of ideal")
        ax.legend(title="gap t_gap", loc="lower right", frameon=True, framealpha=0.9)
        ax.set_title(f"Fixed total ON time T_on = {time_label(res.t_on)}: our CTF model ({source})")
        caption(fig, "Our reconstruction of CTF program-time non-ideality (docs/science.md §4), not measured data.\n"
                     "Noise-free nominal cells (no device-to-device or cycle-to-cycle variation), each train\n"
                     "starting relaxed at V_T = vt_ref. Trends as in arXiv:2307.06088: fragmentation loss,\n"
                     "cliff below ~2 µs, recovery at small gaps.")
    return fig


def run(device: CTFDevice, out: str | Path, source: str = "illustrative preset", force: bool = False,
        inputs=(), **kw) -> tuple[Response, list[Path]]:
    """Compute, write ``device_response.csv`` and ``device_response.png/.svg`` into ``out``. Earlier
    files of that name are replaced only with ``force``; an output that is one of ``inputs`` is
    refused (checked before anything is computed)."""
    check_outputs(figure_outputs(out, "device_response"), inputs=inputs, force=force)
    res = response(device, **kw)
    d = out_dir(out)
    csv_path = write_csv(d / "device_response.csv", CSV_COLUMNS, res.rows(), comments=(
        f"ctfrpu device response: our CTF model ({source}), not measured data",
        f"fixed total ON time t_on = {res.t_on!r} s; noise-free nominal cells starting relaxed at V_T = vt_ref",
    ))
    figs = save_figure(plot(res, source), d / "device_response")
    return res, [csv_path, *figs]
