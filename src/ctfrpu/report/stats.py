"""Pure statistics behind the verdicts (OUR choices, docs/science.md §7): linear contrasts of
cell means over seeds, paired by seed where the seeds match, and the tests built on them.

A *cell* is the set of final accuracies of one configuration over its seeds. A contrast
``sum_k w_k mu_k`` of cell means is estimated in one of two ways:

* **paired** (the cells share >= 2 seeds, each seed at most once per cell): one contrast value per
  common seed, ``c_s = sum_k w_k y_{k,s}``, then a one-sample t on the ``c_s`` (df = n - 1). A seed
  fixes the weight init and the data order in every configuration, so this removes the seed effect
  that all cells share -- the reason the study runs paired seeds;
* **unpaired** (otherwise): the pooled within-cell sd ``s_p`` (df = sum (n_k - 1)) and
  ``se = s_p sqrt(sum_k w_k^2 / n_k)``.

Both sds are floored by the test-set sampling sd of one accuracy, ``sqrt(a (1 - a) / n_test)``
(times ``||w||_2`` for a paired contrast), so that a few seeds that happen to agree cannot produce
an infinite t statistic (ours; ``n_test=None`` switches the floor off).

The tests (alpha = 0.05 throughout):

* difference: two-sided t test of ``contrast = 0``; 95 % CI;
* non-inferiority with margin m: shown if ``est + t_{0.95,df} se <= m`` (the issue's
  ``D + 1.645 se <= m`` with the exact small-sample quantile instead of the normal one);
  violated if ``est - t_{0.95,df} se > m``; else not shown. 90 % CI (= two one-sided 95 % bounds);
* equivalence (TOST) with margin m: shown if the 90 % CI lies inside (-m, m); violated if it lies
  entirely outside [-m, m]; else not shown.

Power (80 % throughout): the smallest true effect a test detects with 80 % power, from the
noncentral t at the observed se and df (:func:`mde`); for non-inferiority and equivalence, the
smallest margin that would be shown with 80 % power if the true effect were 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8


@dataclass(frozen=True)
class Estimate:
    """A contrast of cell means: estimate, standard error, degrees of freedom, seeds used."""

    est: float
    se: float
    df: float
    n: int
    """seeds behind the estimate: common seeds if paired, the smallest cell's seeds if not."""
    paired: bool

    @property
    def usable(self) -> bool:
        return self.df >= 1 and math.isfinite(self.se) and self.se > 0

    def t(self) -> float:
        return self.est / self.se

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        q = stats.t.ppf(0.5 + level / 2, self.df)
        return float(self.est - q * self.se), float(self.est + q * self.se)

    def p_two_sided(self) -> float:
        return float(2 * stats.t.sf(abs(self.t()), self.df))

    def p_greater(self) -> float:
        """One-sided p of H0: contrast <= 0 against contrast > 0."""
        return float(stats.t.sf(self.t(), self.df))


def _floor(values: Sequence[float], n_test: int | None) -> float:
    if not n_test:
        return 0.0
    a = float(np.mean(values)) if len(values) else 0.5
    return math.sqrt(max(a * (1 - a), 1e-6) / n_test)


def common_seeds(cells) -> list[int] | None:
    """Seeds present in every cell (sorted), or None if some cell has no seeds or repeats one."""
    sets = []
    for c in cells:
        if c.seeds is None or len(c.seeds) != len(c.values) or len(set(c.seeds)) != len(c.seeds):
            return None
        sets.append(set(c.seeds))
    return sorted(set.intersection(*sets)) if sets else None


def contrast(cells, weights: Sequence[float], n_test: int | None = None, paired: bool = True) -> Estimate:
    """Estimate ``sum_k w_k mu_k`` over ``cells`` (objects with ``values`` and ``seeds``)."""
    w = np.asarray(weights, float)
    if len(cells) != len(w) or not len(w):
        raise ValueError("one weight per cell")
    keep = [(c, wk) for c, wk in zip(cells, w) if wk != 0]
    cells, w = [c for c, _ in keep], np.array([wk for _, wk in keep])
    allv = [v for c in cells for v in c.values]
    floor = _floor(allv, n_test)
    seeds = common_seeds(cells) if paired else None
    if seeds is not None and len(seeds) >= 2:
        y = np.array([[c.values[c.seeds.index(s)] for s in seeds] for c in cells])   # cells x seeds
        cs = w @ y
        n = len(seeds)
        sd = max(float(np.std(cs, ddof=1)), floor * float(np.linalg.norm(w)))
        return Estimate(float(cs.mean()), sd / math.sqrt(n), n - 1, n, True)
    ns = np.array([len(c.values) for c in cells])
    if (ns == 0).any():
        return Estimate(math.nan, math.nan, 0, 0, False)
    means = np.array([np.mean(c.values) for c in cells])
    df = int((ns - 1).sum())
    ss = sum(float(np.sum((np.asarray(c.values) - np.mean(c.values)) ** 2)) for c in cells)
    sp = max(math.sqrt(ss / df), floor) if df > 0 else math.nan
    se = sp * math.sqrt(float(np.sum(w ** 2 / ns))) if df > 0 else math.nan
    return Estimate(float(w @ means), se, df, int(ns.min()), False)


def trend_weights(gaps: Sequence[float]) -> np.ndarray:
    """Weights of the least-squares slope of accuracy on log10(gap), scaled to the tested span:
    ``sum_k w_k y_k`` is the fitted accuracy change from the smallest to the largest gap
    (for two gaps: ``y_max - y_min``)."""
    x = np.log10(np.asarray(gaps, float))
    xc = x - x.mean()
    sxx = float(np.sum(xc ** 2))
    if sxx == 0:
        raise ValueError("need >= 2 distinct gaps")
    return xc / sxx * (x.max() - x.min())


