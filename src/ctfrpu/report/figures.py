"""Figures of the report (matplotlib, Agg). Every figure returns a Figure; the caller saves it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..arms import ARM_ORDER, ARMS
from ..data.registry import DATASETS
from ..plotting import pyplot, time_label
from .data import RunRow, Study, group

STYLE = {
    "font.size": 10.5, "axes.titlesize": 11.5, "axes.labelsize": 11, "legend.fontsize": 8.5,
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "lines.linewidth": 1.6, "lines.markersize": 5, "svg.fonttype": "none",
}
DATASET_NAMES = {d.name: d.title for d in DATASETS.values()}
OURS = "CTF program-time model, compensation and ablation arms: OUR reconstruction (docs/science.md §4)."




def _mean_std(values: list[float]) -> tuple[float, float, int]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else 0.0), len(v)


def _fp_line(ax, rows: list[RunRow], label: str = "FP baseline") -> bool:
    fp = [r.accuracy for r in rows if r.arm == "fp"]
    if not fp:
        return False
    m, s, n = _mean_std(fp)
    ax.axhline(100 * m, color="k", lw=1.4, ls="-", label=f"{label} ({n} seed{'s' if n > 1 else ''}, ±1 sd)")
    if s > 0:
        ax.axhspan(100 * (m - s), 100 * (m + s), color="0.5", alpha=0.18, lw=0)
    return True


def _figure_legend(fig, axes) -> None:
    """One legend under the panels (the union of the panels' entries, in order)."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.tight_layout()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(labels)),
                   frameon=False)


def accuracy_vs_n(study: Study, datasets: list[str]):
    """Final test accuracy vs N, one line per t_gap, solid = no compensation, dashed = our gain
    compensation; error bars = sd over seeds; FP baseline as a horizontal line and band."""
    plt = pyplot()
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(datasets), figsize=(5.6 * len(datasets), 4.4), squeeze=False)
        for ax, ds in zip(axes[0], datasets):
            rows = [r for r in study.runs if r.dataset == ds]
            analog = [r for r in rows if r.arm in ("ctf", "ctf_comp")]
            gaps = sorted({r.gap for r in analog})
            colors = plt.cm.viridis(np.linspace(0.0, 0.85, max(len(gaps), 1)))
            ns = sorted({r.n for r in analog})
            for gi, gap in enumerate(gaps):
                for arm, ls, mk in (("ctf", "-", "o"), ("ctf_comp", "--", "s")):
                    cells = group([r for r in analog if r.gap == gap and r.arm == arm], "n")
                    if not cells:
                        continue
                    xs = sorted(k[0] for k in cells)
                    stats = [_mean_std([r.accuracy for r in cells[(n,)]]) for n in xs]
                    off = 1.0 + 0.025 * (gi - (len(gaps) - 1) / 2) + (0.01 if arm == "ctf_comp" else 0.0)
                    ax.errorbar(np.array(xs) * off, [100 * s[0] for s in stats], yerr=[100 * s[1] for s in stats],
                                color=colors[gi], ls=ls, marker=mk, mfc="none" if arm == "ctf_comp" else colors[gi],
                                capsize=3, label=f"t_gap {time_label(gap)}" + (" + comp." if arm == "ctf_comp" else ""))
            has_fp = _fp_line(ax, rows)
            ax.set_xscale("log")
            if ns:
                ax.set_xticks(ns)
                ax.set_xticklabels([str(n) for n in ns])
                ax.minorticks_off()
            t_on = {r.t_on for r in analog}
            ax.set_xlabel("pulses per update train N" + (f"   (pw = {time_label(t_on.pop() / 1)}/N)" if len(t_on) == 1 else ""))
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(DATASET_NAMES.get(ds, ds) + ("" if has_fp else "  [no FP baseline]"))
            if not (analog or has_fp):
                ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center")
        _figure_legend(fig, axes[0])
        fig.text(0.5, -0.11, "Solid: CTF full model; dashed/open: with our gain compensation. Error bars: sd over seeds. "
                 "Black line and band: floating-point SGD mean ± sd.\n" + OURS,
                 ha="center", va="top", fontsize=8, color="0.3")
        fig.tight_layout()
    return fig


