"""Figure of a device fit: measured dV_T against pw with OUR CTF model's fitted curves, and residuals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..devices.ctf_fast import train_dvt
from ..devices.fit import UNITS, FitResult, Measurements, nominal
from ..plotting import MARKERS, STYLE, pyplot, save_figure, time_label


def _groups(m: Measurements):
    """Trains grouped by (ON time N*pw to 4 digits, gap, vt0): each group is one curve against pw.

    Yields ((t_on, gap, vt0 or nan), row indices)."""
    key_on = np.array([float(f"{t:.4g}") for t in m.n * m.pw])
    vt0 = m.vt0 if m.vt0 is not None else np.full(len(m), np.nan)
    keys = [(float(a), float(g), -np.inf if np.isnan(v) else float(v)) for a, g, v in zip(key_on, m.gap, vt0)]
    for k in sorted(set(keys)):
        idx = np.array([i for i, kk in enumerate(keys) if kk == k])
        yield (k[0], k[1], np.nan if k[2] == -np.inf else k[2]), idx


def _pm(v: float, s: float) -> str:
    """'1.2019 ± 0.0054': the value to the precision of two significant digits of its sigma."""
    if not (math.isfinite(s) and s > 0):
        return f"{v:.4g} ± {s:.2g}"
    dec = max(0, 1 - int(math.floor(math.log10(s))))
    return f"{v:.{dec}f} ± {s:.{dec}f}"


def _fmt_param(k: str, v: float, s: float) -> str:
    if UNITS[k] == "s":
        return f"{k} = {_pm(v * 1e6, s * 1e6)} µs"
    unit = f" {UNITS[k]}" if UNITS[k] else ""
    return f"{k} = {_pm(v, s)}{unit}"


def plot_fit(m: Measurements, res: FitResult, path: str | Path) -> list[Path]:
    """Write the fit figure (``path`` with .png, and .svg next to it); returns the paths."""
    plt = pyplot()
    dev = nominal(res.device)
    groups = list(_groups(m))
    with plt.rc_context(STYLE):
        fig, (ax, axr) = plt.subplots(1, 2, figsize=(11.5, 4.8), width_ratios=(1.6, 1.0))
        colors = plt.cm.viridis(np.linspace(0.0, 0.85, max(1, len(groups))))
        for gi, ((t_on, gap, vt0), idx) in enumerate(groups):
            c, mk = colors[gi], MARKERS[gi % len(MARKERS)]
            label = f"T_on {time_label(t_on)}, gap {time_label(gap)}"
            if not np.isnan(vt0):
                label += f", V_T0 {vt0:.3g} V"
            yerr = m.err[idx] * 1e3 if m.err is not None else None
            ax.errorbar(m.pw[idx] * 1e6, m.dvt[idx] * 1e3, yerr=yerr, fmt=mk, color=c, ms=4.5, capsize=2,
                        mfc="none", lw=1.0, label=label)
            order = np.argsort(m.pw[idx])
            if idx.size >= 3:   # dense model curve at the same ON time: every integer N in range
                n_lo, n_hi = int(m.n[idx].min()), int(m.n[idx].max())
                nn = np.unique(np.round(np.geomspace(n_lo, n_hi, 200)).astype(np.int64))
                pw = (t_on / nn) if np.allclose(m.n[idx] * m.pw[idx], t_on, rtol=1e-3) else None
                if pw is not None:
                    dv, _ = train_dvt(dev, pw, nn, gap, 1.0, vt0=None if np.isnan(vt0) else vt0)
                    ax.plot(pw * 1e6, dv * 1e3, "-", color=c, lw=1.5)
                else:
                    ax.plot(m.pw[idx][order] * 1e6, res.model[idx][order] * 1e3, "-", color=c, lw=1.5)
            else:
                ax.plot(m.pw[idx] * 1e6, res.model[idx] * 1e3, "x", color=c)
            r = m.dvt[idx] - res.model[idx]
            if m.err is not None:
                axr.plot(m.pw[idx] * 1e6, r / m.err[idx], mk, color=c, ms=4.5, mfc="none")
            else:
                axr.plot(m.pw[idx] * 1e6, r * 1e3, mk, color=c, ms=4.5, mfc="none")
        for a in (ax, axr):
            a.set_xscale("log")
            a.set_xlabel("pulse width pw (µs)")
            a.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylabel(r"cumulative $\Delta V_T$ (mV)")
        ax.set_title("data (markers) and fitted model (lines): our CTF model", fontsize=11)
        ncol = 1 if len(groups) <= 8 else 2
        ax.legend(loc="upper left", fontsize=8, ncol=ncol, frameon=True, framealpha=0.9)
        axr.axhline(0.0, color="0.3", lw=1.0)
        if m.err is not None:
            for y in (-2, 2):
                axr.axhline(y, color="0.5", lw=0.8, ls=":")
            axr.set_ylabel(r"residual / $\sigma$  (data − fit)")
        else:
            axr.set_ylabel(r"residual (mV)  (data − fit)")
        q = [f"R² = {res.r2:.4f}", f"RMS = {res.rms * 1e3:.3g} mV"]
        if res.chi2_red is not None:
            q.insert(0, f"χ²_red = {res.chi2_red:.3g}")
        axr.set_title(", ".join(q), fontsize=11)
        txt = "\n".join(_fmt_param(k, res.values[k], res.sigma[k]) + (" (bound)" if k in res.at_bound else "")
                        for k in res.free)
        if res.fixed:
            txt += "\nfixed: " + ", ".join(sorted(res.fixed))
        ax.text(0.97, 0.04, "fitted (1σ):\n" + txt, transform=ax.transAxes, fontsize=8.5, va="bottom", ha="right",
                multialignment="left", family="monospace",
                 bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))
        fig.suptitle(f"Fit of our CTF model (docs/science.md §4) to {Path(m.source).name}  "
                     f"[{res.n_points} trains, {len(res.free)} free parameters]", fontsize=12)
        fig.tight_layout()
    return save_figure(fig, Path(path).with_suffix(""))
