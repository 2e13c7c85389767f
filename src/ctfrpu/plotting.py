"""Shared figure and table output: the one pyplot set-up, PNG+SVG saving, CSV tables and time
labels used by the device lab, the explore map and the report (matplotlib, Agg backend).

Every file goes through :mod:`ctfrpu.outfiles`, so figures and tables are written atomically and
never through a symbolic link.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterable, Sequence

from .outfiles import atomic_path
from .units import format_time

STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 12,
    "legend.fontsize": 9.5,
    "legend.title_fontsize": 10,
    "xtick.labelsize": 10.5,
    "ytick.labelsize": 10.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 4.5,
    "svg.fonttype": "none",
}
"""Style of the stand-alone device figures (``ctfrpu device response|trace|fit --plot``)."""

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (works headless, in tests, in CI)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, stem: str | Path, dpi: int = 200) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically, close ``fig``; returns the two paths.
    A write error is a one-line CtfrpuError and leaves any earlier file unchanged."""
    plt = pyplot()
    stem = Path(stem)
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")]
    try:
        for p in paths:
            with atomic_path(p) as tmp:
                fig.savefig(tmp, dpi=dpi, bbox_inches="tight", pad_inches=0.08, format=p.suffix[1:])
    finally:
        plt.close(fig)
    return paths


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence], comments: Sequence[str] = (),
              digits: int = 10) -> Path:
    """CSV with a header row, written atomically; ``comments`` go first as '# ...' lines (pandas:
    ``comment='#'``). Floats are written with ``digits`` significant digits (inf/nan as Python writes them)."""
    def fmt(v):
        if isinstance(v, float):
            return str(float(v)) if not math.isfinite(v) else f"{v:.{digits}g}"  # 'nan', 'inf' (numpy too)
        return v

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        for c in comments:
            fh.write(f"# {c}\n")
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow([fmt(v) for v in r])
    return path


def time_label(seconds: float) -> str:
    """A time for legends and tables: 1e-6 -> '1 µs', 1e-7 -> '100 ns', 0 -> '0'."""
    if seconds == 0:
        return "0"
    t = format_time(seconds)
    for unit, nice in (("us", " µs"), ("ns", " ns"), ("ms", " ms")):
        if t.endswith(unit):
            return t[: -len(unit)] + nice
    return t[:-1] + " s"


def caption(fig, text: str, y: float = -0.01) -> None:
    """A small caption under the axes (kept inside the saved bounding box)."""
    fig.text(0.5, y, text, ha="center", va="top", fontsize=8.5, color="0.3")