def accuracy_vs_epoch(study: Study, datasets: list[str]):
    """Test accuracy vs epoch (mean over seeds, band = ±1 sd) for FP and the CTF model at each N
    (at the t_gap with the most runs), solid = no compensation, dashed = compensation."""
    plt = pyplot()
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(datasets), figsize=(5.6 * len(datasets), 4.2), squeeze=False)
        for ax, ds in zip(axes[0], datasets):
            rows = [r for r in study.runs if r.dataset == ds and r.curve]
            analog = [r for r in rows if r.arm in ("ctf", "ctf_comp")]
            gap = None
            if analog:
                counts = group(analog, "gap")
                gap = max(counts, key=lambda k: (len(counts[k]), -k[0]))[0]
            ns = sorted({r.n for r in analog})
            colors = plt.cm.plasma(np.linspace(0.0, 0.8, max(len(ns), 1)))
            series: list[tuple[str, list[RunRow], Any, str]] = [("FP", [r for r in rows if r.arm == "fp"], "k", "-")]
            for i, n in enumerate(ns):
                for arm, ls in (("ctf", "-"), ("ctf_comp", "--")):
                    sel = [r for r in analog if r.n == n and r.gap == gap and r.arm == arm]
                    series.append((f"CTF N={n}" + (" + comp." if arm == "ctf_comp" else ""), sel, colors[i], ls))
            for label, sel, color, ls in series:
                if not sel:
                    continue
                n_ep = min(len(r.curve) for r in sel)
                ep = np.array([e for e, _ in sel[0].curve[:n_ep]])
                acc = np.array([[a for _, a in r.curve[:n_ep]] for r in sel]) * 100
                m = acc.mean(0)
                ax.plot(ep, m, ls=ls, color=color, marker="o", ms=3, label=label)
                if len(sel) > 1:
                    s = acc.std(0, ddof=1)
                    ax.fill_between(ep, m - s, m + s, color=color, alpha=0.15, lw=0)
            ax.set_xlabel("epoch")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(DATASET_NAMES.get(ds, ds) + (f", t_gap {time_label(gap)}" if gap is not None else ""))
            if any(s[1] for s in series):
                ax.xaxis.get_major_locator().set_params(integer=True)
        _figure_legend(fig, axes[0])
        fig.text(0.5, -0.11, "Mean over seeds; band = ±1 sd. " + OURS, ha="center", va="top", fontsize=8, color="0.3")
        fig.tight_layout()
    return fig


def ablation_accuracy(study: Study, datasets: list[str], design: dict[str, tuple[int, float]]):
    """Final test accuracy per ablation arm (mean ± sd over seeds; dots = seeds)."""
    plt = pyplot()
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(datasets), figsize=(5.8 * len(datasets), 4.4), squeeze=False)
        for ax, ds in zip(axes[0], datasets):
            n, gap = design.get(ds, (None, None))
            rows = [r for r in study.runs if r.dataset == ds and r.arm in ARMS
                    and (r.arm == "fp" or (r.n == n and r.gap == gap))]
            xs, labels = [], []
            for i, arm in enumerate(ARM_ORDER):
                vals = [r.accuracy * 100 for r in rows if r.arm == arm]
                labels.append(ARMS[arm].short)
                if not vals:
                    ax.text(i, 0.5, "missing", rotation=90, ha="center", va="bottom", transform=ax.get_xaxis_transform(),
                            color="0.5")
                    continue
                m, s, k = _mean_std(vals)
                ax.bar(i, m, yerr=s if k > 1 else None, capsize=4, color=plt.cm.tab10(i), alpha=0.8)
                ax.plot([i] * k, vals, "k.", ms=4)
                xs.append(m)
            ax.set_xticks(range(len(ARM_ORDER)))
            ax.set_xticklabels(labels, fontsize=8.5)
            lo = 0.0
            if xs:
                lo = max(0.0, 10 * math.floor((min(xs) - 10) / 10))
                ax.set_ylim(lo, min(100.0, max(xs) + 5))
            # a cut axis exaggerates differences: say so on the axis itself
            ax.set_ylabel("test accuracy (%)" + (f"  [axis cut: starts at {lo:g} %]" if lo > 0 else ""))
            ttl = DATASET_NAMES.get(ds, ds)
            if n is not None:
                ttl += f", N = {n}, t_gap {time_label(gap)}"
            ax.set_title(ttl)
        fig.text(0.5, -0.02, "Bars: mean ± sd over seeds; dots: single seeds. The accuracy axis does not start at 0 "
                 "where marked (bar heights are not proportional). Arms are OUR ablation design "
                 "(docs/science.md §4).", ha="center", va="top", fontsize=8, color="0.3")
        fig.tight_layout()
    return fig


