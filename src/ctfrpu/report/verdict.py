"""Verdicts on the system paper's findings -- OUR decision rules on final accuracies over seeds
(docs/science.md §7; the statistics are in :mod:`ctfrpu.report.stats`).

Findings of arXiv:2402.09792 (abstract):

(i)   for N ~ 1000 the accuracy approaches software (floating point) and hardly depends on t_gap;
(ii)  for N < 500 the accuracy depends on t_gap;
(iii) the lower noise (not the bias) of the weight updates is the likely significant factor.

Every comparison is a linear contrast of cell means (one cell = one configuration over its seeds),
paired by seed where the cells share seeds, unpaired (pooled sd) otherwise; alpha = 0.05.

* **(i)** three parts, all required for "holds":
  - *near software* -- non-inferiority of CTF(N ~ 1000, mean over t_gap) against FP with margin
    ``NEAR``: shown if ``D + t_{0.95,df} se <= NEAR`` (D = FP - CTF);
  - *insensitive to t_gap* -- equivalence (TOST) of every pair of gaps at N ~ 1000 with margin
    ``GAP_MARGIN``: shown if every pair's 90 % CI lies inside (-GAP_MARGIN, GAP_MARGIN); plain
    non-significance never counts;
  - *the trend* -- for every N < 500, non-inferiority of N ~ 1000 against that N with margin
    ``TREND_MARGIN`` (accuracy at N ~ 1000 not below the smaller design).
  "does not hold" if any part is *violated* (its CI lies beyond the margin; Bonferroni over all the
  violation tests of the verdict); otherwise "inconclusive".
* **(ii)** per N < 500, *dependence* on t_gap is a paired t test of the per-seed least-squares slope
  of accuracy on log10(t_gap) (reported as the fitted change over the tested gap span). We chose it
  over a repeated-measures ANOVA or a Friedman test because (a) every timing model of our device
  makes the mean update monotone in t_gap (the enhancement relaxes monotonically), so a one-df
  trend contrast concentrates the power where the effect must be; (b) it is exact under normal
  seed effects for any number of gaps, with no sphericity assumption; (c) Friedman's test reduces
  to a sign test for two gaps and cannot reach p < 0.05 with three seeds. *Insensitive* is the TOST
  of every pair of gaps (margin ``GAP_MARGIN``); it takes precedence, so a significant change
  smaller than the margin counts as insensitive, the yardstick of (i). *Dependent*: a significant
  trend that is not insensitive. Holds if every tested N < 500 is dependent; does not hold if every
  one is insensitive; else inconclusive.
* **(iii), the 2x2 factorial** (:func:`verdict_factorial`): arms (N_b, N_sigma) in {small, large}^2
  with paired seeds; first "is there an improvement to explain": a one-sided test that the
  large-N arm (large, large) -- or a compensated arm -- beats the small-N arm (small, small)
  (Bonferroni over the candidates); if none is shown the verdict is "no improvement to explain".
  Then the main effects E_b, E_sigma and the interaction with 95 % CIs; holds if E_sigma > 0 and
  E_sigma - E_b > 0 (both significant); does not hold if E_sigma - E_b < 0 significantly, or if
  E_sigma is equivalent to 0 (TOST, margin ``MIN_EFFECT``); else inconclusive.
* **(iii), the arms view** (:func:`verdict_iii`): the losses against FP of the bias-only arm
  (``ctf_expected``), L_b, and of the noise-only arm (``ideal_gauss``), L_n; holds if L_n - L_b > 0
  and L_n > 0 (both significant); does not hold if L_b - L_n > 0 significantly, or if L_n is
  equivalent to 0 while the full model loses significantly; else inconclusive.

Power: each verdict states the smallest effect (or margin) its deciding test detects (or shows)
with 80 % power at the observed seed-to-seed sd and seed count, and its power at the stated margin
(:mod:`ctfrpu.report.stats`).

Seeds: with one seed in a compared cell the verdict is "inconclusive (one seed)"; with two it is
"indicative" and names the status the rule would give (``leaning``); three or more are needed for
holds / does not hold / no improvement to explain.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from ..plotting import time_label
from . import stats as S

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
INDICATIVE = "indicative"
NO_IMPROVEMENT = "no improvement to explain"
NOT_RUN = "not run"
"""No runs of the arms a finding's test needs are in the store (e.g. the single-factor arms of a
dataset the profile does not ablate): nothing was tested, which "inconclusive" would misstate."""
STATUSES = (HOLDS, FAILS, INCONCLUSIVE, INDICATIVE, NO_IMPROVEMENT, NOT_RUN)

NEAR = 0.02
"""(i) non-inferiority margin: 'approaches software' = at most 2 pp below the FP mean (ours)."""
GAP_MARGIN = 0.01
"""Equivalence margin of 'insensitive to t_gap': every pair of gaps within 1 pp (ours)."""
TREND_MARGIN = 0.01
"""(i) trend: N ~ 1000 at most 1 pp below any N < 500 (non-inferiority margin, ours)."""
MIN_EFFECT = 0.01
"""Reference effect of the power statements of difference tests, and the equivalence margin of
'this effect is zero' in (iii): 1 pp (ours)."""
MIN_SEEDS = 3
"""Seeds per compared cell below which a verdict is only 'indicative'."""
ALPHA = S.ALPHA


def thresholds_text() -> str:
    """One line naming the margins, for the report."""
    return (f"Margins (ours): near software {_pp(NEAR)} (non-inferiority), t_gap equivalence ±{_pp(GAP_MARGIN)} "
            f"(TOST), trend {_pp(TREND_MARGIN)} (non-inferiority), zero effect ±{_pp(MIN_EFFECT)}; alpha = "
            f"{ALPHA:g}; power at 80 %; contrasts paired by seed where the seeds match; < {MIN_SEEDS} seeds: "
            "indicative, 1 seed: inconclusive.")


# ----------------------------------------------------------------------------------- data


@dataclass
class Cell:
    """Final accuracies of one configuration; ``seeds[i]`` is the seed of ``values[i]`` (None:
    unknown, the cell is then compared unpaired)."""

    values: list[float]
    seeds: list[int] | None = None

    def add(self, value: float, seed: int | None = None) -> None:
        self.values.append(float(value))
        if seed is None:
            self.seeds = None
        elif self.seeds is not None or len(self.values) == 1:
            self.seeds = (self.seeds or []) + [int(seed)]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else math.nan


def cell_of(rows: Iterable[Any]) -> Cell:
    """A cell from run rows with ``accuracy`` and ``seed`` attributes."""
    c = Cell([], [])
    for r in rows:
        c.add(r.accuracy, r.seed)
    return c


VERDICT_COLUMNS = ["finding", "dataset", "verdict", "summary", "rule", "effect", "ci_low", "ci_high", "ci_level",
                   "se", "df", "n_seeds", "paired", "mde_80", "power", "power_at", "leaning"]


@dataclass
class Verdict:
    finding: str
    dataset: str
    status: str
    summary: str
    rule: str
    numbers: dict[str, Any] = field(default_factory=dict)
    effect: float = math.nan
    """the deciding estimate (accuracy fraction; its meaning is in ``power_at``/``summary``)."""
    ci: tuple[float, float] = (math.nan, math.nan)
    ci_level: float = math.nan
    se: float = math.nan
    df: float = math.nan
    n: int = 0
    """seeds behind the deciding estimate."""
    paired: bool = False
    mde: float = math.nan
    """smallest effect (difference tests) or margin (non-inferiority, equivalence) the deciding test
    detects / shows with 80 % power."""
    power: float = math.nan
    power_at: str = ""
    leaning: str = ""
    """for indicative / one-seed verdicts: the status the rule gives on these numbers."""

    @property
    def text(self) -> str:
        return self.summary

    def row(self) -> list[Any]:
        return [self.finding, self.dataset, self.status, self.summary, self.rule, self.effect, self.ci[0], self.ci[1],
                self.ci_level, self.se, self.df, self.n, self.paired, self.mde, self.power, self.power_at,
                self.leaning]


def _pp(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f} pp"


def _ci(t: S.Test) -> str:
    return f"{100 * t.ci_level:.0f} % CI [{100 * t.ci[0]:+.2f}, {100 * t.ci[1]:+.2f}] pp"


def _attach(v: Verdict, t: S.Test, power_at: str) -> Verdict:
    e = t.estimate
    v.effect, v.ci, v.ci_level, v.se, v.df, v.n, v.paired = e.est, t.ci, t.ci_level, e.se, e.df, e.n, e.paired
    v.mde, v.power, v.power_at = t.mde, t.power, power_at
    return v


def _seed_gate(v: Verdict, estimates: list[S.Estimate]) -> Verdict:
    """Downgrade a verdict decided on fewer than MIN_SEEDS seeds."""
    n = min((e.n for e in estimates), default=0)
    if n >= MIN_SEEDS:
        return v
    v.leaning = v.status
    v.n = min(v.n, n) if v.n else n  # the seeds behind the weakest estimate the verdict rests on
    if n <= 1:
        v.status, v.summary = INCONCLUSIVE, f"inconclusive (one seed): {v.summary}"
    else:
        v.status, v.summary = INDICATIVE, f"indicative ({n} seeds; the rule gives '{v.leaning}'): {v.summary}"
    return v


def _one_seed(finding: str, dataset: str, rule: str, text: str, estimates: list[S.Estimate]) -> Verdict | None:
    """The verdict when the seed spread is unknown, else None."""
    if all(e.usable and e.n >= 2 for e in estimates):
        return None
    v = Verdict(finding, dataset, INCONCLUSIVE, f"inconclusive (one seed): {text}; seed-to-seed spread unknown",
                rule, {"estimates": [e.est for e in estimates]})
    if estimates:
        v.effect, v.n = estimates[0].est, min(e.n for e in estimates)
    return v


def _cells(by_gap: Mapping[float, Cell]) -> tuple[list[float], list[Cell]]:
    gaps = sorted(g for g, c in by_gap.items() if c.n)
    return gaps, [by_gap[g] for g in gaps]



# ----------------------------------------------------------------------------------- gap tests


@dataclass
class GapTests:
    gaps: list[float]
    trend: S.Test
    """dependence: paired t test of the slope on log10(gap), as the change over the gap span."""
    pairs: list[tuple[float, float, S.Test]]
    """TOST per pair of gaps (later minus earlier) at alpha."""
    violated: bool
    """some pair lies significantly outside ±GAP_MARGIN (at the caller's alpha)."""

    @property
    def dependent(self) -> bool:
        return self.trend.outcome == S.SHOWN

    @property
    def insensitive(self) -> bool:
        return all(t.outcome == S.SHOWN for _, _, t in self.pairs)

    @property
    def status(self) -> str:
        """'insensitive' (every pair equivalent -- even if the trend is significant: then it is
        smaller than the margin, the same yardstick as (i)), 'dependent' (significant trend, not
        equivalent), else 'undecided'."""
        return "insensitive" if self.insensitive else "dependent" if self.dependent else "undecided"

    @property
    def estimates(self) -> list[S.Estimate]:
        return [self.trend.estimate] + [t.estimate for _, _, t in self.pairs]

    @property
    def worst_pair(self) -> tuple[float, float, S.Test]:
        """The pair furthest from equivalence (largest |CI| bound)."""
        return max(self.pairs, key=lambda p: max(abs(p[2].ci[0]), abs(p[2].ci[1])))

    def text(self) -> str:
        tr = self.trend
        g0, g1, wp = self.worst_pair
        return (f"change over t_gap {time_label(self.gaps[0])}..{time_label(self.gaps[-1])} "
                f"{100 * tr.estimate.est:+.2f} pp ({_ci(tr)}, p = {tr.p:.2g}, detectable at 80 %: "
                f"{_pp(tr.mde)}); equivalence ±{_pp(GAP_MARGIN)}: worst pair {time_label(g0)} vs {time_label(g1)} "
                f"{_ci(wp)} (provable margin at 80 %: {_pp(wp.mde)}) -> {self.status}"
                + (f" (significant, but within ±{_pp(GAP_MARGIN)})" if self.dependent and self.insensitive else ""))


def gap_tests(by_gap: Mapping[float, Cell], n_test: int | None, alpha_violated: float = ALPHA) -> GapTests | None:
    """Dependence (trend) and equivalence (pairwise TOST) over the gaps of one N; None if < 2 gaps."""
    gaps, cells = _cells(by_gap)
    if len(gaps) < 2:
        return None
    trend = S.contrast(cells, S.trend_weights(gaps), n_test)
    pairs, ests = [], [trend]
    for i, j in itertools.combinations(range(len(gaps)), 2):
        w = np.zeros(len(gaps))
        w[i], w[j] = -1.0, 1.0
        e = S.contrast(cells, w, n_test)
        ests.append(e)
        pairs.append((gaps[i], gaps[j], e))
    if not all(e.usable for e in ests):
        # no seed spread: nothing can be shown (the callers report the one-seed verdict)
        nan = (math.nan, math.nan)
        return GapTests(gaps, S.Test("difference", trend, MIN_EFFECT, S.NOT_SHOWN, nan, math.nan, math.nan),
                        [(a, b, S.Test("equivalence", e, GAP_MARGIN, S.NOT_SHOWN, nan, math.nan, math.nan))
                         for a, b, e in pairs], False)
    t_trend = S.difference(trend, MIN_EFFECT)
    tests = [(a, b, S.equivalence(e, GAP_MARGIN)) for a, b, e in pairs]
    violated = any(S.equivalence(e, GAP_MARGIN, alpha_violated).outcome == S.VIOLATED for _, _, e in pairs)
    return GapTests(gaps, t_trend, tests, violated)


# ----------------------------------------------------------------------------------- (i)


def verdict_i(fp: Cell, by_gap: Mapping[float, Cell], n_test: int | None, dataset: str, n_value: int | None,
              label: str = "", small: Mapping[int, Mapping[float, Cell]] | None = None) -> Verdict:
    """(i) at N = ``n_value`` (cells per t_gap in ``by_gap``); ``small``: cells per N and t_gap from
    which the N < 500 designs are taken for the trend (no N < 500: the trend is untested)."""
    finding = "(i) N ~ 1000: near software and insensitive to t_gap"
    rule = (f"near: FP - CTF(N~1000) + t_0.95 se <= {_pp(NEAR)} (non-inferiority); insensitive: every pair of "
            f"gaps within ±{_pp(GAP_MARGIN)} (TOST, 90 % CI); trend: CTF(N<500) - CTF(N~1000) + t_0.95 se <= "
            f"{_pp(TREND_MARGIN)} for every N < 500; holds if all three are shown, does not hold if one is "
            "violated (Bonferroni), else inconclusive")
    gaps, cells = _cells(by_gap)
    if not fp.n or not cells or n_value is None:
        missing = "the FP baseline" if not fp.n else "runs at N ~ 1000"
        return Verdict(finding, dataset, INCONCLUSIVE, f"missing {missing}{label}", rule)
    small_ns = sorted(n for n, g in (small or {}).items() if n < 500 and any(c.n for c in g.values()))
    k = len(cells)
    d_est = S.contrast([fp, *cells], [1.0] + [-1.0 / k] * k, n_test)
    trend_est = {}
    for n in small_ns:
        _, sc = _cells(small[n])
        trend_est[n] = S.contrast([*sc, *cells], [1.0 / len(sc)] * len(sc) + [-1.0 / k] * k, n_test)
    head = (f"N = {n_value}{label}: FP {100 * fp.mean:.2f} %, CTF {100 * float(np.mean([c.mean for c in cells])):.2f} % "
            f"(mean over {k} gap(s)), deficit {_pp(d_est.est)}")
    one = _one_seed(finding, dataset, rule, head, [d_est, *trend_est.values()])
    if one is not None:
        return one
    n_viol = 1 + k * (k - 1) // 2 + len(small_ns)
    a_v = ALPHA / n_viol
    near = S.noninferiority(d_est, NEAR)
    near_out = S.VIOLATED if S.noninferiority(d_est, NEAR, a_v).outcome == S.VIOLATED else near.outcome
    gt = gap_tests(by_gap, n_test, a_v)
    if gt is None:
        gap_out, gap_txt = S.NOT_SHOWN, "one gap: insensitivity untested"
    else:
        gap_out = S.VIOLATED if gt.violated else S.SHOWN if gt.insensitive else S.NOT_SHOWN
        g0, g1, wp = gt.worst_pair
        gap_txt = (f"worst gap pair {time_label(g0)} vs {time_label(g1)} {_ci(wp)} vs ±{_pp(GAP_MARGIN)} "
                   f"(provable margin at 80 %: {_pp(wp.mde)})")
    trend_tests = {n: S.noninferiority(e, TREND_MARGIN) for n, e in trend_est.items()}
    if not small_ns:
        trend_out, trend_txt = S.NOT_SHOWN, "trend untested (no N < 500)"
    else:
        viol = [n for n, e in trend_est.items() if S.noninferiority(e, TREND_MARGIN, a_v).outcome == S.VIOLATED]
        trend_out = (S.VIOLATED if viol else
                     S.SHOWN if all(t.outcome == S.SHOWN for t in trend_tests.values()) else S.NOT_SHOWN)
        trend_txt = "; ".join(f"N = {n} minus N = {n_value} {100 * t.estimate.est:+.2f} pp ({_ci(t)})"
                              for n, t in trend_tests.items())
    text = (f"{head} ({_ci(near)}; non-inferiority at {_pp(NEAR)} {near_out}, provable margin at 80 %: "
            f"{_pp(near.mde)}, power at {_pp(NEAR)}: {100 * near.power:.0f} %); insensitive to t_gap: {gap_out} "
            f"({gap_txt}); trend: {trend_out} ({trend_txt})")
    outs = {"near software": near_out, "insensitive to t_gap": gap_out, "trend": trend_out}
    if S.VIOLATED in outs.values():
        status = FAILS
        text += " -> violated: " + ", ".join(k for k, o in outs.items() if o == S.VIOLATED)
    elif all(o == S.SHOWN for o in outs.values()):
        status = HOLDS
    else:
        status = INCONCLUSIVE
        text += " -> not shown: " + ", ".join(k for k, o in outs.items() if o != S.SHOWN)
    nums = {"N": n_value, "fp_mean": fp.mean, "deficit": d_est.est, "se_deficit": d_est.se, "near": near_out,
            "gap": gap_out, "trend": trend_out, "gap_status": gt.status if gt else "untested",
            "trend_by_N": {n: t.estimate.est for n, t in trend_tests.items()}}
    v = _attach(Verdict(finding, dataset, status, text, rule, nums), near,
                f"deficit vs FP; power = P(non-inferiority at {_pp(NEAR)} shown | true deficit 0)")
    ests = [d_est, *trend_est.values()] + (gt.estimates if gt else [])
    return _seed_gate(v, ests)


# ----------------------------------------------------------------------------------- (ii)


def verdict_ii(by_n: Mapping[int, Mapping[float, Cell]], n_test: int | None, dataset: str, label: str = "") -> Verdict:
    finding = "(ii) N < 500: accuracy depends on t_gap"
    rule = ("per N < 500: insensitive if every pair of gaps is within "
            f"±{_pp(GAP_MARGIN)} (TOST); else dependent if the paired slope of accuracy on log10(t_gap) is "
            f"significant (t test, two-sided, alpha {ALPHA:g}); "
            "holds if every such N is dependent, does not hold if every one is insensitive, else inconclusive")
    small = {n: g for n, g in by_n.items() if n < 500 and len([c for c in g.values() if c.n]) >= 2}
    if not small:
        return Verdict(finding, dataset, INCONCLUSIVE, f"no N < 500 with >= 2 gaps{label}", rule)
    res = {n: gap_tests(small[n], n_test) for n in sorted(small)}
    ests = [e for g in res.values() for e in g.estimates]
    head = "; ".join(f"N = {n}: change over t_gap {_pp(g.trend.estimate.est)}" for n, g in res.items()) + label
    one = _one_seed(finding, dataset, rule, head, ests)
    if one is not None:
        return one
    text = "; ".join(f"N = {n}: {g.text()}" for n, g in res.items()) + label
    statuses = [g.status for g in res.values()]
    status = (HOLDS if all(s == "dependent" for s in statuses) else
              FAILS if all(s == "insensitive" for s in statuses) else INCONCLUSIVE)
    # the deciding estimate: the N with the weakest evidence of dependence
    weakest = max(res, key=lambda n: res[n].trend.p)
    nums = {f"N={n}": {"status": g.status, "change": g.trend.estimate.est, "p": g.trend.p, "mde": g.trend.mde}
            for n, g in res.items()}
    v = _attach(Verdict(finding, dataset, status, text, rule, nums), res[weakest].trend,
                f"change over the gap span at N = {weakest} (weakest); power to detect {_pp(MIN_EFFECT)}")
    return _seed_gate(v, ests)


# ----------------------------------------------------------------------------------- (iii)


def verdict_iii(arms: Mapping[str, Cell], n_test: int | None, dataset: str, label: str = "") -> Verdict:
    """(iii) from the existing ablation arms (the second view; the 2x2 factorial is the first)."""
    finding = "(iii) update noise, not bias, is the causal factor"
    rule = ("L_b = FP - ctf_expected (bias only), L_n = FP - ideal_gauss (noise matched to ctf), L = FP - ctf; "
            "holds if L_n - L_b > 0 and L_n > 0 (both significant); does not hold if L_b - L_n > 0 significantly, "
            f"or if L_n is within ±{_pp(MIN_EFFECT)} (TOST) while L > 0 significantly; else inconclusive")
    need = ("fp", "ctf_expected", "ideal_gauss", "ctf")
    missing = [a for a in need if a not in arms or not arms[a].n]
    if missing:
        return Verdict(finding, dataset, INCONCLUSIVE, f"missing arms: {', '.join(missing)}{label}", rule)
    fp, ex, ga, full = (arms[a] for a in need)
    lb = S.contrast([fp, ex], [1, -1], n_test)
    ln = S.contrast([fp, ga], [1, -1], n_test)
    lf = S.contrast([fp, full], [1, -1], n_test)
    c = S.contrast([ex, ga], [1, -1], n_test)        # L_n - L_b
    ests = [lb, ln, lf, c]
    head = f"loss vs FP: bias only {_pp(lb.est)}, noise only {_pp(ln.est)}, full CTF {_pp(lf.est)}{label}"
    one = _one_seed(finding, dataset, rule, head, ests)
    if one is not None:
        return one
    t_c = S.difference(c, MIN_EFFECT)
    t_ln = S.difference(ln, MIN_EFFECT)
    t_c_v = S.difference(c, MIN_EFFECT, ALPHA / 2)
    t_ln_eq = S.equivalence(ln, MIN_EFFECT, ALPHA / 2)
    t_lf = S.difference(lf, MIN_EFFECT, ALPHA / 2)
    text = (f"{head}; L_n - L_b {100 * c.est:+.2f} pp ({_ci(t_c)}, p = {t_c.p:.2g}, detectable at 80 %: "
            f"{_pp(t_c.mde)}); L_n {_ci(t_ln)}")
    if "ctf_comp" in arms and arms["ctf_comp"].n:
        comp = S.contrast([arms["ctf_comp"], full], [1, -1], n_test)
        if comp.usable:
            text += f"; compensation changes the full model by {100 * comp.est:+.2f} pp ({_ci(S.difference(comp, 0.0))})"
    if t_c.outcome == S.SHOWN and c.est > 0 and t_ln.outcome == S.SHOWN and ln.est > 0:
        status, text = HOLDS, text + " -> the noise-only arm loses more"
    elif t_c_v.outcome == S.SHOWN and c.est < 0:
        status, text = FAILS, text + " -> the bias-only arm loses more"
    elif t_ln_eq.outcome == S.SHOWN and t_lf.outcome == S.SHOWN and lf.est > 0:
        status, text = FAILS, text + " -> the full model loses, the noise-only arm is equivalent to FP"
    else:
        status, text = INCONCLUSIVE, text + " -> no significant difference"
    nums = {"L_bias": lb.est, "L_noise": ln.est, "L_full": lf.est, "noise_minus_bias": c.est, "se_diff": c.se}
    v = _attach(Verdict(finding, dataset, status, text, rule, nums), t_c,
                f"L_n - L_b; power to detect {_pp(MIN_EFFECT)}")
    return _seed_gate(v, ests)


LEVELS = ("small", "large")
FACTORIAL_KEYS = tuple(itertools.product(LEVELS, LEVELS))
"""(bias design, noise design): ('small', 'small') is the small-N arm, ('large', 'large') the large-N arm."""


@dataclass
class Factorial:
    """Effects of the 2x2 design; each a two-sided :class:`stats.Test` (95 % CI)."""

    bias: S.Test          # E_b = mean over N_sigma of y(large_b) - y(small_b)
    noise: S.Test         # E_sigma = mean over N_b of y(large_sigma) - y(small_sigma)
    interaction: S.Test   # [y(LL) - y(SL)] - [y(LS) - y(SS)]
    noise_minus_bias: S.Test   # E_sigma - E_b = y(small_b, large_sigma) - y(large_b, small_sigma)


def factorial_effects(arms: Mapping[tuple[str, str], Cell], n_test: int | None, alpha: float = ALPHA) -> Factorial:
    """Main effects and interaction of the 2x2 arms keyed (bias level, noise level)."""
    cells = [arms[k] for k in FACTORIAL_KEYS]       # SS, SL, LS, LL
    w = {"bias": [-0.5, -0.5, 0.5, 0.5], "noise": [-0.5, 0.5, -0.5, 0.5], "interaction": [1, -1, -1, 1],
         "noise_minus_bias": [0, 1, -1, 0]}
    return Factorial(**{k: S.difference(S.contrast(cells, wk, n_test), MIN_EFFECT, alpha) for k, wk in w.items()})


def verdict_factorial(arms: Mapping[tuple[str, str], Cell], n_test: int | None, dataset: str, label: str = "",
                      compensated: Cell | None = None, sizes: tuple[int, int] | None = None) -> Verdict:
    """(iii) from the 2x2 factorial: ``arms[(bias level, noise level)]``, levels 'small' / 'large'
    (N_b, N_sigma); ``compensated``: an optional compensated small-N arm, a second candidate
    improvement over (small, small); ``sizes``: (N small, N large) for the text."""
    finding = "(iii) 2x2 factorial: update noise, not bias, explains the improvement"
    rule = ("improvement: y(large,large) or a compensated arm > y(small,small) (one-sided t, Bonferroni); none -> "
            "no improvement to explain; then E_noise > 0 and E_noise - E_bias > 0 (two-sided, both significant) -> "
            "holds; E_noise - E_bias < 0 significantly, or E_noise within "
            f"±{_pp(MIN_EFFECT)} (TOST) -> does not hold; else inconclusive")
    missing = [f"({b}, {s})" for b, s in FACTORIAL_KEYS if (b, s) not in arms or not arms[(b, s)].n]
    if missing:
        return Verdict(finding, dataset, INCONCLUSIVE, f"missing factorial arms: {', '.join(missing)}{label}", rule)
    where = f" (N small = {sizes[0]}, large = {sizes[1]})" if sizes else ""
    ss = arms[("small", "small")]
    cand = {"large N": S.contrast([arms[("large", "large")], ss], [1, -1], n_test)}
    if compensated is not None and compensated.n:
        cand["compensation"] = S.contrast([compensated, ss], [1, -1], n_test)
    cells = [arms[k] for k in FACTORIAL_KEYS]
    effect_ests = [S.contrast(cells, w, n_test) for w in ([-0.5, -0.5, 0.5, 0.5], [-0.5, 0.5, -0.5, 0.5])]
    ests = [*cand.values(), *effect_ests]
    head = ("improvement over the small-N arm: " + ", ".join(f"{k} {100 * e.est:+.2f} pp" for k, e in cand.items())
            + where + label)
    one = _one_seed(finding, dataset, rule, head, ests)
    if one is not None:
        return one
    a_imp = ALPHA / len(cand)
    imp = {k: S.difference(e, MIN_EFFECT, a_imp, sided=1) for k, e in cand.items()}
    imp_txt = "; ".join(f"{k}: {'shown' if t.outcome == S.SHOWN else 'not shown'}, {100 * t.estimate.est:+.2f} pp "
                        f"(one-sided p = {t.p:.2g}, detectable at 80 %: {_pp(t.mde)}, power at {_pp(MIN_EFFECT)}: "
                        f"{100 * t.power:.0f} %)" for k, t in imp.items())
    best = min(imp, key=lambda k: imp[k].p)
    if not any(t.outcome == S.SHOWN for t in imp.values()):
        v = Verdict(finding, dataset, NO_IMPROVEMENT, f"{NO_IMPROVEMENT}{where}{label}: {imp_txt}", rule,
                    {"improvement": {k: t.estimate.est for k, t in imp.items()}})
        return _seed_gate(_attach(v, imp[best], f"improvement by {best}; power to detect {_pp(MIN_EFFECT)}"), ests)
    f = factorial_effects(arms, n_test)
    f_v = factorial_effects(arms, n_test, ALPHA / 2)
    noise_eq = S.equivalence(f.noise.estimate, MIN_EFFECT, ALPHA / 2)

    def eff(name: str, t: S.Test) -> str:
        return f"{name} {100 * t.estimate.est:+.2f} pp ({_ci(t)}, p = {t.p:.2g})"

    text = (f"improvement shown ({imp_txt}){where}{label}; main effects: {eff('bias (N_b)', f.bias)}, "
            f"{eff('noise (N_sigma)', f.noise)}; {eff('interaction', f.interaction)}; "
            f"{eff('noise minus bias', f.noise_minus_bias)}; detectable at 80 %: {_pp(f.noise.mde)}")
    if f.interaction.outcome == S.SHOWN:
        text += "; the interaction is significant: each main effect is an average over the other factor"
    if (f.noise.outcome == S.SHOWN and f.noise.estimate.est > 0 and f.noise_minus_bias.outcome == S.SHOWN
            and f.noise_minus_bias.estimate.est > 0):
        status, text = HOLDS, text + " -> the noise of the larger design explains more of the improvement"
    elif f_v.noise_minus_bias.outcome == S.SHOWN and f_v.noise_minus_bias.estimate.est < 0:
        status, text = FAILS, text + " -> the bias of the larger design explains more of the improvement"
    elif noise_eq.outcome == S.SHOWN:
        status, text = FAILS, text + f" -> the noise effect is within ±{_pp(MIN_EFFECT)} of zero"
    else:
        status, text = INCONCLUSIVE, text + " -> the effects are not resolved"
    nums = {k: {"effect": t.estimate.est, "ci": t.ci, "p": t.p, "se": t.estimate.se}
            for k, t in (("bias", f.bias), ("noise", f.noise), ("interaction", f.interaction),
                         ("noise_minus_bias", f.noise_minus_bias))}
    nums["improvement"] = {k: t.estimate.est for k, t in imp.items()}
    v = _attach(Verdict(finding, dataset, status, text, rule, nums), f.noise,
                f"noise main effect; power to detect {_pp(MIN_EFFECT)}")
    return _seed_gate(v, ests + [f.interaction.estimate, f.noise_minus_bias.estimate])


def overall(verdicts: list[Verdict]) -> str:
    """One status over datasets: all the same -> that status, otherwise inconclusive."""
    st = {v.status for v in verdicts}
    if len(st) == 1:
        return st.pop()
    return INCONCLUSIVE
