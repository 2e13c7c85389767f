"""`ctfrpu device ...`: device-level experiments with OUR CTF model (docs/science.md §4).

Every option is read as text and checked here, so a bad value is a one-line ``error: ...``
(exit 2) rather than a usage block. Times need units: '2us', '500ns', '1ms', '2s' (a bare number
is refused, except 0).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import re
import textwrap
from pathlib import Path

import click

from ..errors import CtfrpuError
from ..units import format_time, parse_cli_time

_OURS = "The CTF model is OUR reconstruction (docs/science.md §4), not the papers' equations."
_DEFAULT_OUT = "results/device"


# -- option parsing (one-line errors) --------------------------------------------------------------

def _time(value: str, name: str, positive: bool = True) -> float:
    t = parse_cli_time(value, name)
    if positive and not t > 0:
        raise CtfrpuError(f"{name} must be > 0, got {value!r}")
    if not positive and t < 0:
        raise CtfrpuError(f"{name} must be >= 0, got {value!r}")
    return t


def _times(value: str, name: str, positive: bool = True) -> list[float]:
    items = [v for v in (s.strip() for s in value.split(",")) if v]
    if not items:
        raise CtfrpuError(f"{name}: give a comma-separated list of times, e.g. '1us,10us'")
    return [_time(v, name, positive) for v in items]


def _int(value: str, name: str, minimum: int) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise CtfrpuError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if not (math.isfinite(f) and f == int(f) and f >= minimum):
        raise CtfrpuError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(f)


def _float(value: str, name: str, lo: float | None = None, hi: float | None = None) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise CtfrpuError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(f) or (lo is not None and f < lo) or (hi is not None and f > hi):
        rng = f" in [{lo}, {hi}]" if lo is not None and hi is not None else (f" >= {lo}" if lo is not None else "")
        raise CtfrpuError(f"{name} must be a finite number{rng}, got {value!r}")
    return f


_VOLT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(V|mV|uV|µV)?\s*$")


def _volts(value: str, name: str) -> float:
    m = _VOLT.match(value)
    if not m:
        raise CtfrpuError(f"{name}: cannot read {value!r} as a voltage; use e.g. '0.2mV' or volts")
    v = float(m.group(1)) * {None: 1.0, "V": 1.0, "mV": 1e-3, "uV": 1e-6, "µV": 1e-6}[m.group(2)]
    if not (math.isfinite(v) and v >= 0):
        raise CtfrpuError(f"{name} must be >= 0, got {value!r}")
    return v


def _ctf(params_file: str | None, overrides: dict | None = None):
    from ..devices.registry import build_device

    return build_device("ctf", params_file or None, overrides or {})


def _source(params_file: str | None) -> str:
    return f"parameters from {Path(params_file).name}" if params_file else "illustrative preset"


def _echo_written(paths) -> None:
    for p in paths:
        click.echo(f"wrote {p}")


_params_opt = click.option("--device-params", "params_file", metavar="FILE", default=None,
                           help="TOML/JSON of CTF parameters (e.g. from `ctfrpu device fit`); default: our "
                                "illustrative preset (not measured data).")
_out_opt = click.option("--out", "out", metavar="DIR", default=_DEFAULT_OUT, show_default=True,
                        help="Output directory (created if needed).")
_force_opt = click.option("--force", is_flag=True, help="Overwrite earlier output files of this command in --out.")


@click.group("device")
def device_group() -> None:
    """Device-level experiments with our CTF program-time model.

    The CTF model (charge trap flash with a transient field enhancement e) is OUR reconstruction
    (docs/science.md §4) from the abstracts of Shrivastava et al., arXiv:2307.06088 / 2402.09792; its
    default numbers are our illustrative preset, not measured data. Times accept units
    ('2us', '500ns', '1ms').
    """


# -- response -------------------------------------------------------------------------------------

@device_group.command("response")
@click.option("--t-on", default="100us", show_default=True, metavar="TIME", help="Total ON time of every train.")
@click.option("--gaps", default="0.1us,1us,10us,100us,1ms", show_default=True, metavar="TIMES",
              help="Comma-separated gaps t_gap between pulses; one curve each.")
@click.option("--pw-min", default="0.5us", show_default=True, metavar="TIME", help="Shortest pulse width.")
@click.option("--pw-max", default="100us", show_default=True, metavar="TIME", help="Longest pulse width (at most --t-on).")
@click.option("--points", default="25", show_default=True, metavar="N", help="Number of log-spaced pulse widths.")
@_params_opt
@_out_opt
@_force_opt
def response_cmd(t_on, gaps, pw_min, pw_max, points, params_file, out, force) -> None:
    """Cumulative dV_T of trains of fixed total ON time against pulse width, one curve per gap.

    N = T_on / pw pulses (rounded to an integer; pw = T_on / N exactly). Noise-free nominal cells
    (no device-to-device or cycle-to-cycle variation), each train starting relaxed at V_T = vt_ref.
    Writes device_response.csv (pw_s, n_pulses, gap_s, dvt_V, ideal_dvt_V, ratio; after '#' comment
    lines) and device_response.png/.svg. Our CTF model, not measured data.
    """
    from ..lab import response as dr

    dev = _ctf(params_file)
    t_on_s = _time(t_on, "--t-on")
    kw = dict(t_on=t_on_s, gaps=_times(gaps, "--gaps", positive=False), pw_min=_time(pw_min, "--pw-min"),
              pw_max=_time(pw_max, "--pw-max"), points=_int(points, "--points", 2))
    if kw["pw_max"] > t_on_s:
        click.echo(f"note: --pw-max {pw_max} is longer than --t-on; using pw_max = t_on = {format_time(t_on_s)}")
    res, paths = dr.run(dev, out, source=_source(params_file), force=force, inputs=[params_file], **kw)
    click.echo(f"our CTF model ({_source(params_file)}), T_on = {format_time(res.t_on)}, ideal dV_T = "
               f"{res.ideal * 1e3:.4g} mV; fraction of ideal:")
    picks = sorted({int(i) for i in (0, len(res.pw) // 4, len(res.pw) // 2, (3 * len(res.pw)) // 4, len(res.pw) - 1)})
    click.echo("  gap \\ pw  " + "".join(f"{format_time(res.pw[j]):>9s}" for j in picks))
    for i, g in enumerate(res.gaps):
        click.echo(f"  {format_time(g):>9s} " + "".join(f"{res.ratio[i, j]:9.3f}" for j in picks))
    _echo_written(paths)


# -- trace ----------------------------------------------------------------------------------------

@device_group.command("trace")
@click.option("--pulses", default="10", show_default=True, metavar="N", help="Number of pulses N.")
@click.option("--pw", default="5us", show_default=True, metavar="TIME", help="Pulse width.")
@click.option("--gap", default="1us", show_default=True, metavar="TIME", help="Gap between pulses.")
@click.option("--erase", is_flag=True, help="Erase pulses (V_T goes down) instead of program pulses.")
@click.option("--vt0", default=None, metavar="VOLTS", help="Initial V_T in volts (default: vt_ref).")
@click.option("--e0", default="0", show_default=True, metavar="E", help="Initial enhancement e in [0, 1].")
@click.option("--samples", default="40", show_default=True, metavar="N", help="Samples per pulse and per gap.")
@_params_opt
@_out_opt
@_force_opt
def trace_cmd(pulses, pw, gap, erase, vt0, e0, samples, params_file, out, force) -> None:
    """One pulse train, pulse by pulse: V_T and the enhancement e against time.

    Sampled finely inside pulses and gaps with the model's closed form (e builds up during a pulse
    after the onset delay, relaxes in the gaps). Noise-free nominal cell. Writes device_trace.csv
    (t_s, vt_V, e, pulse, on; after '#' comment lines) and device_trace.png/.svg. Our CTF model, not
    measured data.
    """
    from ..lab import trace as dt

    dev = _ctf(params_file)
    tr, paths = dt.run(dev, out, source=_source(params_file), force=force, inputs=[params_file],
                       n=_int(pulses, "--pulses", 1), pw=_time(pw, "--pw"),
                       gap=_time(gap, "--gap", positive=False), sign=-1.0 if erase else 1.0,
                       vt0=None if vt0 is None else _float(vt0, "--vt0"), e0=_float(e0, "--e0", 0.0, 1.0),
                       samples=_int(samples, "--samples", 2))
    total = tr.vt_ends[-1] - tr.vt[0]
    ideal = tr.sign * tr.ideal_rate * tr.n * tr.pw
    click.echo(f"our CTF model ({_source(params_file)}): {tr.n} pulses of {format_time(tr.pw)}, gap "
               f"{format_time(tr.gap)}: dV_T = {total * 1e3:.4g} mV = {total / ideal:.3f} of the ideal "
               f"{ideal * 1e3:.4g} mV; e at the last pulse's end = {tr.e_ends[-1]:.3f}")
    _echo_written(paths)


# -- params ---------------------------------------------------------------------------------------

def field_docs(cls) -> dict[str, str]:
    """Attribute docstrings of a dataclass (the string literal after each field), from its source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@device_group.command("params")
