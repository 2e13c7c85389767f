"""Design helper: predicted bias and variance of one cell's update over a grid of (N, t_gap).

OUR reconstruction (docs/science.md §4, "choose N and t_gap to minimise predicted bias^2 + variance").

Exact moments of one train (our model, s(V_T) frozen at the window centre, no clipping)
--------------------------------------------------------------------------------------
A pulse starting with enhancement e0 changes the weight by ``(u0 + v e0)(1 + dv_std xi)`` with
(weight units, w = max(pw - t_d, 0), c = exp(-w / tau_on))::

    u0 = kappa ((1 + a) w - a tau_on (1 - c)) / v_unit,    v = kappa a tau_on (1 - c) / v_unit

and e evolves per slot as ``e <- d_gap (1 - c + c e)`` after a pulse (probability P) and
``e <- d_T e`` otherwise (d_gap = exp(-t_gap / tau_off), d_T = exp(-(pw + t_gap) / tau_off)).
Both are affine in e, so the vector of moments z = (1, E S, E e, E e^2, E S^2, E S e) of the
accumulated change S and the enhancement obeys an exact linear recursion z <- M(P) z per slot;
after N slots ``E S`` is the mean update (equal to ``CTFDevice.expected_train_dvt``) and
``Var S = E S^2 - (E S)^2`` its variance, which contains both the Bernoulli counting noise
(~ 1/(N P) relative) and the e-history noise (random gaps between a cell's pulses), plus the
cycle-to-cycle noise. The ideal device is the special case v = 0 (u0 = dw_min). The max(0, .)
truncation of the cycle-to-cycle factor is neglected (exact for dv_std < ~0.3). Correlations
between cells sharing a row train do not change a single cell's variance.

Figures of merit for a design (N, t_gap), for a cell with typical product |x d| = u
-------------------------------------------------------------------------------------
Target (SGD) update T = lr u. The compensated gain g is :func:`ctfrpu.design.compensation.gain_for`;
without compensation g = 1. With P = g lr u / (N dw_min)::

    bias     = E S / T - 1                 (uncompensated: r(P) - 1; compensated: g r(g P) - 1)
    variance = Var S / T^2                 (relative variance of the update)
    score    = bias^2 + variance           (predicted relative mean-square error of one update)

The compensated residual is also evaluated over :data:`REFERENCE_PRODUCTS` (the spread of |x d|
over the layers of our reference network): ``residual_max = max |g r(g P) - 1|``. The
recommendation is the design of the lowest compensated score. The default u (:data:`U_DESIGN`)
is the output layer's typical product, where one update's signal-to-noise ratio is of order one;
the hidden layers' single updates are noise-dominated at every N and rely on averaging over samples.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..devices import PulseTrain
from ..devices.timing import timing_model
from ..errors import CtfrpuError
from ..units import format_time
from .compensation import U_TYP, base_probability, gain_for, stretch_for

U_DESIGN = U_TYP
"""Typical |x_i d_j| the design is evaluated at: the output layer of our reference MLP (= U_TYP)."""

REFERENCE_PRODUCTS = (7e-4, 7e-3, 0.2)
"""u-weighted mean |x_i d_j| of the three layers of our reference MLP (input, hidden, output)."""

DEFAULT_PULSES = (100, 300, 1000, 3000)
DEFAULT_GAPS = (1e-7, 1e-6, 1e-5, 1e-4)


# ----------------------------------------------------------------------------------- moments


def _pulse_coeffs(device, train: PulseTrain, sign: float, timing: str = "slot"):
    """(u0, v, c, d_gap, d_T, cv) of one pulse in weight units: the device's ``moment_coeffs`` for
    the timing model (memoryless devices: v = 0, c = 1)."""
    return device.moment_coeffs(train, timing_model(timing), sign)


def train_moments(device, train: PulseTrain, prob, sign: float = 1.0, e_init: float = 0.0, timing: str = "slot"):
    """Exact (mean, variance) of one cell's weight change (magnitude) for a train with per-slot
    coincidence probability ``prob`` (array), by the moment recursion of the module docstring."""
    prob = np.atleast_1d(np.asarray(prob, dtype=np.float64))
    if np.any((prob < 0) | (prob > 1)):
        raise CtfrpuError("design: coincidence probabilities must lie in [0, 1]")
    u0, v, c, dg, dt, cv = _pulse_coeffs(device, train, sign, timing)
    P = prob
    Q = 1.0 - P
    k = len(P)
    M = np.zeros((k, 6, 6))
    # index: 0 one, 1 S, 2 e, 3 e2, 4 S2, 5 Se
    M[:, 0, 0] = 1.0
    M[:, 1, 1] = 1.0
    M[:, 1, 0] = P * u0
    M[:, 1, 2] = P * v
    M[:, 2, 0] = P * dg * (1 - c)
    M[:, 2, 2] = P * dg * c + Q * dt
    M[:, 3, 0] = P * dg ** 2 * (1 - c) ** 2
    M[:, 3, 2] = P * dg ** 2 * 2 * c * (1 - c)
    M[:, 3, 3] = P * dg ** 2 * c ** 2 + Q * dt ** 2
    n2 = 1.0 + cv ** 2
    M[:, 4, 4] = 1.0
    M[:, 4, 1] = 2 * P * u0
    M[:, 4, 5] = 2 * P * v
    M[:, 4, 0] = P * n2 * u0 ** 2
    M[:, 4, 2] = P * n2 * 2 * u0 * v
    M[:, 4, 3] = P * n2 * v ** 2
    M[:, 5, 1] = P * dg * (1 - c)
    M[:, 5, 5] = P * dg * c + Q * dt
    M[:, 5, 0] = P * dg * u0 * (1 - c)
    M[:, 5, 2] = P * dg * (u0 * c + v * (1 - c))
    M[:, 5, 3] = P * dg * v * c
    z0 = np.array([1.0, 0.0, e_init, e_init ** 2, 0.0, 0.0])
    z = np.linalg.matrix_power(M, int(train.n)) @ z0
    mean = z[:, 1]
    var = np.maximum(z[:, 4] - mean ** 2, 0.0)
    return mean, var


# ----------------------------------------------------------------------------------- design grid


@dataclass
class DesignPoint:
    """Predicted figures of merit of one design (see the module docstring)."""

    n: int
    gap: float
    pw: float
    efficiency: float
    """r at the uncompensated typical probability (1 - r is the relative bias)."""
    gain: float
    """Compensation gain g on A*B (our rule)."""
    prob: float
    """Uncompensated coincidence probability of the typical cell."""
    bias: float
    """Relative bias of the uncompensated update, r - 1."""
    variance: float
    """Relative variance of the uncompensated update."""
    bias_comp: float
    """Relative bias after compensation, g r(g P) - 1 at the typical cell."""
    residual_max: float
    """max |g r(g P) - 1| over the reference products of our network's layers."""
    variance_comp: float
    """Relative variance after compensation."""
    counting_variance: float
    """Pure Bernoulli counting part (1 - P)/(N P) of the uncompensated variance, for reference."""
    stretch: float = 1.0
    """Pulse-width stretch k of OUR stretch compensation (pulse width k pw, A*B x k)."""
    bias_stretch: float = 0.0
    """Relative bias with the stretch compensation at the typical cell."""
    variance_stretch: float = 0.0
    """Relative variance with the stretch compensation (same pulse count, larger pulses)."""
    timing: str = "slot"
    """Timing model the moments were computed for (docs/science.md §8)."""

    @property
    def score(self) -> float:
        return self.bias ** 2 + self.variance

    @property
    def score_comp(self) -> float:
        return max(self.bias_comp ** 2, self.residual_max ** 2) + self.variance_comp

    @property
    def score_stretch(self) -> float:
        return self.bias_stretch ** 2 + self.variance_stretch

    def to_dict(self) -> dict:
        d = asdict(self)
        d["score"] = self.score
        d["score_comp"] = self.score_comp
        d["score_stretch"] = self.score_stretch
        return d


