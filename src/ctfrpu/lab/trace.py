"""One pulse train, pulse by pulse: V_T and the enhancement e against time -- OUR CTF model.

A noise-free nominal cell (no device-to-device, no cycle-to-cycle variation) receives N pulses of
width pw separated by gaps t_gap. Within a pulse, at time tau after its start, the state is the
closed form of :func:`ctfrpu.devices.ctf.pulse_math` for a pulse of width tau (nothing moves during
the onset delay t_d; s is frozen at the pulse's start, as in the simulator); within a gap,
e(tau) = e_end exp(-tau / tau_off) and V_T is constant. The trace therefore passes exactly
through the states :meth:`CTFDevice.apply_pulses` computes at the pulse ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..devices.ctf import CTFDevice, pulse_math
from ..errors import CtfrpuError
from ..outfiles import check_outputs, figure_outputs
from ..outfiles import output_dir as out_dir
from ..plotting import STYLE, caption, pyplot, save_figure, time_label, write_csv
from .response import noise_free

MAX_SAMPLES = 2_000_000
CSV_COLUMNS = ("t_s", "vt_V", "e", "pulse", "on")


@dataclass
class Trace:
    """Sampled trajectory; ``pulse`` is the index of the current or last pulse, ``on`` 1 inside a pulse."""

    t: np.ndarray
    vt: np.ndarray
    e: np.ndarray
    pulse: np.ndarray
    on: np.ndarray
    vt_ends: np.ndarray      # V_T at the end of each pulse
    e_ends: np.ndarray       # e at the end of each pulse
    starts: np.ndarray       # start time of each pulse
    n: int
    pw: float
    gap: float
    sign: float
    ideal_rate: float        # V/s: kappa (1 + a), the program-time-conserving rate at s = 1

    def rows(self):
        for i in range(self.t.size):
            yield float(self.t[i]), float(self.vt[i]), float(self.e[i]), int(self.pulse[i]), int(self.on[i])


def trace(device: CTFDevice, n: int = 10, pw: float = 5e-6, gap: float = 1e-6, sign: float = 1.0,
          vt0: float | None = None, e0: float = 0.0, samples: int = 40, tail: float | None = None) -> Trace:
    """Sample the state ``samples`` times per pulse and per gap (and over a final ``tail``, default
    one gap or, with no gap, one pulse width)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise CtfrpuError(f"trace: number of pulses must be an integer >= 1, got {n!r}")
    if not (np.isfinite(pw) and pw > 0):
        raise CtfrpuError(f"trace: pulse width must be finite and > 0, got {pw!r}")
    if not (np.isfinite(gap) and gap >= 0):
        raise CtfrpuError(f"trace: gap must be finite and >= 0, got {gap!r}")
    if sign not in (1.0, -1.0):
        raise CtfrpuError("trace: sign must be +1 (program) or -1 (erase)")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 2:
        raise CtfrpuError(f"trace: samples must be an integer >= 2, got {samples!r}")
    if n * 2 * samples > MAX_SAMPLES:
        raise CtfrpuError(f"trace: {n} pulses x {samples} samples is too many points (> {MAX_SAMPLES}); "
                          "lower --pulses or --samples")
    dev = noise_free(device)
    vt0 = dev.vt_ref if vt0 is None else float(vt0)
    if not (np.isfinite(vt0) and dev.vt_min <= vt0 <= dev.vt_max):
        raise CtfrpuError(f"trace: vt0 must lie in the window [{dev.vt_min}, {dev.vt_max}] V, got {vt0!r}")
    if not (np.isfinite(e0) and 0.0 <= e0 <= 1.0):
        raise CtfrpuError(f"trace: e0 must lie in [0, 1], got {e0!r}")
    tail = (gap if gap > 0 else pw) if tail is None else float(tail)
    prm = dev.kernel_params()
    period = pw + gap
    frac = np.linspace(0.0, 1.0, samples)
    ts, vts, es, idx, on = [], [], [], [], []
    vt_ends, e_ends = np.empty(n), np.empty(n)
    v, e = vt0, float(e0)
    for k in range(n):
        t0 = k * period
        # inside the pulse: closed form for a pulse of width tau (s frozen at the pulse start)
        tau = frac * pw
        v_in, e_in = pulse_math(np.full(samples, v), np.full(samples, e), tau, sign, 1.0, dev.vt_min, dev.vt_max,
                                prm, 0.0)
        v_in[0], e_in[0] = v, e
        first = 1 if (k > 0 and gap == 0) else 0      # back to back: the previous pulse's end is this start
        ts.append(t0 + tau[first:]); vts.append(v_in[first:]); es.append(e_in[first:])
        idx.append(np.full(samples - first, k)); on.append(np.ones(samples - first, dtype=np.int8))
        v, e = float(v_in[-1]), float(e_in[-1])
        vt_ends[k], e_ends[k] = v, e
        last = k == n - 1
        off = tail if last else gap
        if off > 0:
            # interior gaps: the gap's end is the next pulse's first sample, so it is not repeated
            tau = (frac[1:] if last else frac[1:-1]) * off
            ts.append(t0 + pw + tau); vts.append(np.full(tau.size, v)); es.append(e * np.exp(-tau / dev.tau_off))
            idx.append(np.full(tau.size, k)); on.append(np.zeros(tau.size, dtype=np.int8))
            if not last:
                e = e * float(np.exp(-gap / dev.tau_off))
    kappa, a = (dev.kappa_p, dev.a_p) if sign > 0 else (dev.kappa_e, dev.a_e)
    return Trace(t=np.concatenate(ts), vt=np.concatenate(vts), e=np.concatenate(es), pulse=np.concatenate(idx),
                 on=np.concatenate(on), vt_ends=vt_ends, e_ends=e_ends, starts=np.arange(n) * period, n=n, pw=pw,
                 gap=gap, sign=sign, ideal_rate=kappa * (1 + a))


