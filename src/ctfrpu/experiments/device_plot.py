"""Shared figure style and file output of the device experiments (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import CtfrpuError

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
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "svg.fonttype": "none",
}


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (works headless, in tests, in CI)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def out_dir(path: str | Path) -> Path:
    """Create (if needed) and return the output directory; a one-line error if impossible."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CtfrpuError(f"cannot create output directory {p}: {err.strerror or err}") from None
    if not p.is_dir():
        raise CtfrpuError(f"output path {p} is not a directory")
    return p


def save_figure(fig, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg``; returns the paths."""
    plt = pyplot()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    try:
        for p in paths:
            fig.savefig(p, dpi=STYLE["savefig.dpi"], bbox_inches="tight", pad_inches=0.08)
    except OSError as err:
        raise CtfrpuError(f"cannot write figure {stem}: {err.strerror or err}") from None
    finally:
        plt.close(fig)
    return paths


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence], comments: Sequence[str] = ()) -> Path:
    """CSV with a header row; ``comments`` go first as '# ...' lines (pandas: ``comment='#'``).

    Floats are written with 10 significant digits.
    """
    def fmt(v):
        if isinstance(v, float):
            return repr(v) if not math.isfinite(v) else f"{v:.10g}"
        return v

    try:
        with open(path, "w", newline="") as fh:
            for c in comments:
                fh.write(f"# {c}\n")
            w = csv.writer(fh)
            w.writerow(header)
            for r in rows:
                w.writerow([fmt(v) for v in r])
    except OSError as err:
        raise CtfrpuError(f"cannot write {path}: {err.strerror or err}") from None
    return path


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def caption(fig, text: str, y: float = -0.01) -> None:
    """A small caption under the axes (kept inside the saved bounding box)."""
    fig.text(0.5, y, text, ha="center", va="top", fontsize=8.5, color="0.3")