def _train(n: int, gap: float, mode: str, t_on: float, pw: float) -> PulseTrain:
    if mode == "on_time":
        return PulseTrain.from_on_time(int(n), t_on, gap)
    if mode == "fixed_pw":
        return PulseTrain(int(n), pw, gap)
    raise CtfrpuError(f"design: unknown pulse mode {mode!r}; choose on_time or fixed_pw")


def evaluate_design(device, train: PulseTrain, lr: float = 0.01, u: float = U_DESIGN,
                    products=REFERENCE_PRODUCTS, u_gain: float = U_TYP, timing: str = "slot") -> DesignPoint:
    """Bias / variance of one design for a typical cell with |x d| = u (program polarity), without
    compensation, with OUR gain compensation and with OUR pulse-width stretch, under a timing model."""
    if not (u > 0 and lr > 0):
        raise CtfrpuError("design: the typical product u and the learning rate must be > 0")
    target = lr * u
    p0 = base_probability(device, train, lr, u)
    if p0 > 1:
        raise CtfrpuError(f"design: coincidence probability {p0:.3g} > 1 at {train.describe()}; lower lr or u")
    g, _, _ = gain_for(device, train, lr, u_gain, timing)
    pc = min(1.0, g * p0)
    (m0, mc), (v0, vc) = train_moments(device, train, np.array([p0, pc]), timing=timing)
    ps = np.array([min(1.0, g * base_probability(device, train, lr, q)) for q in products])
    ms, _ = train_moments(device, train, ps, timing=timing)
    k, stretched = stretch_for(device, train, lr, u_gain, timing)
    (mk,), (vk,) = train_moments(device, stretched, np.array([p0]), timing=timing)
    targets = lr * np.asarray(products)
    residual = float(np.max(np.abs(ms / targets - 1.0))) if len(products) else 0.0
    return DesignPoint(n=train.n, gap=train.gap, pw=train.pw, efficiency=float(m0 / target), gain=g,
                       prob=p0, bias=float(m0 / target - 1.0), variance=float(v0 / target ** 2),
                       bias_comp=float(mc / target - 1.0), residual_max=residual,
                       variance_comp=float(vc / target ** 2),
                       counting_variance=float((1 - p0) / (train.n * p0)), stretch=k,
                       bias_stretch=float(mk / target - 1.0), variance_stretch=float(vk / target ** 2), timing=timing)