def _time_axis(t_max: float) -> tuple[float, str]:
    for scale, unit in ((1e-6, "µs"), (1e-3, "ms")):
        if t_max <= 2000 * scale:
            return scale, unit
    return 1.0, "s"


def plot(tr: Trace, source: str):
    """Two panels sharing the time axis: V_T shift (mV) with the ideal level, and e."""
    plt = pyplot()
    scale, unit = _time_axis(float(tr.t[-1]))
    vt0 = float(tr.vt[0])
    with plt.rc_context(STYLE):
        fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(7.6, 5.6), height_ratios=(1.35, 1.0))
        if tr.n <= 60:
            for s in tr.starts:
                for ax in (ax1, ax2):
                    ax.axvspan(s / scale, (s + tr.pw) / scale, color="tab:orange", alpha=0.12, lw=0)
        # ideal (program-time-conserving) cell: rate kappa (1 + a) while ON, nothing in gaps
        on_time = np.minimum(tr.t - tr.pulse * (tr.pw + tr.gap), tr.pw) + tr.pulse * tr.pw
        ax1.plot(tr.t / scale, tr.sign * tr.ideal_rate * on_time * 1e3, "--", color="0.3", lw=1.3,
                 label="ideal (program time conserved)")
        ax1.plot(tr.t / scale, (tr.vt - vt0) * 1e3, color="tab:blue", label="our CTF model")
        ax1.plot((tr.starts + tr.pw) / scale, (tr.vt_ends - vt0) * 1e3, "o", color="tab:blue", ms=3.5,
                 label="end of each pulse")
        ax1.set_ylabel(rf"$V_T - V_T(0)$ (mV)" + "\n" + rf"$V_T(0)$ = {vt0:.3g} V")
        ax1.legend(loc="upper left" if tr.sign > 0 else "lower left", frameon=True, framealpha=0.9)
        ax2.plot(tr.t / scale, tr.e, color="tab:red")
        ax2.set_ylim(-0.03, 1.03)
        ax2.set_ylabel("enhancement e")
        ax2.set_xlabel(f"time ({unit})")
        kind = "program" if tr.sign > 0 else "erase"
        ax1.set_title(f"{kind} train: N = {tr.n}, pw = {time_label(tr.pw)}, t_gap = {time_label(tr.gap)}"
                      f" -- our CTF model ({source})", fontsize=10.5)
        caption(fig, "Our reconstruction (docs/science.md §4), not measured data. Noise-free nominal cell; shaded: "
                     "pulses ON.\ne builds up during a pulse after the onset delay t_d and relaxes in the gaps "
                     "(tau_off).", y=0.0)
        fig.align_ylabels((ax1, ax2))
    return fig


def run(device: CTFDevice, out: str | Path, source: str = "illustrative preset", force: bool = False,
        inputs=(), **kw) -> tuple[Trace, list[Path]]:
    """Compute, write ``device_trace.csv`` and ``device_trace.png/.svg`` into ``out``. Earlier
    files of that name are replaced only with ``force``; an output that is one of ``inputs`` is
    refused (checked before anything is computed)."""
    check_outputs(figure_outputs(out, "device_trace"), inputs=inputs, force=force)
    tr = trace(device, **kw)
    d = out_dir(out)
    csv_path = write_csv(d / "device_trace.csv", CSV_COLUMNS, tr.rows(), comments=(
        f"ctfrpu device trace: our CTF model ({source}), not measured data; noise-free nominal cell",
        f"N = {tr.n}, pw = {tr.pw!r} s, t_gap = {tr.gap!r} s, sign = {int(tr.sign):+d}",
    ))
    figs = save_figure(plot(tr, source), d / "device_trace")
    return tr, [csv_path, *figs]