@click.option("--device", "kind", default="ctf", show_default=True, metavar="KIND",
              help="Device kind: a registered kind (ctf, ideal, softbounds, or one added by register_device).")
@_params_opt
def params_cmd(kind, params_file) -> None:
    """Print a device's parameters with their meaning and units (defaults, or from --device-params)."""
    from ..devices.registry import build_device, device_class

    cls = device_class(kind)
    dev = build_device(kind, params_file or None)
    docs = field_docs(cls)
    times = getattr(cls, "time_fields", ())
    src = f"from {params_file}" if params_file else "defaults"
    click.echo(f"{getattr(cls, 'title', cls.__name__)} ({src}).")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    width = max(len(f.name) for f in fields)
    for f in fields:
        v = getattr(dev, f.name)
        if isinstance(v, bool):
            shown = "true" if v else "false"
        elif f.name in times:
            shown = f"{format_time(v)} ({v:g} s)"
        else:
            shown = f"{v:g}"
        doc = docs.get(f.name, "")
        click.echo(f"  {f.name:<{width}} = {shown:<22s} {doc}")
    line = dev.summary() if hasattr(dev, "summary") else ""
    if line:
        click.echo(f"  {line}")


# -- synth ----------------------------------------------------------------------------------------

@device_group.command("synth")
@click.option("--out", "out", metavar="FILE", default="synthetic_device_data.csv", show_default=True,
              help="CSV file to write (columns pw, N, t_gap, dVT, dVT_err).")