def design_grid(device, pulses=DEFAULT_PULSES, gaps=DEFAULT_GAPS, lr: float = 0.01, u: float = U_DESIGN,
                mode: str = "on_time", t_on: float = 5e-3, pw: float = 5e-6, timing: str = "slot") -> list[DesignPoint]:
    """Evaluate every (N, t_gap) of the grid; see :func:`evaluate_design`."""
    if not pulses or not gaps:
        raise CtfrpuError("design: need at least one N and one t_gap")
    return [evaluate_design(device, _train(n, gap, mode, t_on, pw), lr, u, timing=timing)
            for n in pulses for gap in gaps]


def recommend(points: list[DesignPoint], compensated: bool = True) -> DesignPoint:
    """The design with the lowest predicted score (compensated by default)."""
    key = (lambda p: p.score_comp) if compensated else (lambda p: p.score)
    finite = [p for p in points if math.isfinite(key(p))]
    if not finite:
        raise CtfrpuError("design: no design has a finite predicted error")
    return min(finite, key=key)


def format_table(points: list[DesignPoint]) -> str:
    """Plain-text table of the grid (one row per design)."""
    head = (f"{'N':>6} {'t_gap':>8} {'pw':>8} {'r':>6} {'gain':>7} {'bias':>8} {'var':>9} {'score':>9}"
            f" | {'bias_c':>8} {'resid':>7} {'var_c':>9} {'score_c':>9} | {'k':>6} {'bias_s':>8} {'var_s':>9}")
    lines = [head, "-" * len(head)]
    for p in points:
        lines.append(f"{p.n:>6} {format_time(p.gap):>8} {format_time(p.pw):>8} {p.efficiency:6.3f}"
                     f" {p.gain:7.3f} {p.bias:+8.3f} {p.variance:9.4f} {p.score:9.4f}"
                     f" | {p.bias_comp:+8.4f} {p.residual_max:7.4f} {p.variance_comp:9.4f} {p.score_comp:9.4f}"
                     f" | {p.stretch:6.3f} {p.bias_stretch:+8.4f} {p.variance_stretch:9.4f}")
    return "\n".join(lines)


def matched_noise_scale(ctf_device, ideal_device, train: PulseTrain, lr: float = 0.01, u: float = U_DESIGN,
                        gain: float = 1.0, timing: str = "slot") -> float:
    """``update.noise_scale`` that gives the ideal device's Gaussian mode the per-cell update
    variance of the CTF device's exact mode (with ``gain`` on A*B) at the typical product ``u``,
    under the run's timing model ``timing`` (the CTF variance depends on it).

    The ideal Gaussian mode's noise is ``noise_scale * sqrt(Var_ideal(P))`` (the ideal exact-mode
    variance at the same coincidence probability P = lr u / (N dw_min)), so
    ``noise_scale = sqrt(Var_ctf(g P) / Var_ideal(P))`` -- OUR matching rule (variances matched at
    one typical P; the ratio depends only weakly on P)."""
    p0 = base_probability(ctf_device, train, lr, u)
    if p0 > 1 or p0 <= 0:
        raise CtfrpuError(f"design: coincidence probability {p0:.3g} outside (0, 1]")
    _, v_ctf = train_moments(ctf_device, train, np.array([min(1.0, gain * p0)]), timing=timing)
    _, v_id = train_moments(ideal_device, train, np.array([p0]), timing=timing)
    if not v_id[0] > 0:
        raise CtfrpuError("design: the ideal device's update has no variance to scale")
    return float(math.sqrt(v_ctf[0] / v_id[0]))
