"""`ctfrpu explore`: where can OUR model show the system paper's findings? (docs/science.md §9)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import CtfrpuError


def _floats(text: str, what: str) -> tuple[float, ...]:
    from ..units import parse_time

    try:
        vals = tuple(parse_time(v.strip(), what) if what != "coarseness" else float(v)
                     for v in text.split(",") if v.strip())
    except ValueError:
        raise CtfrpuError(f"--{what}: expected a comma-separated list, got {text!r}") from None
    if not vals or any(not v > 0 for v in vals):
        raise CtfrpuError(f"--{what}: need positive values, got {text!r}")
    return vals


@click.command("explore")
@click.option("--out", "out_dir", default="out/explore", show_default=True, help="Output folder (CSV, PNG, SVG).")
@click.option("--device-params", "params_file", default=None, help="Base CTF parameters (TOML/JSON); default our "
              "illustrative preset. Must keep the device paper's three trends.")
@click.option("--timings", default="slot,burst,train", show_default=True, help="Timing models.")
@click.option("--coarseness", default="1,5", show_default=True,
              help="W: weight change of a fully-ON train (dw_min = W / N).")
@click.option("--tau-on", "tau_on", default="3us,30us", show_default=True)
@click.option("--tau-off", "tau_off", default="20us,10ms", show_default=True)
@click.option("--compensation", default="none,gain,stretch", show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an earlier map in --out.")
def explore_cmd(out_dir, params_file, timings, coarseness, tau_on, tau_off, compensation, lr, force):
    """Map timing model x W x tau_on x tau_off x compensation by the design helper's exact
    per-update predictions (OUR model): which points meet the necessary conditions for the paper's
    findings (large N better; the gap matters more at small N). Cheap (seconds); promising points
    must then be confirmed by training runs with paired seeds."""
    from ..devices import build_device
    from ..devices.timing import TIMINGS
    from ..devices.trends import require_trends
    from ..design.explore import explore, map_outputs, write_map
    from ..outfiles import check_outputs

    base = build_device("ctf", params_file, {})
    require_trends(base, params_file or "the illustrative preset")
    tms = tuple(t.strip() for t in timings.split(",") if t.strip())
    for t in tms:
        if t not in TIMINGS:
            raise CtfrpuError(f"unknown timing model {t!r}; choose from {', '.join(TIMINGS)}")
    check_outputs(map_outputs(out_dir), inputs=[params_file], force=force)      # before the work
    pts = explore(base, tms, _floats(coarseness, "coarseness"), _floats(tau_on, "tau-on"), _floats(tau_off, "tau-off"),
                  tuple(c.strip() for c in compensation.split(",") if c.strip()), lr=lr)
    paths = write_map(pts, Path(out_dir), force=True)          # (checked above)
    good = [p for p in pts if p.promising]
    click.echo(f"{len(good)} of {len(pts)} points meet both necessary conditions (OUR model, predictions):")
    for p in good:
        click.echo(f"  timing={p.timing:6} W={p.coarseness:g} tau_on={p.tau_on * 1e6:g}us tau_off={p.tau_off * 1e6:g}us "
                   f"compensation={p.compensation}")
    click.echo("wrote " + ", ".join(str(p) for p in paths))


COMMANDS = [explore_cmd]