@click.option("--t-on", default="100us", show_default=True, metavar="TIMES", help="Comma-separated total ON times of the trains.")
@click.option("--gaps", default="0.1us,1us,3us,10us,30us,100us,1ms", show_default=True, metavar="TIMES", help="Comma-separated gaps.")
@click.option("--pw-min", default="1us", show_default=True, metavar="TIME", help="Shortest pulse width.")
@click.option("--pw-max", default="100us", show_default=True, metavar="TIME", help="Longest pulse width.")
@click.option("--points", default="12", show_default=True, metavar="N", help="Pulse widths per (ON time, gap).")
@click.option("--noise-rel", default="0.03", show_default=True, metavar="X", help="Relative Gaussian noise of dVT.")
@click.option("--noise-abs", default="0.2mV", show_default=True, metavar="VOLTS", help="Absolute Gaussian noise of dVT (V, or '0.2mV').")
@click.option("--seed", default="0", show_default=True, metavar="N", help="Random seed.")
@click.option("--no-err", is_flag=True, help="Do not write the dVT_err column (the fit then estimates the noise).")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="Override a true CTF parameter, e.g. --set tau_off=50us (repeatable).")
@_params_opt
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
def synth_cmd(out, t_on, gaps, pw_min, pw_max, points, noise_rel, noise_abs, seed, no_err, sets, params_file,
              force) -> None:
    """Write synthetic measurements for trying `ctfrpu device fit`.

    dVT of our CTF model (true parameters: --device-params / --set, default our illustrative
    preset) for program trains of fixed ON time, plus Gaussian noise of std
    sqrt((noise_rel dVT)^2 + noise_abs^2). Synthetic data from our model, not measurements.
    """
    from ..devices.fit import parse_fix, synthesize, write_measurements
    from ..outfiles import check_outputs

    check_outputs([out], inputs=[params_file], force=force)
    dev = _ctf(params_file, parse_fix(sets))
    m = synthesize(dev, t_on=_times(t_on, "--t-on"), gaps=_times(gaps, "--gaps", positive=False),
                   pw_min=_time(pw_min, "--pw-min"), pw_max=_time(pw_max, "--pw-max"),
                   points=_int(points, "--points", 2), noise_rel=_float(noise_rel, "--noise-rel", 0.0),
                   noise_abs=_volts(noise_abs, "--noise-abs"), seed=_int(seed, "--seed", 0), with_err=not no_err)
    truth = ", ".join(f"{k}={getattr(dev, k):g}" for k in ("kappa_p", "a_p", "tau_on_p", "t_d_p", "tau_off"))
    path = write_measurements(m, out, comments=(
        "synthetic measurements from OUR CTF model (ctfrpu device synth), not measured data",
        f"true parameters: {truth}; noise_rel={noise_rel}, noise_abs={noise_abs}, seed={seed}",
        "columns: pw (s), N, t_gap (s), dVT (V)" + ("" if no_err else ", dVT_err (V, 1 sigma)"),
    ))
    click.echo(f"{len(m)} synthetic trains (true: {truth})")
    click.echo(f"wrote {path}")


