"""Fit OUR CTF model (:class:`CTFDevice`, docs/science.md §4) to measured pulse-train responses.

Measurements are a CSV file with one row per pulse train, header names exactly (case-insensitive)::

    pw       pulse width, seconds (a plain number) or a time with units ("2us")
    N        number of pulses in the train (integer >= 1)
    t_gap    gap between consecutive pulses, seconds or with units (>= 0)
    dVT      measured cumulative threshold-voltage shift of the train, volts (program: > 0)
    dVT_err  optional: 1-sigma uncertainty of dVT, volts (> 0); rows are then weighted by it
    vt0      optional: V_T at the start of the train, volts (default: vt_ref of the base device)

Lines starting with '#' and blank lines are skipped; other columns are ignored. Every train is
modelled as program pulses on a nominal, noise-free cell that starts fully relaxed (e = 0), with
V_T updated pulse by pulse (:func:`ctfrpu.devices.ctf_fast.train_dvt`).

The free parameters (default ``kappa_p, a_p, tau_on_p, t_d_p, tau_off``: the ones program trains
constrain) are fitted with :func:`scipy.optimize.least_squares` (trust-region reflective, bounded,
in log space: x = ln p), from several starting points. 1-sigma uncertainties come from the
Jacobian at the optimum, ``cov_x = (J^T J)^-1``, scaled by the residual variance
``sum r^2 / (n - p)`` when no dVT_err is given (with dVT_err they are taken as absolute), and
propagated to ``sigma_p = p sigma_x``. Quality: reduced chi^2 (with dVT_err), RMS residual and R^2.

Synthetic measurements from known parameters (:func:`synthesize`) let users and tests try the fit.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CtfrpuError
from ..units import parse_time
from .ctf import TIME_FIELDS, CTFDevice
from .ctf_fast import train_dvt
from .pulses import check_gaps, pw_grid

FIT_PARAMS = ("kappa_p", "a_p", "tau_on_p", "t_d_p", "tau_off")
"""Parameters that program-train measurements constrain; fitted unless fixed."""

BOUNDS = {
    "kappa_p": (1e-6, 1e12),     # V/s
    "a_p": (1e-6, 1e4),
    "tau_on_p": (1e-11, 10.0),   # s
    "t_d_p": (1e-11, 10.0),      # s (effectively 0 at the lower bound)
    "tau_off": (1e-11, 1e4),     # s
}
"""Search bounds of the free parameters (positive, so the fit runs in log space)."""

UNITS = {"kappa_p": "V/s", "a_p": "", "tau_on_p": "s", "t_d_p": "s", "tau_off": "s"}

REQUIRED = ("pw", "N", "t_gap", "dVT")
OPTIONAL = ("dVT_err", "vt0")
MIRROR = {"kappa_p": "kappa_e", "a_p": "a_e", "tau_on_p": "tau_on_e", "t_d_p": "t_d_e"}


@dataclass
class Measurements:
    """Pulse-train measurements (arrays of equal length; SI units)."""

    pw: np.ndarray
    n: np.ndarray
    gap: np.ndarray
    dvt: np.ndarray
    err: np.ndarray | None = None
    vt0: np.ndarray | None = None
    source: str = "data"

    def __len__(self) -> int:
        return int(self.pw.size)


# -- reading and writing measurements -------------------------------------------------------------

def _cell_time(value: str, name: str, where: str) -> float:
    try:
        return parse_time(value.strip(), name)
    except CtfrpuError as err:
        raise CtfrpuError(f"{where}: {err}") from None


def _cell_float(value: str, name: str, where: str) -> float:
    try:
        v = float(value.strip())
    except ValueError:
        raise CtfrpuError(f"{where}: {name} = {value.strip()!r} is not a number") from None
    return v


def read_measurements(path: str | Path) -> Measurements:
    """Read and check a measurement CSV (see the module docstring); one-line errors naming the line."""
    p = Path(path)
    if not p.is_file():
        raise CtfrpuError(f"data file not found: {p}")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise CtfrpuError(f"{p}: cannot read: {err}") from None
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise CtfrpuError(f"{p}: no header and no data (expected columns {', '.join(REQUIRED)})")
    try:
        rows = list(csv.reader(io.StringIO("\n".join(ln for _, ln in lines))))
    except csv.Error as err:
        raise CtfrpuError(f"{p}: malformed CSV: {err}") from None
    header = [h.strip() for h in rows[0]]
    lookup = {h.lower(): i for i, h in enumerate(header)}
    if len(lookup) != len(header):
        raise CtfrpuError(f"{p}: duplicate column names in header {header}")
    missing = [c for c in REQUIRED if c.lower() not in lookup]
    if missing:
        raise CtfrpuError(f"{p}: missing column(s) {', '.join(missing)}; header is {','.join(header)}; "
                          f"need {','.join(REQUIRED)} (optional {','.join(OPTIONAL)})")
    col = {c: lookup.get(c.lower()) for c in REQUIRED + OPTIONAL}
    out = {c: [] for c in REQUIRED + OPTIONAL if col[c] is not None}
    for (lineno, _), row in zip(lines[1:], rows[1:]):
        where = f"{p}:{lineno}"
        if len(row) != len(header):
            raise CtfrpuError(f"{where}: {len(row)} fields, header has {len(header)}")
        pw = _cell_time(row[col["pw"]], "pw", where)
        gap = _cell_time(row[col["t_gap"]], "t_gap", where)
        n = _cell_float(row[col["N"]], "N", where)
        dvt = _cell_float(row[col["dVT"]], "dVT", where)
        if not pw > 0:
            raise CtfrpuError(f"{where}: pulse width pw must be > 0, got {pw!r}")
        if not gap >= 0:
            raise CtfrpuError(f"{where}: t_gap must be >= 0, got {gap!r}")
        if not (math.isfinite(n) and n >= 1 and n == round(n)):
            raise CtfrpuError(f"{where}: N must be an integer >= 1, got {row[col['N']].strip()!r}")
        if not math.isfinite(dvt):
            raise CtfrpuError(f"{where}: dVT must be finite, got {row[col['dVT']].strip()!r}")
        out["pw"].append(pw); out["N"].append(int(round(n))); out["t_gap"].append(gap); out["dVT"].append(dvt)
        if col["dVT_err"] is not None:
            err = _cell_float(row[col["dVT_err"]], "dVT_err", where)
            if not (math.isfinite(err) and err > 0):
                raise CtfrpuError(f"{where}: dVT_err must be finite and > 0, got {row[col['dVT_err']].strip()!r}")
            out["dVT_err"].append(err)
        if col["vt0"] is not None:
            v = _cell_float(row[col["vt0"]], "vt0", where)
            if not math.isfinite(v):
                raise CtfrpuError(f"{where}: vt0 must be finite, got {row[col['vt0']].strip()!r}")
            out["vt0"].append(v)
    if not out["pw"]:
        raise CtfrpuError(f"{p}: no data rows")
    arr = {k: np.asarray(v, dtype=np.int64 if k == "N" else np.float64) for k, v in out.items()}
    return Measurements(pw=arr["pw"], n=arr["N"], gap=arr["t_gap"], dvt=arr["dVT"], err=arr.get("dVT_err"),
                        vt0=arr.get("vt0"), source=str(p))


def write_measurements(m: Measurements, path: str | Path, comments=()) -> Path:
    """Write measurements in the CSV format :func:`read_measurements` reads."""
    from ..outfiles import atomic_path, output_dir

    p = Path(path)
    cols = ["pw", "N", "t_gap", "dVT"] + (["dVT_err"] if m.err is not None else []) + (["vt0"] if m.vt0 is not None else [])
    output_dir(p.parent)
    with atomic_path(p) as tmp, open(tmp, "w", newline="") as fh:
        for c in comments:
            fh.write(f"# {c}\n")
        w = csv.writer(fh)
        w.writerow(cols)
        for i in range(len(m)):
            row = [f"{m.pw[i]:.10g}", int(m.n[i]), f"{m.gap[i]:.10g}", f"{m.dvt[i]:.10g}"]
            if m.err is not None:
                row.append(f"{m.err[i]:.10g}")
            if m.vt0 is not None:
                row.append(f"{m.vt0[i]:.10g}")
            w.writerow(row)
    return p


# -- model ------------------------------------------------------------------------------------------

def nominal(device: CTFDevice) -> CTFDevice:
    """Noise-free nominal cell (no device-to-device or cycle-to-cycle variation)."""
    return dataclasses.replace(device, kappa_dtod=0.0, window_dtod=0.0, dv_std=0.0)


def model_dvt(device: CTFDevice, m: Measurements) -> np.ndarray:
    """Model dV_T (V) of every measured train: program pulses on a relaxed nominal cell."""
    dvt, _ = train_dvt(nominal(device), m.pw, m.n, m.gap, 1.0, vt0=m.vt0)
    return dvt


PLAUSIBLE_PW_MAX = 0.1
"""Seconds: a measured pulse width above this is implausible for a CTF program pulse (the study's
whole ON time is 5 ms) -- most likely microseconds written as bare numbers (read as seconds)."""

UNDETERMINED_RCOND = 1e-12
"""A direction of J^T J (log parameters) whose curvature is below this fraction of the largest is
one the data do not constrain; its parameters get an infinite uncertainty."""


def synthesize(device: CTFDevice, t_on=(100e-6,), gaps=(0.1e-6, 1e-6, 3e-6, 10e-6, 30e-6, 100e-6, 1e-3), pw_min: float = 1e-6,
               pw_max: float = 100e-6, points: int = 12, noise_rel: float = 0.03, noise_abs: float = 2e-4,
               seed: int = 0, with_err: bool = True) -> Measurements:
    """Synthetic measurements (OUR model plus Gaussian noise): for every ON time and gap, ``points``
    widths log-spaced in [pw_min, pw_max] (N = round(t_on / pw), pw = t_on / N) with
    ``sigma = sqrt((noise_rel dV)^2 + noise_abs^2)`` volts; ``dVT_err = sigma`` when ``with_err``."""
    t_on = np.atleast_1d(np.asarray(t_on, dtype=np.float64))
    gaps = check_gaps(gaps)
    if not (math.isfinite(noise_rel) and noise_rel >= 0 and math.isfinite(noise_abs) and noise_abs >= 0):
        raise CtfrpuError("synthesize: noise levels must be finite and >= 0")
    if with_err and noise_rel == 0 and noise_abs == 0:
        raise CtfrpuError("synthesize: zero noise gives zero uncertainties; set a noise level or omit dVT_err")
    pw, n, gap = [], [], []
    for t in t_on:
        nn, pp = pw_grid(float(t), pw_min, pw_max, points)
        for g in gaps:
            pw.append(pp); n.append(nn); gap.append(np.full(nn.size, g))
    m = Measurements(pw=np.concatenate(pw), n=np.concatenate(n), gap=np.concatenate(gap), dvt=np.zeros(0),
                     source="synthetic")
    clean = model_dvt(device, dataclasses.replace(m, dvt=np.zeros(len(m))))
    sigma = np.sqrt((noise_rel * clean) ** 2 + noise_abs ** 2)
    rng = np.random.default_rng(seed)
    return dataclasses.replace(m, dvt=clean + sigma * rng.standard_normal(clean.size),
                               err=sigma if with_err else None)


# -- fitting ----------------------------------------------------------------------------------------

def parse_fix(items) -> dict:
    """``["tau_off=20us", "a_p=1"]`` -> {"tau_off": 2e-05, "a_p": 1.0} (times accept units)."""
    names = {f.name for f in dataclasses.fields(CTFDevice) if f.init}
    out = {}
    for item in items or ():
        if "=" not in item:
            raise CtfrpuError(f"--fix expects name=value, got {item!r}")
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in names:
            raise CtfrpuError(f"--fix: unknown ctf device parameter {key!r}; valid: {', '.join(sorted(names))}")
        if key == "carry_enhancement":
            if value.lower() not in ("true", "false"):
                raise CtfrpuError(f"--fix carry_enhancement must be true or false, got {value!r}")
            out[key] = value.lower() == "true"
        elif key in TIME_FIELDS:
            out[key] = parse_time(value, key)
        else:
            try:
                out[key] = float(value)
            except ValueError:
                raise CtfrpuError(f"--fix {key}: {value!r} is not a number") from None
    return out


@dataclass
class FitResult:
    """Outcome of :func:`fit`."""

    device: CTFDevice
    """Device with the fitted values (and the fixed ones)."""
    free: tuple[str, ...]
    values: dict[str, float]
    sigma: dict[str, float]
    """1-sigma uncertainties (inf/nan if not constrained)."""
    at_bound: tuple[str, ...]
    n_points: int
    dof: int
    weighted: bool
    chi2_red: float | None
    """Reduced chi^2 (only with dVT_err)."""
    rms: float
    """RMS residual, V."""
    r2: float
    model: np.ndarray
    residuals: np.ndarray
    """data - model, V."""
    success: bool
    message: str
    nfev: int
    fixed: dict = field(default_factory=dict)
    corr: np.ndarray | None = None
    """Correlation matrix of the free parameters (log space), in ``free`` order."""

    def strong_correlations(self, threshold: float = 0.95) -> list[tuple[str, str, float]]:
        """Pairs of free parameters whose estimates are correlated beyond ``threshold`` (log space)."""
        out = []
        if self.corr is None:
            return out
        for i in range(len(self.free)):
            for j in range(i + 1, len(self.free)):
                r = float(self.corr[i, j])
                if math.isfinite(r) and abs(r) > threshold:
                    out.append((self.free[i], self.free[j], r))
        return out

    def summary_lines(self) -> list[str]:
        """Human-readable lines: each free parameter with its 1-sigma uncertainty, then the quality."""
        lines = []
        for k in self.free:
            v, s = self.values[k], self.sigma[k]
            rel = f"({100 * s / v:.2g} %)" if v > 0 and math.isfinite(s) else ""
            flag = "  [at search bound]" if k in self.at_bound else ""
            if UNITS[k] == "s":
                shown = f"{v * 1e6:.5g} +/- {s * 1e6:.2g} us"
            else:
                shown = f"{v:.5g} +/- {s:.2g}" + (f" {UNITS[k]}" if UNITS[k] else "")
            lines.append(f"  {k:9s} = {shown} {rel}{flag}")
        q = [f"points {self.n_points}", f"dof {self.dof}"]
        if self.chi2_red is not None:
            q.append(f"chi2_red {self.chi2_red:.3g}")
        q += [f"RMS {self.rms * 1e3:.3g} mV", f"R^2 {self.r2:.5f}"]
        lines.append("  " + ", ".join(q))
        return lines


def _kappa_guess(base: CTFDevice, m: Measurements) -> float | None:
    rate = m.dvt / (m.n * m.pw)
    rate = rate[np.isfinite(rate) & (rate > 0)]
    if rate.size == 0:
        return None
    return float(np.max(rate)) / (1.0 + base.a_p)


def fit(m: Measurements, base: CTFDevice | None = None, fix: dict | None = None, free=FIT_PARAMS,
        mirror_erase: bool = True, starts: int = 6) -> FitResult:
    """Least-squares fit of the free CTF parameters to ``m`` (see the module docstring).

    ``base`` (default: the illustrative preset) supplies every other parameter; ``fix`` overrides
    parameters by name and removes them from the free set. With ``mirror_erase`` the erase
    parameters are set equal to the fitted program ones (OUR assumption, as in the preset).
    """
    from scipy.optimize import least_squares

    base = CTFDevice() if base is None else base
    fix = dict(fix or {})
    try:
        base = dataclasses.replace(base, **fix)
    except TypeError as err:
        raise CtfrpuError(f"--fix: {err}") from None
    unknown = [k for k in free if k not in FIT_PARAMS]
    if unknown:
        raise CtfrpuError(f"cannot fit {unknown}; fittable: {', '.join(FIT_PARAMS)}")
    names = tuple(k for k in free if k not in fix)
    if not names:
        raise CtfrpuError("nothing to fit: every fittable parameter is fixed")
    n_pts = len(m)
    if n_pts < len(names):
        raise CtfrpuError(f"{n_pts} data points are fewer than the {len(names)} free parameters "
                          f"({', '.join(names)}); add data or --fix some")
    if not np.any(m.dvt != 0):
        raise CtfrpuError("every dVT is zero: nothing constrains the model")
    if m.vt0 is not None and np.any((m.vt0 < base.vt_min) | (m.vt0 > base.vt_max)):
        raise CtfrpuError(f"vt0 must lie in the V_T window [{base.vt_min}, {base.vt_max}] V of the base device")
    weighted = m.err is not None
    scale = m.err if weighted else np.full(n_pts, max(float(np.max(np.abs(m.dvt))), 1e-30) * 0.01)
    lo = np.log([BOUNDS[k][0] for k in names])
    hi = np.log([BOUNDS[k][1] for k in names])

    def device_at(x) -> CTFDevice:
        return dataclasses.replace(base, **{k: float(np.exp(v)) for k, v in zip(names, x)})

    def resid(x) -> np.ndarray:
        return (model_dvt(device_at(x), m) - m.dvt) / scale

    x0 = np.array([math.log(max(getattr(base, k), BOUNDS[k][0] * 10)) for k in names])
    if "kappa_p" in names:
        g = _kappa_guess(base, m)
        if g is not None:
            x0[names.index("kappa_p")] = math.log(g)
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
    # a few starting points: the base values, then time constants and a_p moved by factors
    moves = [{}, {"tau_on_p": 3.0, "tau_off": 0.2}, {"tau_on_p": 0.3, "tau_off": 5.0}, {"t_d_p": 0.5, "a_p": 3.0},
             {"t_d_p": 2.0, "a_p": 0.3}, {"tau_off": 30.0, "tau_on_p": 2.0}, {"tau_off": 0.03, "t_d_p": 1.5}]
    best = None
    for mv in moves[:max(1, starts)]:
        xs = x0.copy()
        for k, f in mv.items():
            if k in names:
                xs[names.index(k)] += math.log(f)
        xs = np.clip(xs, lo + 1e-9, hi - 1e-9)
        try:
            r = least_squares(resid, xs, bounds=(lo, hi), jac="3-point", method="trf", x_scale=1.0,
                              xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=200 * len(names))
        except (ValueError, FloatingPointError) as err:
            raise CtfrpuError(f"fit failed: {err}") from None
        if best is None or r.cost < best.cost:
            best = r
    r = best
    dev = device_at(r.x)
    model = model_dvt(dev, m)
    res = m.dvt - model
    dof = n_pts - len(names)
    chi2 = float(np.sum((res / scale) ** 2))
    J = r.jac
    jtj = J.T @ J
    cov = np.linalg.pinv(jtj)
    if not weighted:
        cov = cov * (chi2 / dof) if dof > 0 else np.full_like(cov, np.nan)
    sig_x = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    # pinv gives a direction the data do not constrain zero variance, so the least determined
    # parameter would read "+/- 0": a parameter with weight in such a direction is undetermined (inf)
    lam, vec = np.linalg.eigh(jtj)
    flat = lam <= UNDETERMINED_RCOND * max(float(lam.max()), 0.0)
    if flat.any():
        sig_x[np.any(np.abs(vec[:, flat]) > 0.1, axis=1)] = np.inf
    values = {k: float(np.exp(v)) for k, v in zip(names, r.x)}
    sigma = {k: values[k] * float(s) for k, s in zip(names, sig_x)}
    at_bound = tuple(k for k, a in zip(names, r.active_mask) if a != 0)
    ss_tot = float(np.sum((m.dvt - np.mean(m.dvt)) ** 2))
    r2 = 1.0 - float(np.sum(res ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    if mirror_erase:
        dev = dataclasses.replace(dev, **{e: getattr(dev, k) for k, e in MIRROR.items() if e not in fix})
    d = np.sqrt(np.clip(np.diag(cov), 1e-300, None))
    return FitResult(device=dev, free=names, values=values, sigma=sigma, at_bound=at_bound, n_points=n_pts, dof=dof,
                     weighted=weighted, chi2_red=(chi2 / dof if weighted and dof > 0 else None),
                     rms=float(np.sqrt(np.mean(res ** 2))), r2=r2, model=model, residuals=res,
                     success=bool(r.success), message=str(r.message), nfev=int(r.nfev), fixed=fix,
                     corr=cov / np.outer(d, d))


# -- output -----------------------------------------------------------------------------------------

def _toml_scalar(v):
    """A value tomli-w can write: numpy scalars become Python numbers (nan/inf stay floats)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_toml_scalar(x) for x in v]
    if isinstance(v, str):
        return v
    raise TypeError(type(v))