def factorial_figure(panels: list[tuple[str, tuple[int, int], float, dict[tuple[str, str], Any]]], fp: dict[str, list[float]]):
    """The 2x2 bias x noise ablation as interaction plots, one panel per dataset: x = the design
    whose noise the arm has (N_sigma), one line per design whose bias it has (N_b); mean ± sd over
    seeds, dots = seeds. ``panels``: (dataset, (N small, N large), t_gap, cells keyed (bias, noise))."""
    plt = pyplot()
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.2), squeeze=False)
        for ax, (ds, sizes, gap, arms) in zip(axes[0], panels):
            for j, (b, color) in enumerate((("small", "tab:red"), ("large", "tab:blue"))):
                xs, ms, ss = [], [], []
                for i, noise in enumerate(("small", "large")):
                    cell = arms.get((b, noise))
                    if cell is None or not cell.n:
                        continue
                    vals = [100 * v for v in cell.values]
                    m, sd, k = _mean_std(vals)
                    x = i + (j - 0.5) * 0.06
                    ax.plot([x] * k, vals, ".", color=color, alpha=0.5, ms=4)
                    xs.append(x), ms.append(m), ss.append(sd)
                if xs:
                    ax.errorbar(xs, ms, yerr=ss, color=color, marker="o", capsize=4,
                                label=f"bias of N_b = {sizes[0 if b == 'small' else 1]}")
            if fp.get(ds):
                m, _, n = _mean_std([100 * v for v in fp[ds]])
                ax.axhline(m, color="k", lw=1.2, label=f"FP baseline ({n} seeds)")
            ax.set_xticks([0, 1])
            ax.set_xticklabels([f"noise of N_σ = {sizes[0]}", f"noise of N_σ = {sizes[1]}"])
            ax.set_xlim(-0.4, 1.4)
            ax.set_ylabel("test accuracy (%)  [axis cut to the data]")
            ax.set_title(f"{DATASET_NAMES.get(ds, ds)}, t_gap {time_label(gap)}")
            ax.legend(loc="lower right")
        fig.text(0.5, -0.02, "OUR 2 x 2 ablation (docs/science.md §4.9): each arm has the mean update of design N_b and "
                 "the noise of design N_σ. Parallel lines: no interaction; the vertical rise is the noise effect, the "
                 "gap between the lines the bias effect.", ha="center", va="top", fontsize=8, color="0.3", wrap=True)
        fig.tight_layout()
    return fig