# ----------------------------------------------------------------------------------- power


def power_two_sided(delta: float, se: float, df: float, alpha: float = ALPHA) -> float:
    q = stats.t.ppf(1 - alpha / 2, df)
    ncp = delta / se
    # scipy's noncentral t returns nan for a far tail (large |ncp|): that tail is ~0
    return float(np.nan_to_num(stats.nct.sf(q, df, ncp)) + np.nan_to_num(stats.nct.cdf(-q, df, ncp)))


def power_one_sided(delta: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """Power of the one-sided t test (reject when est/se > t_{1-alpha}) at a true effect delta."""
    p = stats.nct.sf(stats.t.ppf(1 - alpha, df), df, delta / se)
    return float(p if math.isfinite(p) else (1.0 if delta > 0 else 0.0))


def mde(se: float, df: float, alpha: float = ALPHA, sided: int = 2, power: float = POWER) -> float:
    """Smallest true effect detected with ``power`` by the t test at this se and df."""
    f = power_two_sided if sided == 2 else power_one_sided
    hi = se * (stats.t.ppf(1 - alpha / sided, df) + stats.t.ppf(power, df))
    while f(hi, se, df, alpha) < power:
        hi *= 2
    return float(optimize.brentq(lambda d: f(d, se, df, alpha) - power, 0.0, hi, xtol=se * 1e-6))


def power_tost(margin: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """Approximate power of TOST at a true difference 0: P(|est| <= margin - t_{1-alpha} se),
    with ``est / se`` taken as central t (ignores the correlation of est and se)."""
    x = margin / se - stats.t.ppf(1 - alpha, df)
    return float(max(0.0, 2 * stats.t.cdf(x, df) - 1))


def mde_tost(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest equivalence margin shown with ``power`` at a true difference 0 (same approximation)."""
    return float(se * (stats.t.ppf(1 - alpha, df) + stats.t.ppf(0.5 + power / 2, df)))


# ----------------------------------------------------------------------------------- tests

SHOWN, VIOLATED, NOT_SHOWN = "shown", "violated", "not shown"


@dataclass(frozen=True)
class Test:
    """The outcome of one test on one estimate; ``mde`` and ``power`` are computed on demand."""

    kind: str          # "difference", "non-inferiority", "equivalence"
    estimate: Estimate
    margin: float
    """NI / TOST: the margin; difference: the reference effect at which ``power`` is quoted."""
    outcome: str       # SHOWN / VIOLATED / NOT_SHOWN; for "difference": SHOWN = significant
    ci: tuple[float, float]
    ci_level: float
    p: float
    alpha: float = ALPHA
    sided: int = 2

    @property
    def mde(self) -> float:
        """difference: the smallest true effect detected with 80 % power; non-inferiority /
        equivalence: the smallest margin shown with 80 % power at a true effect 0."""
        e = self.estimate
        if not e.usable:
            return math.nan
        if self.kind == "equivalence":
            return mde_tost(e.se, e.df, self.alpha)
        return mde(e.se, e.df, self.alpha, 1 if self.kind == "non-inferiority" else self.sided)

    @property
    def power(self) -> float:
        """difference: power at a true effect ``margin``; NI / TOST: power at a true effect 0."""
        e = self.estimate
        if not e.usable:
            return math.nan
        if self.kind == "equivalence":
            return power_tost(self.margin, e.se, e.df, self.alpha)
        if self.kind == "non-inferiority" or self.sided == 1:
            return power_one_sided(self.margin, e.se, e.df, self.alpha)
        return power_two_sided(self.margin, e.se, e.df, self.alpha)


def _bounds(e: Estimate, alpha: float) -> tuple[float, float]:
    q = float(stats.t.ppf(1 - alpha, e.df))
    return e.est - q * e.se, e.est + q * e.se


def noninferiority(e: Estimate, margin: float, alpha: float = ALPHA) -> Test:
    """H0: contrast >= margin (the loss is at least the margin) vs H1: contrast < margin."""
    lo, hi = _bounds(e, alpha)
    outcome = SHOWN if hi <= margin else VIOLATED if lo > margin else NOT_SHOWN
    p = float(stats.t.cdf((e.est - margin) / e.se, e.df))
    return Test("non-inferiority", e, margin, outcome, (lo, hi), 1 - 2 * alpha, p, alpha, 1)


def equivalence(e: Estimate, margin: float, alpha: float = ALPHA) -> Test:
    """TOST: H0: |contrast| >= margin vs H1: |contrast| < margin."""
    lo, hi = _bounds(e, alpha)
    if -margin < lo and hi < margin:
        outcome = SHOWN
    elif lo > margin or hi < -margin:
        outcome = VIOLATED
    else:
        outcome = NOT_SHOWN
    p = float(max(stats.t.sf((e.est + margin) / e.se, e.df), stats.t.cdf((e.est - margin) / e.se, e.df)))
    return Test("equivalence", e, margin, outcome, (lo, hi), 1 - 2 * alpha, p, alpha, 2)


def difference(e: Estimate, reference: float, alpha: float = ALPHA, sided: int = 2) -> Test:
    """t test of contrast = 0 (two-sided, or one-sided 'greater'); power quoted at ``reference``."""
    if sided == 2:
        p, level = e.p_two_sided(), 1 - alpha
    else:
        p, level = e.p_greater(), 1 - 2 * alpha
    lo, hi = e.ci(level)
    return Test("difference", e, reference, SHOWN if p < alpha else NOT_SHOWN, (float(lo), float(hi)), level, p,
                alpha, sided)
