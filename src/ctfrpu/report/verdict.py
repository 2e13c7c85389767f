"""Verdicts on the system paper's findings -- OUR decision rules, on accuracies over seeds.

Findings of arXiv:2402.09792 (abstract):

(i)   for N ~ 1000 the accuracy approaches software (floating point) and hardly depends on t_gap;
(ii)  for N < 500 the accuracy depends on t_gap;
(iii) the lower noise (not the bias) of the weight updates is the likely significant factor.

Each verdict is "holds", "does not hold" or "inconclusive" *in our model*. Statistics (accuracies
as fractions):

* the seed-to-seed standard deviation ``sd`` is pooled over all cells (one cell = one config
  without its seed) of the comparison that have >= 2 seeds, and floored by the test-set sampling
  sd ``sqrt(a (1 - a) / n_test)``; the standard error of a cell mean is ``sd / sqrt(n)``;
* **gap sensitivity** of one N: the range R = max - min over t_gap of the cell means, compared
  with tau = 2 sqrt(2) se (two standard errors of the difference of two cell means): *dependent*
  if R > max(tau, MIN_EFFECT), *insensitive* if R <= max(tau, MIN_EFFECT) and tau <= NOISY,
  else *inconclusive* (too noisy to tell). A one-way ANOVA p-value over the gaps is reported too;
* **near software**: D = FP mean - mean over t_gap of the N ~ 1000 cell means; *near* if
  D <= NEAR + 2 se_D, where se_D combines the two standard errors; inconclusive if 2 se_D > NEAR;
* (i) holds if near and insensitive; does not hold if not near or dependent; else inconclusive;
* (ii) holds if every tested N < 500 is gap-dependent, does not hold if none is (all insensitive),
  else inconclusive;
* (iii) with the accuracy losses against FP of the bias-only arm L_b (``ctf_expected``) and of
  the noise-only arm L_n (``ideal_gauss``, noise matched to the full CTF model): holds if
  L_n - L_b > 2 se and L_n > max(2 se_n, MIN_EFFECT); does not hold if L_b - L_n > 2 se, or if
  the full model loses significantly (L > max(2 se, MIN_EFFECT)) while L_n does not; else
  inconclusive.

With a single seed everywhere, the seed-to-seed spread is unknown: the verdict is "inconclusive".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"

NEAR = 0.02
"""(i): 'approaches software' = within 2 percentage points of the FP mean (our threshold)."""
MIN_EFFECT = 0.01
"""Smallest accuracy difference we call a real dependence: 1 percentage point (our threshold)."""
NOISY = 0.03
"""Above this tau (2 SE of a difference) we cannot call anything insensitive (our threshold)."""


@dataclass
class Cell:
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else math.nan


@dataclass
class Verdict:
    finding: str
    dataset: str
    status: str
    summary: str
    rule: str
    numbers: dict[str, Any] = field(default_factory=dict)


def pooled_sd(cells: list[Cell], n_test: int) -> tuple[float, bool]:
    """(sd, has_replicates): the pooled seed sd of the cells with >= 2 seeds, floored by the
    test-set sampling sd at the mean accuracy of all cells."""
    num = den = 0
    for c in cells:
        if c.n >= 2:
            num += (c.n - 1) * c.std ** 2
            den += c.n - 1
    means = [c.mean for c in cells if c.n]
    a = float(np.mean(means)) if means else 0.5
    floor = math.sqrt(max(a * (1 - a), 1e-6) / max(n_test, 1))
    if den == 0:
        return floor, False
    return max(math.sqrt(num / den), floor), True


def se(cell: Cell, sd: float) -> float:
    return sd / math.sqrt(max(cell.n, 1))


def gap_sensitivity(by_gap: dict[float, Cell], sd: float) -> dict[str, Any]:
    """Range over t_gap vs tau (see the module docstring)."""
    cells = [c for c in by_gap.values() if c.n]
    if len(cells) < 2:
        return {"status": INCONCLUSIVE, "range": math.nan, "tau": math.nan, "p_anova": math.nan,
                "why": "fewer than 2 gaps"}
    means = [c.mean for c in cells]
    rng = max(means) - min(means)
    n_min = min(c.n for c in cells)
    tau = 2 * math.sqrt(2) * sd / math.sqrt(n_min)
    p = math.nan
    if all(c.n >= 2 for c in cells):
        from scipy import stats

        vals = [c.values for c in cells]
        if any(np.std(v) > 0 for v in vals):
            p = float(stats.f_oneway(*vals).pvalue)
    thr = max(tau, MIN_EFFECT)
    if rng > thr:
        status = "dependent"
    elif tau <= NOISY:
        status = "insensitive"
    else:
        status = INCONCLUSIVE
    return {"status": status, "range": rng, "tau": tau, "threshold": thr, "p_anova": p}


def _pp(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f} pp"


def verdict_i(fp: Cell, by_gap: dict[float, Cell], n_test: int, dataset: str, n_value: int | None,
              label: str = "") -> Verdict:
    finding = "(i) N ~ 1000: near software and insensitive to t_gap"
    rule = (f"near: FP - mean(N~1000) <= {_pp(NEAR)} + 2 se; insensitive: max-min over t_gap <= "
            f"max(2 sqrt(2) se, {_pp(MIN_EFFECT)}); se from the pooled seed sd")
    if not fp.n or not by_gap or n_value is None:
        missing = "the FP baseline" if not fp.n else "runs at N ~ 1000"
        return Verdict(finding, dataset, INCONCLUSIVE, f"missing {missing}{label}", rule)
    sd, rep = pooled_sd([fp, *by_gap.values()], n_test)
    gs = gap_sensitivity(by_gap, sd)
    m_an = float(np.mean([c.mean for c in by_gap.values() if c.n]))
    n_an = sum(c.n for c in by_gap.values())
    d = fp.mean - m_an
    se_d = math.sqrt(se(fp, sd) ** 2 + sd ** 2 / max(n_an, 1))
    nums = {"N": n_value, "fp_mean": fp.mean, "analog_mean": m_an, "deficit": d, "se_deficit": se_d,
            "gap_range": gs["range"], "tau": gs["tau"], "p_anova": gs["p_anova"], "sd": sd,
            "gap_status": gs["status"]}
    near = d <= NEAR + 2 * se_d
    text = (f"N = {n_value}{label}: FP {100 * fp.mean:.2f} %, CTF {100 * m_an:.2f} % (mean over t_gap): deficit "
            f"{_pp(d)} (se {_pp(se_d)}); range over t_gap {_pp(gs['range'])} (threshold "
            f"{_pp(gs.get('threshold', math.nan))}) -> {gs['status']}")
    if not rep:
        return Verdict(finding, dataset, INCONCLUSIVE, text + "; single seed: seed spread unknown", rule, nums)
    if not near or gs["status"] == "dependent":
        why = []
        if not near:
            why.append("not near software")
        if gs["status"] == "dependent":
            why.append("depends on t_gap")
        return Verdict(finding, dataset, FAILS, text + "; " + " and ".join(why), rule, nums)
    if 2 * se_d > NEAR or gs["status"] == INCONCLUSIVE:
        return Verdict(finding, dataset, INCONCLUSIVE, text + "; too noisy to decide", rule, nums)
    return Verdict(finding, dataset, HOLDS, text, rule, nums)


def verdict_ii(by_n: dict[int, dict[float, Cell]], n_test: int, dataset: str, label: str = "") -> Verdict:
    finding = "(ii) N < 500: accuracy depends on t_gap"
    rule = (f"per N < 500: dependent if max-min over t_gap > max(2 sqrt(2) se, {_pp(MIN_EFFECT)}); "
            "holds if every such N is dependent, does not hold if none is")
    small = {n: g for n, g in by_n.items() if n < 500 and len([c for c in g.values() if c.n]) >= 2}
    if not small:
        return Verdict(finding, dataset, INCONCLUSIVE, f"no N < 500 with >= 2 gaps{label}", rule)
    cells = [c for g in small.values() for c in g.values()]
    sd, rep = pooled_sd(cells, n_test)
    parts, statuses, nums = [], [], {"sd": sd}
    for n in sorted(small):
        gs = gap_sensitivity(small[n], sd)
        statuses.append(gs["status"])
        nums[f"N={n}"] = gs
        p = gs["p_anova"]
        parts.append(f"N = {n}: range {_pp(gs['range'])} vs threshold {_pp(gs['threshold'])}"
                     + (f", ANOVA p = {p:.2g}" if math.isfinite(p) else "") + f" -> {gs['status']}")
    text = "; ".join(parts) + label
    if not rep:
        return Verdict(finding, dataset, INCONCLUSIVE, text + "; single seed: seed spread unknown", rule, nums)
    if all(s == "dependent" for s in statuses):
        return Verdict(finding, dataset, HOLDS, text, rule, nums)
    if all(s == "insensitive" for s in statuses):
        return Verdict(finding, dataset, FAILS, text, rule, nums)
    return Verdict(finding, dataset, INCONCLUSIVE, text, rule, nums)


def verdict_iii(arms: dict[str, Cell], n_test: int, dataset: str, label: str = "") -> Verdict:
    finding = "(iii) update noise, not bias, is the causal factor"
    rule = ("L_b = FP - ctf_expected (bias only), L_n = FP - ideal_gauss (noise matched to ctf), "
            f"L = FP - ctf; holds if L_n - L_b > 2 se and L_n > max(2 se, {_pp(MIN_EFFECT)}); does not "
            "hold if L_b - L_n > 2 se, or if L is significant while L_n is not")
    need = ("fp", "ctf_expected", "ideal_gauss", "ctf")
    missing = [a for a in need if a not in arms or not arms[a].n]
    if missing:
        return Verdict(finding, dataset, INCONCLUSIVE, f"missing arms: {', '.join(missing)}{label}", rule)
    sd, rep = pooled_sd([arms[a] for a in arms if arms[a].n], n_test)
    fp = arms["fp"]
    lb = fp.mean - arms["ctf_expected"].mean
    ln = fp.mean - arms["ideal_gauss"].mean
    lf = fp.mean - arms["ctf"].mean
    se_fp = se(fp, sd)
    se_b = math.hypot(se_fp, se(arms["ctf_expected"], sd))
    se_n = math.hypot(se_fp, se(arms["ideal_gauss"], sd))
    se_f = math.hypot(se_fp, se(arms["ctf"], sd))
    se_bn = math.hypot(se(arms["ctf_expected"], sd), se(arms["ideal_gauss"], sd))
    nums = {"L_bias": lb, "L_noise": ln, "L_full": lf, "se_bias": se_b, "se_noise": se_n, "se_full": se_f,
            "se_diff": se_bn, "sd": sd}
    if "ctf_comp" in arms and arms["ctf_comp"].n:
        nums["comp_gain"] = arms["ctf_comp"].mean - arms["ctf"].mean
    text = (f"loss vs FP: bias only {_pp(lb)}, noise only {_pp(ln)}, full CTF {_pp(lf)} (se of a difference "
            f"~{_pp(se_bn)})" + label)
    if "comp_gain" in nums:
        text += f"; compensation changes the full model by {nums['comp_gain'] * 100:+.2f} pp"
    if not rep:
        return Verdict(finding, dataset, INCONCLUSIVE, text + "; single seed: seed spread unknown", rule, nums)
    if ln - lb > 2 * se_bn and ln > max(2 * se_n, MIN_EFFECT):
        return Verdict(finding, dataset, HOLDS, text + " -> the noise-only arm loses more", rule, nums)
    if lb - ln > 2 * se_bn:
        return Verdict(finding, dataset, FAILS, text + " -> the bias-only arm loses more", rule, nums)
    if lf > max(2 * se_f, MIN_EFFECT) and not ln > max(2 * se_n, MIN_EFFECT):
        return Verdict(finding, dataset, FAILS, text + " -> the full model loses, the noise-only arm does not",
                       rule, nums)
    return Verdict(finding, dataset, INCONCLUSIVE, text + " -> no significant difference", rule, nums)


def overall(verdicts: list[Verdict]) -> str:
    """One status over datasets: all the same -> that status, otherwise inconclusive."""
    st = {v.status for v in verdicts}
    if len(st) == 1:
        return st.pop()
    return INCONCLUSIVE
