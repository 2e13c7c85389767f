"""Where can our model show what the paper found? A cheap map from the design helper -- OURS.

The system paper (arXiv:2402.09792) reports (i) accuracy near software and insensitive to t_gap at
N ~ 1000, (ii) t_gap-dependent accuracy at N < 500. Our device model is a reconstruction, so
whether it can express these depends on choices the abstracts leave open: the timing model of a
cell's coincidences (docs/science.md §8), how coarse a pulse is (the weight change W of a
fully-ON train: dw_min = W / N), the enhancement's time constants tau_on / tau_off, and the
compensation kind. This module evaluates, for every point of such a grid, the design helper's
exact per-update predictions (:func:`ctfrpu.design.helper.evaluate_design`: bias and variance of one
update of a typical output-layer cell) at every (N, t_gap), and two necessary conditions:

* ``large_n_better``: the predicted relative mean-square error of one update (bias^2 + variance,
  compensated if the point compensates) at the largest N is below that at the smallest N for
  every gap -- needed for (i)'s "approaches software as N grows";
* ``gap_matters_more_at_small_n``: the spread of that error over the gaps (max - min, absolute:
  the same change of error costs more accuracy where the error is already large) is larger at the
  smallest N than at the largest, by more than 0.1 % of the largest error -- needed for (i)
  together with (ii).

These are predictions for single updates, not accuracies: a point passing both is *promising*
and must be confirmed by training runs (``ctfrpu train`` / the sweep engine) with paired seeds and
the verdict rules of docs/science.md §7. A point failing either cannot show both findings through
this mechanism (the per-update error is what training integrates).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import asdict, dataclass

import numpy as np

from .helper import _train, evaluate_design
from ..devices import CTFDevice
from ..errors import CtfrpuError
from ..outfiles import check_outputs, figure_outputs, output_dir
from ..plotting import pyplot, save_figure, write_csv

DEFAULT_TIMINGS = ("slot", "burst", "train")
DEFAULT_COARSENESS = (1.0, 5.0)
"""W: weight change of a fully-ON train (1 = today's preset: dw_min = 1 / N)."""
DEFAULT_TAU_ON = (3e-6, 30e-6)
DEFAULT_TAU_OFF = (20e-6, 10e-3)
DEFAULT_COMPENSATION = ("none", "gain", "stretch")


@dataclass(frozen=True)
class MapPoint:
    timing: str
    coarseness: float
    tau_on: float
    tau_off: float
    compensation: str
    err_small: tuple[float, ...]
    """Predicted relative mean-square error per gap at the smallest N."""
    err_large: tuple[float, ...]
    """The same at the largest N."""
    large_n_better: bool
    gap_matters_more_at_small_n: bool

    @property
    def promising(self) -> bool:
        return self.large_n_better and self.gap_matters_more_at_small_n

    def row(self) -> dict:
        d = asdict(self)
        d["err_small"] = ";".join(f"{v:.4g}" for v in self.err_small)
        d["err_large"] = ";".join(f"{v:.4g}" for v in self.err_large)
        d["promising"] = self.promising
        return d


def device_for(base: CTFDevice, coarseness: float, tau_on: float, tau_off: float, t_on: float) -> CTFDevice:
    """``base`` with tau_on (both polarities), tau_off and v_unit set so that a fully-ON train of
    ON time t_on moves the weight by ``coarseness`` (long-pulse limit)."""
    params = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}
    params.update(tau_on_p=tau_on, tau_on_e=tau_on, tau_off=tau_off,
                  v_unit=base.kappa_p * (1.0 + base.a_p) * t_on / coarseness)
    return CTFDevice(**params)


def _error(point, compensation: str) -> float:
    if compensation == "none":
        return point.score
    if compensation == "gain":
        return point.score_comp
    return point.score_stretch


