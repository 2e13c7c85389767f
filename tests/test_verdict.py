"""Verdict statistics (issue 10 item 4): synthetic accuracies where the right answer is known, and
the statistical properties of the tests (false-pass rates, power, interval coverage) over many
synthetic replications with fixed seeds; tolerances from the binomial sd of the replication count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ctfrpu.report import stats as S
from ctfrpu.report import verdict as V


def paired(means: dict, sd: float, n: int, rng, seed_sd: float = 0.01) -> dict:
    """Cells with seeds 0..n-1: y_ks = mu_k + u_s + e_ks (u: the shared seed effect)."""
    u = rng.normal(0, seed_sd, n)
    return {k: V.Cell(list(mu + u + rng.normal(0, sd, n)), list(range(n))) for k, mu in means.items()}


def exact(mean: float, sd: float, n: int = 3, seeds: bool = True) -> V.Cell:
    """A cell with exactly this mean and sd."""
    z = np.linspace(-1, 1, n)
    z = z / z.std(ddof=1)
    return V.Cell(list(mean + sd * z), list(range(n)) if seeds else None)


def tolerance(p: float, reps: int, k: float = 4.0) -> float:
    return k * math.sqrt(p * (1 - p) / reps)


# ------------------------------------------------------------------ the D = 2.66 +- 1.00 pp case


def old_near_rule(d: float, se: float, near: float = 0.02) -> bool:
    """The rule this module replaced: 'near' if D <= NEAR + 2 se (lower bound inside the margin)."""
    return d <= near + 2 * se


def test_mnist_medium_deficit_old_rule_holds_new_rule_does_not():
    # results/medium, MNIST: FP 91.63 +- 0.52 %, N = 1000 at 0.1 us 88.91 +- 1.81 %, at 100 us 89.03 +- 1.56 %
    d, se = 0.0266, 0.0100
    assert old_near_rule(d, se)                                    # reported as "holds"
    t = S.noninferiority(S.Estimate(d, se, 1e6, 3, False), V.NEAR)  # D + 1.645 se = 4.3 pp > 2 pp
    assert t.ci[1] == pytest.approx(d + 1.645 * se, abs=1e-4)
    assert t.outcome != S.SHOWN
    # the same through verdict_i from cells with the committed means and sds (3 seeds, unpaired)
    fp = exact(0.916333, 0.00521664, seeds=False)
    g = {1e-7: exact(0.8891, 0.0181141, seeds=False), 1e-4: exact(0.8903, 0.0155888, seeds=False)}
    v = V.verdict_i(fp, g, 10000, "mnist", 1000)
    assert v.effect == pytest.approx(0.0266, abs=2e-4) and v.se == pytest.approx(0.0100, abs=2e-4)
    assert old_near_rule(v.effect, v.se)
    assert v.status != V.HOLDS
    assert "non-inferiority at 2.00 pp not shown" in v.summary
    assert v.mde > V.NEAR and v.power < 0.8           # the grid could not have shown it


def test_near_software_holds_fails_and_underpowered():
    rng = np.random.default_rng(0)
    small = {100: None}
    # holds: 0.5 pp below FP, flat in the gap, N = 1000 above N = 100; 6 paired seeds, sd 0.2 pp
    c = paired({"fp": 0.95, "a": 0.945, "b": 0.945, "s1": 0.93, "s2": 0.93}, 0.002, 6, rng)
    small = {100: {1e-7: c["s1"], 1e-4: c["s2"]}}
    v = V.verdict_i(c["fp"], {1e-7: c["a"], 1e-4: c["b"]}, None, "mnist", 1000, small=small)
    assert v.status == V.HOLDS, v.summary
    assert v.paired and v.n == 6 and v.ci[1] <= V.NEAR
    # does not hold: 6 pp below FP, tightly measured
    c = paired({"fp": 0.95, "a": 0.89, "b": 0.89, "s1": 0.85, "s2": 0.85}, 0.002, 6, rng)
    v = V.verdict_i(c["fp"], {1e-7: c["a"], 1e-4: c["b"]}, None, "mnist", 1000,
                    small={100: {1e-7: c["s1"], 1e-4: c["s2"]}})
    assert v.status == V.FAILS and "near software" in v.summary.split("violated:")[1]
    # underpowered: true deficit 0 but a 3 pp seed sd with 3 seeds -> inconclusive, and it says why
    c = paired({"fp": 0.95, "a": 0.95, "b": 0.95, "s1": 0.93, "s2": 0.93}, 0.03, 3, rng)
    v = V.verdict_i(c["fp"], {1e-7: c["a"], 1e-4: c["b"]}, None, "mnist", 1000,
                    small={100: {1e-7: c["s1"], 1e-4: c["s2"]}})
    assert v.status == V.INCONCLUSIVE and v.mde > V.NEAR and v.power < 0.5


def test_trend_violated_and_untested():
    rng = np.random.default_rng(1)
    # near software and flat in the gap, but N = 100 is 4 pp *above* N = 1000: the stated trend fails
    c = paired({"fp": 0.95, "a": 0.94, "b": 0.94, "s1": 0.98, "s2": 0.98}, 0.002, 5, rng)
    v = V.verdict_i(c["fp"], {1e-7: c["a"], 1e-4: c["b"]}, None, "mnist", 1000,
                    small={100: {1e-7: c["s1"], 1e-4: c["s2"]}})
    assert v.status == V.FAILS and "trend" in v.summary.split("violated:")[1]
    v = V.verdict_i(c["fp"], {1e-7: c["a"], 1e-4: c["b"]}, None, "mnist", 1000)
    assert v.status == V.INCONCLUSIVE and "trend untested" in v.summary


def test_noninferiority_false_pass_rate_at_the_margin_is_alpha():
    """True D = margin: 'near software' must pass in about 5 % of replications (paired, 5 seeds)."""
    rng = np.random.default_rng(2)
    reps, n, m = 2000, 5, V.NEAR
    passes = 0
    for _ in range(reps):
        c = paired({"fp": 0.95, "x": 0.95 - m}, 0.01, n, rng, seed_sd=0.02)
        passes += S.noninferiority(S.contrast([c["fp"], c["x"]], [1, -1], None), m).outcome == S.SHOWN
    assert abs(passes / reps - S.ALPHA) < tolerance(S.ALPHA, reps)


def test_noninferiority_power_matches_simulation():
    """At a true D = 0 the pass rate equals the stated power (noncentral t, exact under normality)."""
    rng = np.random.default_rng(3)
    reps, n, sd, m = 2000, 4, 0.01, 0.015
    passes = 0
    for _ in range(reps):
        c = paired({"fp": 0.95, "x": 0.95}, sd, n, rng)
        passes += S.noninferiority(S.contrast([c["fp"], c["x"]], [1, -1], None), m).outcome == S.SHOWN
    predicted = S.power_one_sided(m, sd * math.sqrt(2 / n), n - 1)
    assert abs(passes / reps - predicted) < tolerance(predicted, reps)
    # the MDE is where that power is 80 %
    se = sd * math.sqrt(2 / n)
    assert S.power_one_sided(S.mde(se, n - 1, sided=1), se, n - 1) == pytest.approx(0.8, abs=1e-6)
    assert S.power_two_sided(S.mde(se, n - 1), se, n - 1) == pytest.approx(0.8, abs=1e-6)


# ------------------------------------------------------------------ equivalence (TOST)


def test_equivalence_both_ways_and_non_significance_is_not_equivalence():
    rng = np.random.default_rng(4)
    c = paired({"a": 0.90, "b": 0.901}, 0.001, 5, rng)
    e = S.contrast([c["b"], c["a"]], [1, -1], None)
    assert S.equivalence(e, 0.01).outcome == S.SHOWN
    c = paired({"a": 0.90, "b": 0.93}, 0.001, 5, rng)
    assert S.equivalence(S.contrast([c["b"], c["a"]], [1, -1], None), 0.01).outcome == S.VIOLATED
    c = paired({"a": 0.90, "b": 0.90}, 0.03, 3, rng)           # noisy: not significant, not equivalent
    e = S.contrast([c["b"], c["a"]], [1, -1], None)
    assert S.difference(e, 0.01).outcome == S.NOT_SHOWN
    assert S.equivalence(e, 0.01).outcome == S.NOT_SHOWN
    t = S.equivalence(e, 0.01)
    assert t.mde > 0.01 and t.power < 0.8


def test_equivalence_false_pass_rate_at_the_margin_is_at_most_alpha():
    rng = np.random.default_rng(5)
    reps, m = 2000, 0.01
    passes = 0
    for _ in range(reps):
        c = paired({"a": 0.90, "b": 0.90 + m}, 0.002, 5, rng)
        passes += S.equivalence(S.contrast([c["b"], c["a"]], [1, -1], None), m).outcome == S.SHOWN
    assert passes / reps < S.ALPHA + tolerance(S.ALPHA, reps)
    assert passes / reps > S.ALPHA - tolerance(S.ALPHA, reps)    # se << margin: TOST is exact at the edge


# ------------------------------------------------------------------ t_gap dependence, > 2 gaps

GAPS = (1e-7, 1e-6, 1e-5, 1e-4)


def test_trend_weights():
    w = S.trend_weights([1e-7, 1e-4])
    assert w == pytest.approx([-1, 1])
    w = S.trend_weights(GAPS)
    y = 0.9 + 0.01 * np.log10(GAPS)        # 1 pp per decade: 3 pp over the span
    assert float(w @ y) == pytest.approx(0.03)
    assert float(w.sum()) == pytest.approx(0.0)


def test_verdict_ii_with_four_gaps():
    rng = np.random.default_rng(6)
    lin = {g: 0.90 - 0.01 * (np.log10(g) + 7) for g in GAPS}            # 3 pp loss over 0.1..100 us
    flat = {g: 0.90 for g in GAPS}
    bump = {1e-7: 0.90, 1e-6: 0.90, 1e-5: 0.90, 1e-4: 0.90}
    dep = {100: paired(lin, 0.002, 5, rng), 300: paired(lin, 0.002, 5, rng)}
    v = V.verdict_ii(dep, None, "mnist")
    assert v.status == V.HOLDS and v.effect == pytest.approx(-0.03, abs=0.005) and v.paired
    ins = {100: paired(flat, 0.0015, 5, rng), 300: paired(bump, 0.0015, 5, rng)}
    v = V.verdict_ii(ins, None, "mnist")
    assert v.status == V.FAILS, v.summary
    mixed = {100: dep[100], 300: ins[300]}
    assert V.verdict_ii(mixed, None, "mnist").status == V.INCONCLUSIVE
    noisy = {100: paired(flat, 0.03, 3, rng)}
    v = V.verdict_ii(noisy, None, "mnist")
    assert v.status == V.INCONCLUSIVE and v.mde > V.MIN_EFFECT and "undecided" in v.summary
    assert V.verdict_ii({1000: dep[100]}, None, "mnist").status == V.INCONCLUSIVE


def test_gap_trend_type_one_error_with_three_gaps():
    rng = np.random.default_rng(7)
    reps, hits = 1000, 0
    for _ in range(reps):
        gt = V.gap_tests(paired({g: 0.9 for g in GAPS[:3]}, 0.005, 4, rng), None)
        hits += gt.dependent
    assert abs(hits / reps - S.ALPHA) < tolerance(S.ALPHA, reps)


def test_gap_equivalence_uses_every_pair():
    rng = np.random.default_rng(8)
    # the middle gap is 3 pp off: the end points agree, the trend is ~0, equivalence must fail
    c = paired({1e-7: 0.9, 1e-5: 0.93, 1e-3: 0.9}, 0.001, 5, rng)
    gt = V.gap_tests(c, None)
    assert not gt.insensitive and gt.violated and gt.worst_pair[:2] in ((1e-7, 1e-5), (1e-5, 1e-3))


# ------------------------------------------------------------------ 2x2 factorial


def factorial(bias: float, noise: float, inter: float, sd: float, n: int, rng, base: float = 0.90):
    mu = {("small", "small"): base, ("large", "small"): base + bias, ("small", "large"): base + noise,
          ("large", "large"): base + bias + noise + inter}
    return paired(mu, sd, n, rng)


def test_factorial_known_effects():
    rng = np.random.default_rng(9)
    arms = factorial(bias=0.002, noise=0.03, inter=0.01, sd=0.002, n=6, rng=rng)
    f = V.factorial_effects(arms, None)
    assert f.bias.estimate.est == pytest.approx(0.002 + 0.005, abs=0.003)     # main effects average the interaction
    assert f.noise.estimate.est == pytest.approx(0.03 + 0.005, abs=0.003)
    assert f.interaction.estimate.est == pytest.approx(0.01, abs=0.004)
    assert f.interaction.outcome == S.SHOWN and f.interaction.ci[0] < 0.01 < f.interaction.ci[1]
    v = V.verdict_factorial(arms, None, "mnist", sizes=(100, 1000))
    assert v.status == V.HOLDS and "interaction is significant" in v.summary
    assert v.effect == pytest.approx(f.noise.estimate.est) and v.ci[0] < v.effect < v.ci[1]


def test_factorial_bias_explains_and_no_improvement():
    rng = np.random.default_rng(10)
    v = V.verdict_factorial(factorial(0.03, 0.001, 0.0, 0.002, 5, rng), None, "mnist")
    assert v.status == V.FAILS and "bias" in v.summary.split("->")[-1]
    # no improvement: all four arms equal -> "no improvement to explain", never "does not hold"
    v = V.verdict_factorial(factorial(0.0, 0.0, 0.0, 0.003, 5, rng), None, "mnist")
    assert v.status == V.NO_IMPROVEMENT and v.summary.startswith("no improvement to explain")
    assert "does not hold" not in v.summary and v.mde > 0 and 0 < v.power < 1
    assert "detectable at 80 %" in v.summary and "power at 1.00 pp" in v.summary
    # ... unless a compensated arm improves on the small-N arm
    arms = factorial(0.0, 0.0, 0.0, 0.003, 5, rng)
    comp = V.Cell([x + 0.03 for x in arms[("small", "small")].values], list(range(5)))
    v = V.verdict_factorial(arms, None, "mnist", compensated=comp)
    assert v.status != V.NO_IMPROVEMENT and "compensation" in v.summary
    v = V.verdict_factorial({("small", "small"): arms[("small", "small")]}, None, "mnist")
    assert v.status == V.INCONCLUSIVE and "missing factorial arms" in v.summary


def test_factorial_interaction_ci_coverage():
    rng = np.random.default_rng(11)
    reps, cover = 600, 0
    for _ in range(reps):
        f = V.factorial_effects(factorial(0.01, 0.02, -0.01, 0.005, 4, rng), None)
        cover += f.interaction.ci[0] < -0.01 < f.interaction.ci[1]
    assert abs(cover / reps - 0.95) < tolerance(0.95, reps)


# ------------------------------------------------------------------ seeds, pairing, the data


def test_one_seed_and_two_seeds():
    fp, a, b = V.Cell([0.95], [0]), V.Cell([0.95], [0]), V.Cell([0.94], [0])
    v = V.verdict_i(fp, {1e-7: a, 1e-4: b}, 10000, "mnist", 1000)
    assert v.status == V.INCONCLUSIVE and v.summary.startswith("inconclusive (one seed)")
    v = V.verdict_ii({100: {1e-7: a, 1e-4: b}}, 10000, "mnist")
    assert v.summary.startswith("inconclusive (one seed)")
    rng = np.random.default_rng(12)
    arms = factorial(0.0, 0.03, 0.0, 0.001, 1, rng)
    assert V.verdict_factorial(arms, None, "mnist").summary.startswith("inconclusive (one seed)")
    arms = factorial(0.0, 0.03, 0.0, 0.001, 2, rng)
    v = V.verdict_factorial(arms, None, "mnist")
    assert v.status == V.INDICATIVE and v.leaning in V.STATUSES and v.summary.startswith("indicative (2 seeds")
    arms = factorial(0.0, 0.03, 0.0, 0.001, 3, rng)
    assert V.verdict_factorial(arms, None, "mnist").status == V.HOLDS


def test_pairing_removes_the_shared_seed_effect():
    rng = np.random.default_rng(13)
    c = paired({"a": 0.90, "b": 0.91}, 0.001, 5, rng, seed_sd=0.03)
    e_p = S.contrast([c["b"], c["a"]], [1, -1], None)
    unp = [V.Cell(list(x.values)) for x in (c["b"], c["a"])]             # same numbers, seeds unknown
    e_u = S.contrast(unp, [1, -1], None)
    assert e_p.paired and not e_u.paired and e_p.est == pytest.approx(e_u.est)
    assert e_p.se < e_u.se / 5 and e_p.df == 4 and e_u.df == 8
    # mismatched seeds: only the common ones pair
    x = V.Cell([0.9, 0.91, 0.92], [0, 1, 2])
    y = V.Cell([0.9, 0.91, 0.92], [1, 2, 3])
    assert S.contrast([x, y], [1, -1], None).n == 2


def test_floor_and_cell_building():
    a, b = V.Cell([0.9, 0.9, 0.9], [0, 1, 2]), V.Cell([0.9, 0.9, 0.9], [0, 1, 2])
    e = S.contrast([a, b], [1, -1], 10000)
    assert e.se == pytest.approx(math.sqrt(0.09 / 10000) * math.sqrt(2) / math.sqrt(3))
    assert not S.contrast([a, b], [1, -1], None).usable
    c = V.Cell([], [])
    c.add(0.9, 0)
    c.add(0.91, 1)
    assert c.seeds == [0, 1]
    c.add(0.92)                                  # a value without a seed: the cell becomes unpaired
    assert c.seeds is None

    class Row:
        def __init__(self, acc, seed):
            self.accuracy, self.seed = acc, seed

    assert V.cell_of([Row(0.9, 3), Row(0.8, 4)]).seeds == [3, 4]


def test_verdict_is_data():
    rng = np.random.default_rng(14)
    v = V.verdict_factorial(factorial(0.0, 0.03, 0.0, 0.002, 5, rng), None, "mnist")
    row = v.row()
    assert len(row) == len(V.VERDICT_COLUMNS) and row[2] == v.status and v.text == v.summary
    assert all(math.isfinite(x) for x in (v.effect, v.se, v.mde, v.power, *v.ci))
    assert v.status in V.STATUSES and v.power_at


def test_contrasts_match_scipy():
    """The paired and unpaired estimates reproduce scipy's own tests."""
    from scipy import stats

    rng = np.random.default_rng(15)
    c = paired({g: 0.9 + 0.002 * k for k, g in enumerate(GAPS)}, 0.003, 6, rng)
    a, b = c[GAPS[0]], c[GAPS[-1]]
    e = S.contrast([b, a], [1, -1], None)
    assert S.difference(e, 0.01).p == pytest.approx(stats.ttest_rel(b.values, a.values).pvalue, rel=1e-9)
    t_ni = S.noninferiority(e, 0.01)          # H1: b - a < 0.01
    ref = stats.ttest_1samp(np.subtract(b.values, a.values) - 0.01, 0.0, alternative="less").pvalue
    assert t_ni.p == pytest.approx(ref, rel=1e-9)
    # the log-gap trend is the one-sample t test of the per-seed regression slopes
    x = np.log10(GAPS)
    slopes = [stats.linregress(x, [c[g].values[s] for g in GAPS]).slope for s in range(6)]
    gt = V.gap_tests(c, None)
    assert gt.trend.estimate.est == pytest.approx(np.mean(slopes) * (x.max() - x.min()))
    assert gt.trend.p == pytest.approx(stats.ttest_1samp(slopes, 0.0).pvalue, rel=1e-9)
    # unpaired: the pooled two-sample t test
    ua, ub = V.Cell(list(a.values)), V.Cell(list(b.values))
    e = S.contrast([ub, ua], [1, -1], None)
    assert S.difference(e, 0.01).p == pytest.approx(stats.ttest_ind(ub.values, ua.values).pvalue, rel=1e-9)


def test_significant_but_small_gap_change_counts_as_insensitive():
    """The same ±1 pp yardstick as (i): a resolved 0.3 pp change is not 'dependent'."""
    rng = np.random.default_rng(16)
    c = paired({1e-7: 0.900, 1e-4: 0.903}, 0.0005, 8, rng)
    gt = V.gap_tests(c, None)
    assert gt.dependent and gt.insensitive and gt.status == "insensitive"
    assert "significant, but within" in gt.text()
    assert V.verdict_ii({100: c}, None, "mnist").status == V.FAILS