def params_toml(res: FitResult, data_source: str, mirror_erase: bool = True) -> str:
    """TOML text: ``[params]`` (every CTFDevice field; ``--device-params`` and ``build_device``
    read it) and ``[fit]`` (free parameters, uncertainties, fit quality; ``[fit.sigma]``: 1-sigma
    uncertainties in the units of ``[params]``). Written by tomli-w (quoting and escaping of the
    data-file name and the optimiser message by a maintained library); the header comment is ours."""
    import tomli_w

    header = [
        "# Parameters of OUR CTF model (ctfrpu.devices.CTFDevice, docs/science.md §4) fitted by `ctfrpu device fit`",
        f"# to {' '.join(str(data_source).split())}. Fitted: {', '.join(res.free)}; every other value comes from the base device",
        "# (default: the illustrative preset, not measured data) or --fix."
        + (" Erase parameters mirror the fitted program ones (our assumption)." if mirror_erase else ""),
        "# [fit.sigma]: 1-sigma uncertainties, same units as [params].",
        "",
    ]
    doc = {
        "params": {f.name: _toml_scalar(getattr(res.device, f.name)) for f in dataclasses.fields(CTFDevice) if f.init},
        "fit": {"data": str(data_source), "free": list(res.free), "fixed": sorted(res.fixed), "points": int(res.n_points),
                "dof": int(res.dof), "weighted": bool(res.weighted),
                "chi2_red": float(res.chi2_red) if res.chi2_red is not None else float("nan"),
                "rms_V": float(res.rms), "r2": float(res.r2), "at_bound": list(res.at_bound),
                "success": bool(res.success), "message": str(res.message),
                "sigma": {k: _toml_scalar(res.sigma[k]) for k in res.free}},
    }
    return "\n".join(header) + tomli_w.dumps(doc)


def write_params(res: FitResult, path: str | Path, data_source: str, mirror_erase: bool = True) -> Path:
    """Write :func:`params_toml` atomically (see :mod:`ctfrpu.outfiles`)."""
    from ..outfiles import output_dir, write_text

    p = Path(path)
    output_dir(p.parent)
    return write_text(p, params_toml(res, data_source, mirror_erase))