def explore(base: CTFDevice | None = None, timings=DEFAULT_TIMINGS, coarseness=DEFAULT_COARSENESS,
            tau_on=DEFAULT_TAU_ON, tau_off=DEFAULT_TAU_OFF, compensation=DEFAULT_COMPENSATION,
            ns=(100, 1000), gaps=(1e-7, 1e-6, 1e-5, 1e-4), lr: float = 0.1, u: float = 0.2,
            t_on: float = 5e-3) -> list[MapPoint]:
    """The map over timing x W x tau_on x tau_off x compensation (see the module docstring)."""
    base = CTFDevice() if base is None else base
    if len(ns) < 2 or len(gaps) < 2:
        raise CtfrpuError("explore: need at least two N and two gaps")
    bad = set(compensation) - set(DEFAULT_COMPENSATION)
    if bad:
        raise CtfrpuError(f"explore: unknown compensation kind(s) {sorted(bad)}; choose from none, gain, stretch")
    n_small, n_large = min(ns), max(ns)
    out = []
    for tm, w, ton, toff in itertools.product(timings, coarseness, tau_on, tau_off):
        dev = device_for(base, w, ton, toff, t_on)
        pts = {(n, g): evaluate_design(dev, _train(n, g, "on_time", t_on, 0.0), lr, u, u_gain=u, timing=tm)
               for n in (n_small, n_large) for g in gaps}
        for comp in compensation:
            es = np.array([_error(pts[(n_small, g)], comp) for g in gaps])
            el = np.array([_error(pts[(n_large, g)], comp) for g in gaps])
            out.append(MapPoint(tm, float(w), float(ton), float(toff), comp, tuple(es), tuple(el),
                                bool(np.all(el < es)), bool(np.ptp(es) > np.ptp(el) + 1e-3 * es.max())))
    return out


def map_figure(points: list[MapPoint], mark: tuple[float, float, float] | None = None):
    """The map as a matplotlib Figure: rows (timing, compensation), columns (W, tau_on, tau_off);
    ``mark`` = (W, tau_on, tau_off) outlines a column (e.g. the chosen preset's)."""
    import matplotlib

    plt = pyplot()
    cols = sorted({(p.coarseness, p.tau_on, p.tau_off) for p in points})
    lines = sorted({(p.timing, p.compensation) for p in points})
    grid = np.zeros((len(lines), len(cols)))
    for p in points:
        grid[lines.index((p.timing, p.compensation)), cols.index((p.coarseness, p.tau_on, p.tau_off))] = \
            2 if p.promising else (1 if p.large_n_better else 0)
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 3, 0.4 * len(lines) + 2))
    ax.imshow(grid, cmap=matplotlib.colors.ListedColormap(["#d9d9d9", "#9ecae1", "#31a354"]), vmin=0, vmax=2,
              aspect="auto")
    ax.set_xticks(range(len(cols)), [f"W={c[0]:g}\ntau_on={c[1] * 1e6:g}us\ntau_off={c[2] * 1e6:g}us" for c in cols],
                  fontsize=7)
    ax.set_yticks(range(len(lines)), [f"{t} / {c}" for t, c in lines], fontsize=7)
    if mark is not None:
        hit = [i for i, c in enumerate(cols) if np.allclose(c, mark, rtol=1e-9)]
        for i in hit:
            ax.add_patch(matplotlib.patches.Rectangle((i - 0.5, -0.5), 1, len(lines), fill=False, lw=2.5, ec="k"))
    ax.set_title("Predicted per-update error (our model): green = both necessary conditions hold,\n"
                 "blue = only 'large N better', grey = neither" + ("; outlined: the chosen preset" if mark else ""),
                 fontsize=8)
    fig.text(0.5, 0.005, "OUR reconstruction (docs/science.md §8, §9): single-update predictions, to be "
             "confirmed by training runs.", ha="center", va="bottom", fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def write_map(points: list[MapPoint], out_dir, mark: tuple[float, float, float] | None = None, force: bool = False,
              inputs=()) -> list:
    """``explore_map.csv`` and ``explore_map.png`` (+ .svg) into ``out_dir``, atomically; returns the paths.
    Earlier files of that name are replaced only with ``force`` (:func:`ctfrpu.outfiles.check_outputs`)."""
    check_outputs(map_outputs(out_dir), inputs=inputs, force=force)
    out = output_dir(out_dir)
    rows = [p.row() for p in points]
    csv_path = write_csv(out / "explore_map.csv", list(rows[0]), [list(r.values()) for r in rows])
    return [csv_path, *save_figure(map_figure(points, mark), out / "explore_map", dpi=130)]


def map_outputs(out_dir) -> list:
    """The files :func:`write_map` writes into ``out_dir``."""
    return figure_outputs(out_dir, "explore_map")


def preset_point(device: CTFDevice, t_on: float = 5e-3) -> tuple[float, float, float]:
    """(W, tau_on, tau_off) of a device: where it sits on the map (inverse of :func:`device_for`)."""
    return (float(f"{device.kappa_p * (1.0 + device.a_p) * t_on / device.v_unit:.6g}"), float(device.tau_on_p),
            float(device.tau_off))


def map_for(params_file: str | None):
    """The default map and the place on it of the CTF parameters in ``params_file`` (a path or
    ``preset:NAME``; None: the illustrative preset)."""
    from ..devices import build_device

    return explore(), preset_point(build_device("ctf", params_file, {}))
