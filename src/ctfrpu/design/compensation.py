"""Pulse-train design compensation of the CTF program-time bias -- OUR rule (our reconstruction).

The system paper (Shrivastava et al., arXiv:2402.09792) names a "pulse-train design compensation
technique" but its equations are not public. This module implements OUR hardware-realisable rule:
one scalar gain per pulse-train design (the same for every layer and cell), applied to the product
of the row and column gains A*B of the stochastic update.

Derivation (our model; docs/science.md §3-4)
---------------------------------------
A cell with row/column probabilities p = A|x|, q = B|d| fires with per-slot coincidence probability
P = p q = A B |x d| (unclipped). With the ideal (program-time conserving) step dw_min(pw) the SGD
design is ``A B = lr / (N dw_min)``, so that ``E[dW] = N P dw_min = lr |x d|``. The CTF device
programs only a fraction of that, the program efficiency (``CTFDevice.program_efficiency``)::

    r(P; N, pw, t_gap) = E[dV_T of a train] / (N P kappa (1 + a) pw)   (< 1, at the window centre)

so ``E[dW_ctf] = r(P) lr |x d|``: a relative bias ``1 - r``. Raising A*B by a gain g turns P into
g P and the mean update into ``g r(g P) lr |x d|``. The rule chooses g so that this equals the SGD
update at the train's typical coincidence probability::

    g = 1 / r_bar,    r_bar = r(P_typ),    P_typ = g lr u_typ / (N dw_min(pw))          (1)

(solved by fixed-point iteration: r depends weakly on P). ``u_typ`` is a typical product |x_i d_j|
(default :data:`U_TYP`). With separate program and erase parameters one gain must serve both
polarities; we take the least-squares choice over the two signs::

    g = (r_+ + r_-) / (r_+^2 + r_-^2)                                                     (2)

which is 1/r when the polarities are symmetric. For the ideal device r = 1 and g = 1.

Residual. Cells whose coincidence probability P differs from P_typ keep a relative bias
``g r(g P) - 1`` (r grows with P because frequent pulses keep the enhancement e high); in our
reference network the coincidence probabilities are small (P < 1e-2 g: |x d| <= 1 and
lr / (N dw_min) = 0.01 at the default design), where r is close to its P -> 0 limit, so the residual
is a few per cent at most (largest for long trains with small gaps and a large lr). The window saturation s(V_T), device-to-device spread and clipping of
probabilities at 1 are not compensated (they are not program-time effects). With
``update_bl_management`` the train may be shortened; the gain of the nominal design is kept.

A side effect worth knowing: the gain raises the mean number of pulses per cell by g, which lowers
the *relative* counting noise ~ 1 / sqrt(N P) by sqrt(g) (see :mod:`ctfrpu.design.helper`), and it
couples the gap to the noise (a gap that lowers r raises g and the pulse count).

Pulse-width stretch (``compensation.kind = "stretch"``, also OURS). Instead of more pulses, longer
ones: every pulse of the design gets width k pw (the slot period grows by (k - 1) pw), and A*B is
multiplied by k so that the coincidence probability P of every cell is that of the unstretched
design (A B = k lr / (N dw_min(k pw)) = lr / (N dw_min(pw))). The mean update is then
``k r(P; N, k pw, t_gap) lr |x d|``; k solves the least-squares rule (2) with r evaluated at the
stretched width::

    k = (r_+ + r_-) / (r_+^2 + r_-^2),   r_+- = r(P_typ; N, k pw, t_gap)                   (3)

by fixed-point iteration. The pulse count -- and so the relative counting noise -- is unchanged,
each pulse is larger; the ON time per train grows by k.
"""

from __future__ import annotations

import math

import numpy as np

from ..devices.timing import timing_model

from ..errors import CtfrpuError

U_TYP = 0.2
"""Typical |x_i d_j| of a cell's update -- OUR choice: the u-weighted mean product of the output
layer of our reference 784-256-128-10 sigmoid MLP (0.16-0.26, measured early in training on MNIST
and on the synthetic set). The output layer has the largest SGD updates, so it dominates the error
of the network's updates; the hidden layers' products are smaller (about 7e-4 and 7e-3), where r
is flat in P, so their cells are over-compensated by only r(P_typ) / r(0) - 1 (about 1 % at
N = 1000, lr = 0.01 with our preset; :mod:`ctfrpu.design.helper` reports it as ``residual_max``)."""

_MAX_ITER = 50