# -- fit ------------------------------------------------------------------------------------------

@device_group.command("fit")
@click.argument("data", required=False, metavar="DATA.csv")
@click.option("--out", "out", metavar="FILE", default=None,
              help="Parameter TOML to write ([params] + [fit]); default: DATA_fit.toml next to DATA.")
@click.option("--plot", "plot", metavar="FILE", default=None, help="Also write a data-vs-fit figure (PNG + SVG).")
@click.option("--fix", "fixes", multiple=True, metavar="NAME=VALUE",
              help="Fix a parameter (removed from the free set), e.g. --fix tau_off=20us (repeatable).")
@_params_opt
@click.option("--no-mirror-erase", is_flag=True,
              help="Keep the base device's erase parameters instead of copying the fitted program ones.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
def fit_cmd(data, out, plot, fixes, params_file, no_mirror_erase, force) -> None:
    """Fit our CTF model to measured pulse-train responses.

    DATA.csv has a header with the columns pw (s, or with units), N, t_gap (s, or with units),
    dVT (V) and optionally dVT_err (V, 1 sigma) and vt0 (V); '#' lines are comments. Each row is
    one program train on a relaxed cell. Fits kappa_p, a_p, tau_on_p, t_d_p, tau_off (bounded
    least squares in log space); the rest come from --device-params (default: our illustrative
    preset) or --fix. Prints each parameter with its 1-sigma uncertainty, chi^2_red / RMS and R^2,
    and writes a TOML that --device-params accepts.
    """
    from ..devices.fit import PLAUSIBLE_PW_MAX, fit, parse_fix, read_measurements, write_params

    if not data:
        raise CtfrpuError("device fit: give the data file, e.g. `ctfrpu device fit data.csv` "
                          "(try `ctfrpu device synth` for an example)")
    out_path = Path(out) if out else Path(data).with_name(Path(data).stem + "_fit.toml")
    from ..outfiles import check_outputs

    plots = [Path(plot).with_suffix(s) for s in (".png", ".svg")] if plot else []
    check_outputs([out_path, *plots], inputs=[data, params_file], force=force)
    m = read_measurements(data)
    if float(m.pw.max()) > PLAUSIBLE_PW_MAX:
        click.echo(f"warning: pulse widths up to {float(m.pw.max()):.3g} s: bare numbers in {data} are seconds; "
                   "if they are microseconds, write them with their unit (e.g. 5us)")
    base = _ctf(params_file)
    res = fit(m, base=base, fix=parse_fix(fixes), mirror_erase=not no_mirror_erase)
    click.echo(f"fit of our CTF model to {data} ({len(m)} trains, "
               f"{'weighted by dVT_err' if res.weighted else 'unweighted: noise estimated from the residuals'}):")
    for line in res.summary_lines():
        click.echo(line)
    if not res.success:
        click.echo(f"warning: the optimiser did not converge: {res.message}")
    if res.at_bound:
        click.echo(f"warning: {', '.join(res.at_bound)} at the search bound: the data do not constrain "
                   "it; consider --fix")
    loose = [k for k in res.free if not math.isfinite(res.sigma[k]) and k not in res.at_bound]
    if loose:
        click.echo(f"warning: the data do not determine {', '.join(loose)} (infinite uncertainty; e.g. no gap "
                   f"short enough to see the relaxation); fix it with --fix {loose[0]}=VALUE")
    for a, b, r in res.strong_correlations():
        click.echo(f"note: {a} and {b} are strongly correlated (rho = {r:+.3f}): the data fix a combination "
                   "of the two better than either alone")
    if res.chi2_red is not None and res.chi2_red > 3:
        click.echo("warning: chi2_red > 3: the model does not describe the data within dVT_err, or dVT_err "
                   "is underestimated; uncertainties are then too small")
    written = [write_params(res, out_path, str(data), mirror_erase=not no_mirror_erase)]
    if plot:
        from ..lab.fit_plot import plot_fit

        written += plot_fit(m, res, plot)
    _echo_written(written)
    click.echo(f"use it with: --device-params {out_path}")


COMMANDS: list = [device_group]