def ablation_stats(stats: list[dict[str, Any]], design: tuple[int, float] | None = None):
    """Relative bias and relative noise of single updates per arm and layer (Monte Carlo).

    ``design`` (N, t_gap) labels the figure; by default the design of the analog records (the FP
    arm is stored with the default pulse design, which it does not use)."""
    plt = pyplot()
    if design is None:
        ref = next((s for s in stats if s.get("arm") != "fp"), stats[0])
        design = (ref["n"], ref["gap"])
    arms = [a for a in ARM_ORDER if any(s["arm"] == a for s in stats)]
    n_layers = max(len(s["layers"]) for s in stats)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2))
        width = 0.8 / n_layers
        for ax, key, title in ((axes[0], "relative_bias", "relative bias |E[dW] - SGD| / |SGD|"),
                               (axes[1], "relative_noise", "relative noise sd(dW) / |SGD|")):
            for k in range(n_layers):
                vals = []
                for a in arms:
                    rec = next(s for s in stats if s["arm"] == a)
                    lay = rec["layers"][k] if k < len(rec["layers"]) else None
                    vals.append(max(lay[key], 1e-4) if lay else np.nan)
                shape = next((s["layers"][k]["shape"] for s in stats if k < len(s["layers"])), None)
                lbl = f"layer {k + 1}" + (f" ({shape[1]}->{shape[0]})" if shape else "")
                ax.bar(np.arange(len(arms)) + (k - (n_layers - 1) / 2) * width, vals, width, label=lbl,
                       color=plt.cm.Blues(0.4 + 0.5 * k / max(n_layers - 1, 1)))
            ax.set_yscale("log")
            ax.set_ylim(bottom=1e-4)
            ax.set_xticks(range(len(arms)))
            ax.set_xticklabels([a.replace("_", "\n") for a in arms], fontsize=8.5)
            ax.set_ylabel(title + " (ratio)")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.tight_layout(rect=(0, 0, 1, 0.9))
        # above the panels, never over a bar (it covered the 'ideal' bars inside the axes)
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=max(1, len(labels)),
                   fontsize=8, frameon=False)
        first = stats[0]
        fig.text(0.5, -0.02, f"Monte Carlo over {first['pairs']} realistic (x, d) pairs x {first['reps']} repeats "
                 f"from the same state (N = {design[0]}, t_gap {time_label(design[1])}); 1e-4 = zero. "
                 "OUR instrument (ctfrpu.experiments.update_stats).", ha="center", va="top", fontsize=8, color="0.3")
    return fig


def efficiency_figure(device, t_on: float, ns: list[int], gaps: list[float], lr: float, timing: str = "slot"):
    """Program efficiency r of the training designs (typical coincidence probability), and the
    compensation gain 1/r -- our model."""
    from ..design.compensation import U_TYP, base_probability, efficiency
    from ..devices import PulseTrain

    plt = pyplot()
    ns_f = np.unique(np.geomspace(min(ns) / 2, max(ns) * 2, 40).astype(int))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        colors = plt.cm.viridis(np.linspace(0, 0.85, max(len(gaps), 1)))
        # curves of different gaps (and |x d|) often coincide -- the gap hardly matters here: one
        # line and one legend entry per group, so that no entry names a line hidden under another
        groups: list[tuple[np.ndarray, str, list[str], int]] = []
        for u, ls, what in ((U_TYP, "-", "typical"), (1.0, ":", "largest")):
            for i, gap in enumerate(gaps):
                r = np.array([float(efficiency(device, tr, min(1.0, base_probability(device, tr, lr, u)), timing=timing))
                              for tr in (PulseTrain.from_on_time(int(n), t_on, gap) for n in ns_f)])
                name = f"t_gap {time_label(gap)}, {what} |x d| = {u:g}"
                for curve, _, members, _ in groups:
                    if np.max(np.abs(curve - r)) < 5e-3:
                        members.append(name)
                        break
                else:
                    groups.append((r, ls, [name], i))
        for curve, ls, members, i in groups:
            # one member per legend line: a long single line would push the axes out of the figure
            label = members[0] if len(members) == 1 else ";\n".join(members) + " (coincide)"
            ax.plot(ns_f, curve, color=colors[i], ls=ls, label=label)
        for n in ns:
            ax.axvline(n, color="0.8", lw=0.8, zorder=0)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(f"pulses per update train N   (pw = {time_label(t_on)}/N)")
        ax.set_ylabel("program efficiency r = E[dW] / SGD (ratio)")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=7.5, loc="lower left")
        ax.set_title("Mean update / SGD update of the training designs"
                     + ("" if timing == "slot" else f" ({timing} timing)"))
        fig.text(0.5, -0.02, f"Our CTF model at the window centre; lr = {lr:g}; coincidence probability P = lr |x d| / "
                 "(N dw_min).\nOur compensation multiplies A*B by 1/r at the typical |x d|. Grey lines: the N of the runs.", ha="center", va="top", fontsize=8, color="0.3")
        fig.tight_layout()
    return fig