def efficiency(device, train, prob, sign: float = 1.0, timing: str = "slot") -> np.ndarray:
    """Program efficiency r(P) of ``device`` for ``train`` under a timing model (the device's
    ``program_efficiency``; 1 for devices that conserve program time)."""
    prob = np.asarray(prob, dtype=np.float64)
    p = np.clip(prob, 1e-12, 1.0)
    tm = None if timing == "slot" else timing_model(timing)
    return np.asarray(device.program_efficiency(p, train, sign, timing=tm), dtype=np.float64)


def base_probability(device, train, lr: float, u: float) -> float:
    """Uncompensated coincidence probability lr u / (N dw_min(pw)) of a cell with |x d| = u."""
    dw = float(device.nominal_dw(train.pw))
    if not (dw > 0 and math.isfinite(dw)):
        raise CtfrpuError(f"compensation: device step dw_min(pw) must be > 0, got {dw!r}")
    return lr * u / (train.n * dw)


def gain_for(device, train, lr: float, u_typ: float = U_TYP, timing: str = "slot") -> tuple[float, float, float]:
    """Solve eqs. (1)-(2): returns (g, r_bar, P_typ) with P_typ the compensated typical probability."""
    p0 = base_probability(device, train, lr, u_typ)
    g = _least_squares_factor(lambda g, sign: efficiency(device, train, min(1.0, g * p0), sign, timing),
                              lambda g: f"{train.describe()}", "gain")
    p = min(1.0, g * p0)
    return g, 1.0 / g, p


def _least_squares_factor(r_of, where, what: str) -> float:
    """Fixed point of x = (r_+ + r_-) / (r_+^2 + r_-^2), r_+- = r_of(x, +-1) (eqs. (2) and (3)),
    from x = 1; one-line error if the device programs nothing."""
    x = 1.0
    for _ in range(_MAX_ITER):
        r_plus = float(r_of(x, +1.0))
        r_minus = float(r_of(x, -1.0))
        if not (r_plus > 0 and r_minus > 0):
            raise CtfrpuError(f"compensation: the device programs nothing with {where(x)} "
                              f"(efficiency {r_plus:.3g}/{r_minus:.3g}); no {what} can compensate it")
        x_new = (r_plus + r_minus) / (r_plus ** 2 + r_minus ** 2)
        if abs(x_new - x) <= 1e-10 * x_new:
            return x_new
        x = x_new
    return x


def stretch_for(device, train, lr: float, u_typ: float = U_TYP, timing: str = "slot"):
    """Solve eq. (3): returns (k, stretched train) -- pulse width k pw, A*B gain k."""
    from ..devices.pulses import PulseTrain

    p0 = min(1.0, base_probability(device, train, lr, u_typ))
    stretched = lambda k: PulseTrain(train.n, train.pw * k, train.gap)  # noqa: E731
    k = _least_squares_factor(lambda k, sign: efficiency(device, stretched(k), p0, sign, timing),
                              lambda k: stretched(k).describe(), "stretch")
    if not (math.isfinite(k) and k > 0):
        raise CtfrpuError(f"compensation: stretch is not finite for {train.describe()}")
    return float(k), stretched(k)


def compensated_design(device, train, cfg):
    """(train, gain) of ``cfg``'s compensation kind: 'none' -> (train, 1); 'gain' -> (train, g);
    'stretch' -> (train with pulse width k pw, k). The tile applies exactly this."""
    kind = cfg.compensation.kind
    if kind == "none":
        return train, 1.0
    if kind == "gain":
        return train, compensation_gain(device, train, cfg)
    if kind == "stretch":
        k, stretched = stretch_for(device, train, float(cfg.optim.lr), float(cfg.compensation.u_typ),
                                   cfg.update.timing)
        return stretched, k
    raise CtfrpuError(f"unknown compensation kind {kind!r}; choose none, gain or stretch")


def compensation_gain(device, train, cfg, u_typ: float | None = None) -> float:
    """Gain g on A*B that removes the expected program-time bias of ``device`` for ``train``.

    OUR rule (eqs. (1)-(2) of the module docstring): g = 1 / r(P_typ). ``cfg`` is the
    :class:`ctfrpu.config.RunConfig` (its ``optim.lr`` sets the typical coincidence probability).
    Returns 1.0 for devices that conserve program time (ideal, floating point).
    """
    lr = float(cfg.optim.lr) if cfg is not None else 0.01
    if u_typ is None:
        u_typ = float(cfg.compensation.u_typ) if cfg is not None else U_TYP
    timing = cfg.update.timing if cfg is not None else "slot"
    g, _, _ = gain_for(device, train, lr, u_typ, timing)
    if not (math.isfinite(g) and g > 0):
        raise CtfrpuError(f"compensation: gain is not finite for {train.describe()}")
    return float(g)
