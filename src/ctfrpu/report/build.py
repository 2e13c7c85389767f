"""``ctfrpu report``: a self-contained HTML report built from the run store.

Output directory::

    report.html                 figures embedded as base64 PNG (works offline, one file)
    figures/*.png, *.svg        every figure as PNG and SVG
    tables/*.csv                final accuracies, verdicts, update statistics

The report states which parts are OUR reconstruction (the CTF model, the compensation rule, the
ablation arms, the verdict thresholds) and handles partial stores: a missing dataset, baseline,
grid part or ablation arm is named in its section with the command that fills it.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..data.registry import PAPER_DATASETS
from ..errors import CtfrpuError
from ..plotting import save_figure, time_label, write_csv
from ..arms import ARM_ORDER, ARMS
from . import figures as F
from . import verdict as V
from .data import Study, load_studies


# The page is assembled by small functions rather than a jinja2 template (ours, kept on purpose):
# every section is computed from the data as it is emitted (figures written, tables saved, notes
# chosen), every data value passes through _esc (html.escape), and a template would only move the
# same logic into a second language without removing a line of it.
def _esc(x: Any) -> str:
    return html.escape(str(x))


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f}"


class _Writer:
    """Writes the report's files: each atomically (:mod:`ctfrpu.outfiles`), never through a
    symbolic link, and not over an existing report unless ``force``."""

    def __init__(self, out: Path, force: bool = False, inputs=()):
        from ..outfiles import check_outputs, output_dir

        self.out = out
        self.fig_dir = out / "figures"
        self.tab_dir = out / "tables"
        self.page = out / "report.html"
        if self.page.exists() and not force:
            raise CtfrpuError(f"{self.page} exists; pass --force to overwrite the report (or choose another --out)")
        check_outputs([self.page], inputs=inputs, force=True)
        for d in (out, self.fig_dir, self.tab_dir):
            output_dir(d)
        self.files: list[Path] = []

    def figure(self, fig, stem: str, alt: str) -> str:
        png, svg = save_figure(fig, self.fig_dir / stem, dpi=130)
        self.files += [png, svg]
        b64 = base64.b64encode(png.read_bytes()).decode()
        return (f'<figure><img alt="{_esc(alt)}" src="data:image/png;base64,{b64}">'
                f'<figcaption>{_esc(alt)} (<a href="figures/{stem}.svg">SVG</a>, '
                f'<a href="figures/{stem}.png">PNG</a>)</figcaption></figure>')

    def csv(self, name: str, header: list[str], rows: list[list[Any]], comment: str = "") -> str:
        self.files.append(write_csv(self.tab_dir / f"{name}.csv", header, rows, [comment] if comment else (), 6))
        return f'<a href="tables/{name}.csv">{name}.csv</a>'


def _table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    h = "".join(f"<th>{_esc(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


# ----------------------------------------------------------------------------------- analysis


def _cells(rows, arm) -> dict[int, dict[float, V.Cell]]:
    out: dict[int, dict[float, V.Cell]] = {}
    for r in rows:
        if r.arm == arm:
            out.setdefault(r.n, {}).setdefault(r.gap, V.Cell([], [])).add(r.accuracy, r.seed)
    return out


def _n_near_1000(ns) -> int | None:
    cand = [n for n in ns if 700 <= n <= 1500]
    return min(cand, key=lambda n: abs(math.log(n / 1000))) if cand else None


def ablation_design(study: Study, dataset: str) -> tuple[int, float] | None:
    """The (N, t_gap) with the most ablation-only arms (ideal, ctf_expected, ideal_gauss) present."""
    counts: dict[tuple[int, float], set[str]] = {}
    for r in study.runs:
        if r.dataset == dataset and r.arm in ("ideal", "ctf_expected", "ideal_gauss"):
            counts.setdefault((r.n, r.gap), set()).add(r.arm)
    if not counts:
        return None
    return max(counts, key=lambda k: (len(counts[k]), k[0] == 1000, -k[1]))


@dataclass
class FactorialDesign:
    """The 2x2 bias x noise arms of one dataset: cells keyed (bias level, noise level)."""

    sizes: tuple[int, int]
    gap: float
    arms: dict[tuple[str, str], V.Cell]
    compensated: V.Cell | None
    """the compensated full model at (N small, t_gap), a second candidate improvement, if run."""


def factorial_design(rows) -> FactorialDesign | None:
    """The factorial arms among ``rows`` (one dataset), or None when there are none. With more than
    one t_gap or more than two N values, the (t_gap, sizes) with the most runs is used."""
    runs = [r for r in rows if r.bias_pulses is not None]
    if not runs:
        return None
    by_gap: dict[float, list] = {}
    for r in runs:
        by_gap.setdefault(r.gap, []).append(r)
    gap, sel = max(by_gap.items(), key=lambda kv: len(kv[1]))
    sizes = sorted({r.n for r in sel} | {r.bias_pulses for r in sel})
    if len(sizes) != 2:
        sizes = [min(sizes), max(sizes)]
    level = {sizes[0]: "small", sizes[1]: "large"}
    arms: dict[tuple[str, str], V.Cell] = {}
    for r in sel:
        if r.bias_pulses in level and r.n in level:
            arms.setdefault((level[r.bias_pulses], level[r.n]), V.Cell([], [])).add(r.accuracy, r.seed)
    # the diagonal arms are the plain exact runs of the grid (bit-identical, see factorial_config)
    # unless a store holds them as factorial-mode runs
    for n, lv in level.items():
        if (lv, lv) not in arms:
            cell = V.cell_of(r for r in rows if r.arm == "ctf" and r.n == n and r.gap == gap)
            if cell.n:
                arms[(lv, lv)] = cell
    comp = V.cell_of(r for r in rows if r.arm == "ctf_comp" and r.n == sizes[0] and r.gap == gap)
    return FactorialDesign((sizes[0], sizes[1]), gap, arms, comp if comp.n else None)


def study_verdicts(study: Study) -> list[V.Verdict]:
    out: list[V.Verdict] = []
    for ds in study.datasets:
        rows = [r for r in study.runs if r.dataset == ds]
        n_test = rows[0].n_test if rows else 10000
        fp = V.cell_of(r for r in rows if r.arm == "fp")
        for arm, label in (("ctf", ""), ("ctf_comp", " (with our compensation)")):
            by_n = _cells(rows, arm)
            if not by_n and arm == "ctf_comp":
                continue
            n1000 = _n_near_1000(by_n)
            for v in (V.verdict_i(fp, by_n.get(n1000, {}), n_test, ds, n1000, label, small=by_n),
                      V.verdict_ii(by_n, n_test, ds, label)):
                v.finding += label
                out.append(v)
        design = ablation_design(study, ds)
        if design is None:
            v = V.verdict_iii({}, n_test, ds)
            v.status = V.NOT_RUN
            v.summary = "not run: no ablation arms (ideal, ctf_expected, ideal_gauss) for this dataset"
            out.append(v)
        else:
            n, gap = design
            arms = {a: V.cell_of(r for r in rows if r.arm == a and (a == "fp" or (r.n == n and r.gap == gap)))
                    for a in ARM_ORDER}
            out.append(V.verdict_iii(arms, n_test, ds, f" (N = {n}, t_gap {time_label(gap)})"))
        fd = factorial_design(rows)
        if fd is not None:
            out.append(V.verdict_factorial(fd.arms, n_test, ds, f", t_gap {time_label(fd.gap)}", fd.compensated,
                                           fd.sizes))
    return out


def _command_flags(study: Study, store_path: str) -> str:
    """The flags that make an `ablation` command train with exactly this study's settings."""
    s = study.settings
    parts = [f"--epochs {s['epochs']}", f"--lr {s['lr']:g}"]
    if s["train_limit"]:
        parts.append(f"--train-limit {s['train_limit']}")
    if s["test_limit"]:
        parts.append(f"--test-limit {s['test_limit']}")
    if s["hidden"] and list(s["hidden"]) != [256, 128]:
        parts.append(f"--hidden {','.join(str(h) for h in s['hidden'])}")
    seeds = sorted({r.seed for r in study.runs}) or [0, 1]
    if seeds != [0, 1]:
        parts.append(f"--seeds {','.join(str(x) for x in seeds)}")
    parts.append(f"--store {store_path}")
    return " ".join(parts)


def missing_notes(study: Study, store_path: str) -> tuple[list[str], list[str]]:
    """(missing, optional): what the paper's comparisons lack, and extensions a profile leaves out
    (ablation or update statistics on a second dataset) -- each with a command that runs as printed.
    For a study made by ``reproduce --profile P`` the command is that profile's rerun: its runs carry
    settings (lr schedule, device preset, timing) the single-run commands would not reproduce."""
    from ..units import format_time

    flags = f"--store {store_path}"
    common = _command_flags(study, store_path)
    missing, optional = [], []          # (what, command)
    for ds in PAPER_DATASETS:
        if ds not in study.datasets:
            missing.append((f"No {F.DATASET_NAMES[ds]} runs in this study",
                            f"ctfrpu data fetch && ctfrpu reproduce --profile quick {flags}"))
    for ds in study.datasets:
        name = F.DATASET_NAMES.get(ds, ds)
        rows = [r for r in study.runs if r.dataset == ds]
        if not any(r.arm == "fp" for r in rows):
            missing.append((f"{name}: no FP baseline", f"ctfrpu ablation --dataset {ds} --arms fp --no-stats {common}"))
        analog = [r for r in rows if r.arm in ("ctf", "ctf_comp")]
        ns = sorted({r.n for r in analog})
        gaps = sorted({r.gap for r in analog})
        if analog and (len(gaps) < 2 or not any(n < 500 for n in ns) or _n_near_1000(ns) is None):
            missing.append((f"{name}: the CTF grid has N = {ns} and {len(gaps)} gap(s); findings (i)/(ii) need "
                            "N ~ 1000, N < 500 and >= 2 gaps", f"ctfrpu reproduce --profile quick {flags}"))
        if not analog:
            missing.append((f"{name}: no CTF grid runs", f"ctfrpu reproduce --profile quick {flags}"))
        design = ablation_design(study, ds)
        if design is None:
            optional.append((f"{name}: no ablation arms (finding (iii))",
                             f"ctfrpu ablation --dataset {ds} --pulses 1000 --gap 1us {common}"))
        else:
            n, gap = design
            have = {r.arm for r in rows if r.arm == "fp" or (r.n == n and r.gap == gap)}
            lack = [a for a in ARM_ORDER if a not in have]
            if lack:
                missing.append((f"{name}: ablation at N = {n}, t_gap {time_label(gap)} lacks arm(s) {', '.join(lack)}",
                                f"ctfrpu ablation --dataset {ds} --pulses {n} --gap {format_time(gap)} "
                                f"--arms {','.join(lack)} {common}"))
            if not any(st["dataset"] == ds for st in study.stats):
                optional.append((f"{name}: no update statistics (bias/noise per arm)",
                                 f"ctfrpu ablation --dataset {ds} --pulses {n} --gap {format_time(gap)} {common}"))
    if study.profile:
        rerun = f"ctfrpu reproduce --profile {study.profile} {flags}"
        return ([f"{w} (this study is profile '{study.profile}', not finished yet): `{rerun}` continues it "
                 "(finished runs are skipped)." for w, _ in missing],
                [f"{w}: not part of profile '{study.profile}'." for w, _ in optional])
    return [f"{w}: `{c}`." for w, c in missing], [f"{w}: `{c}` (finished arms are not rerun)." if "statistics" in w
                                                  else f"{w}: `{c}`." for w, c in optional]


def final_table(study: Study) -> tuple[list[str], list[list[Any]]]:
    header = ["dataset", "arm", "device", "update", "compensation", "N", "t_gap_s", "n_seeds", "mean_acc_pct",
              "sd_acc_pct", "seeds", "run_ids"]
    cells: dict[tuple, list] = {}
    for r in study.runs:
        key = (r.dataset, r.arm or "-", r.device, r.mode, r.comp, r.n if r.device != "fp" else 0,
               r.gap if r.device != "fp" else 0.0)
        cells.setdefault(key, []).append(r)
    rows = []
    order = {a: i for i, a in enumerate(ARM_ORDER)}
    for key in sorted(cells, key=lambda k: (k[0], order.get(k[1], 99), k[5], k[6])):
        rs = cells[key]
        acc = np.array([r.accuracy for r in rs]) * 100
        rows.append([*key, len(rs), float(acc.mean()), float(acc.std(ddof=1)) if len(rs) > 1 else float("nan"),
                     " ".join(str(r.seed) for r in sorted(rs, key=lambda r: r.seed)),
                     " ".join(str(r.run_id) for r in rs)])
    return header, rows


# ----------------------------------------------------------------------------------- assembly

CSS = """
body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.6em}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.ours{background:#fff8e1;border-left:4px solid #f0b400;padding:.6em 1em}
.missing{background:#fdecea;border-left:4px solid #d93025;padding:.6em 1em}
.optional{background:#eef4fb;border-left:4px solid #5b8bd0;padding:.6em 1em}
.indicative{color:#666;font-style:italic;border-bottom:1px dashed #999}
.holds{color:#1e7e34;font-weight:bold}.fails{color:#c62828;font-weight:bold}.inconclusive{color:#8a6d00;font-weight:bold}
.notrun{color:#666;font-style:italic}
code{background:#f4f4f4;padding:0 3px}
"""

_STATUS_CLS = {V.HOLDS: "holds", V.FAILS: "fails", V.INCONCLUSIVE: "inconclusive", V.INDICATIVE: "inconclusive",
               V.NO_IMPROVEMENT: "inconclusive", V.NOT_RUN: "notrun"}

#: Fewest seeds per compared cell for a verdict to be shown as firm (ours: with 2 seeds the quick
#: profile's verdicts flipped between seed sets; below 3 the sd itself is a guess).
MIN_FIRM_SEEDS = 3


def _status(s: str, n_seeds: int | None = None, leaning: str | None = None) -> str:
    if n_seeds is not None and n_seeds < MIN_FIRM_SEEDS and s != V.NOT_RUN:
        # an indicative verdict names what the rule would say, not the word "indicative" twice
        word = f"leans '{leaning}'" if s == V.INDICATIVE and leaning else s
        return f'<span class="indicative">{_esc(word)} (indicative: {n_seeds} seed{"s" if n_seeds != 1 else ""})</span>'
    return f'<span class="{_STATUS_CLS.get(s, "")}">{_esc(s)}</span>'


def _seeds_behind(v, per_dataset: dict[str, int]) -> int:
    """Seeds behind a verdict's deciding estimate (``Verdict.n``); when a verdict names none (no data
    for it), the fewest seeds of any cell of its dataset."""
    return v.n if v.n else per_dataset.get(v.dataset, 0)


def _seeds_per_dataset(study: Study) -> dict[str, int]:
    """Fewest seeds in any (arm, N, t_gap) cell of each dataset (the fallback of :func:`_seeds_behind`)."""
    cells: dict[tuple, set[int]] = {}
    for r in study.runs:
        key = (r.dataset, r.arm, r.n if r.device != "fp" else 0, r.gap if r.device != "fp" else 0.0)
        cells.setdefault(key, set()).add(r.seed)
    out: dict[str, int] = {}
    for (ds, *_), seeds in cells.items():
        out[ds] = min(out.get(ds, 10**9), len(seeds))
    return out


def _diverged_section(store) -> str:
    """Runs that diverged: a result, listed here because they have no accuracy to tabulate."""
    recs = store.list(status="diverged")
    if not recs:
        return ""
    rows = [[r.id, _esc(r.config.get("data", {}).get("dataset", "?")),
             _esc(r.config.get("device", {}).get("kind", "?")), _esc(r.config.get("optim", {}).get("lr", "?")),
             _esc(r.error or "")] for r in recs]
    return ("<h2>Diverged runs</h2><p>These runs stopped because their training loss ran away (above 10 x the "
            "chance loss ln(classes)) or a weight became non-finite. They are not in the accuracy tables or the "
            "verdicts.</p>" + _table(["run", "dataset", "device", "lr", "why"], rows))


def _preset_note(device, params_file) -> str:
    """Which of OUR presets the runs use (by parameter values), or the overrides of the illustrative one."""
    from ..config import params_path
    from ..devices import build_device

    for name in ("ctf_paper",):
        try:
            if build_device("ctf", f"preset:{name}") == device:
                return (f"Its parameters are OUR paper-consistent candidate preset (preset:{name}, "
                        "docs/science.md §9; file " + _esc(params_path(f"preset:{name}").name) + ")")
        except CtfrpuError:
            pass
    return "Its parameters are an illustrative preset" + _override_note(device, params_file)


def _override_note(device, params_file) -> str:
    """' overridden by ... (name = value, ...)' naming the parameters that differ from our preset."""
    from dataclasses import fields

    preset = type(device)()
    changed = [f"{f.name} = {getattr(device, f.name)!r}" for f in fields(device)
               if getattr(device, f.name) != getattr(preset, f.name)]
    if not changed and not params_file:
        return ""
    source = f"the runs' device parameters ({_esc(params_file)})" if params_file else "the runs' device parameters"
    return f" overridden by {source}: {_esc(', '.join(changed)) or 'no parameter differs'}"


def _device_section(w: _Writer, study: Study | None) -> str:
    from ..devices import build_device

    cfg = next((r.config for r in (study.runs if study else []) if r.device == "ctf"), None)
    params_file = cfg["device"].get("params_file") if cfg else None
    params = cfg["device"].get("params", {}) if cfg else {}
    try:
        device = build_device("ctf", params_file, params)
    except CtfrpuError as err:
        return f'<p class="missing">Device figure skipped: {_esc(err)}</p>'
    parts = ["<h2>Device trends (our CTF model)</h2>",
             '<p class="ours">The CTF device is OUR reconstruction of the program-time non-ideality described in the '
             "device paper's abstract (arXiv:2307.06088): fragmentation loss, a cliff below ~2 µs, recovery at small "
             "gaps. " + _preset_note(device, params_file) + ", not measured data.</p>"]
    try:
        from ..lab import response as DR

        res = DR.response(device)
        parts.append(w.figure(DR.plot(res, "parameters of the runs"), "device_response",
                              "Cumulative ΔV_T at fixed total ON time vs pulse width, per gap (our model)"))
        w.csv("device_response", list(DR.CSV_COLUMNS), [list(r) for r in res.rows()],
              "our CTF model, not measured data")
    except Exception as err:  # noqa: BLE001 -- the device figure must not block the report
        parts.append(f'<p class="missing">Device-response figure unavailable ({_esc(type(err).__name__)}: '
                     f"{_esc(str(err).splitlines()[0] if str(err) else '')}).</p>")
    if study is not None:
        analog = [r for r in study.runs if r.device == "ctf"]
        ns = sorted({r.n for r in analog}) or [100, 300, 1000, 3000]
        gaps = sorted({r.gap for r in analog}) or [1e-7, 1e-6, 1e-5, 1e-4]
        t_on = analog[0].t_on if analog and analog[0].t_on else 5e-3
        lr = float(study.settings["lr"] or 0.01)
        timing = (analog[0].config.get("update", {}).get("timing") or "slot") if analog else "slot"
        parts.append(w.figure(F.efficiency_figure(device, t_on, ns, gaps, lr, timing),
                              "program_efficiency", "Program efficiency r of the training designs (our model, "
                              f"{timing} timing, first-epoch lr)"))
        parts.append(_gap_note(device, t_on, ns, gaps, lr, timing))
    return "\n".join(parts)


def _gap_note(device, t_on: float, ns, gaps, lr: float, timing: str = "slot") -> str:
    """How much t_gap changes the mean update in our model, at the typical and the largest |x d|."""
    from ..design.compensation import U_TYP, base_probability, efficiency
    from ..devices import PulseTrain

    if len(gaps) < 2:
        return ""
    spread = {}
    for u in (U_TYP, 1.0):
        worst = (0.0, None)
        for n in ns:
            rs = []
            for gap in gaps:
                tr = PulseTrain.from_on_time(int(n), t_on, gap)
                rs.append(float(efficiency(device, tr, min(1.0, base_probability(device, tr, lr, u)), timing=timing)))
            d = max(rs) - min(rs)
            if d >= worst[0]:
                worst = (d, n)
        spread[u] = worst
    (d_typ, n_typ), (d_max, n_max) = spread[U_TYP], spread[1.0]
    how = {"slot": "t_gap acts only through the enhancement e carried between a cell's pulses in nearby slots, i.e. "
                   "through the coincidence probability P",
           "burst": "a cell's coincidences are applied back to back, t_gap apart (burst timing), so t_gap sets how much "
                    "enhancement each pulse inherits",
           "train": "every coincidence gets the per-pulse mean change of a fully-ON train of the design (train timing), "
                    "so t_gap acts through the enhancement carried from pulse to pulse of that train"}.get(timing, "")
    verdict = ("at these coincidence probabilities the gap hardly changes the mean update" if d_max < 0.01 else
               "the gap changes the mean update by this much before any compensation")
    if abs(d_typ - d_max) < 5e-4 and n_typ == n_max:   # e.g. train timing: r does not depend on |x d|
        where = f"by at most {d_typ:.3f} (N = {n_typ}), the same at every |x d|"
    else:
        where = (f"by at most {d_typ:.3f} at the typical |x d| = {U_TYP:g} (N = {n_typ}) and by {d_max:.3f} at the "
                 f"largest |x d| = 1 (N = {n_max})")
    return (f"<p>In our model ({timing} timing, docs/science.md §8) {how}. Over the runs' gaps the program efficiency r "
            f"changes {where}, at lr = {lr:g}: {verdict}.</p>")


def _factorial_section(w: _Writer, study: Study, p: str) -> list[str]:
    """The 2x2 bias x noise ablation: arms, main effects and interaction with 95 % CIs, figure, CSV."""
    designs = {}
    for ds in study.datasets:
        fd = factorial_design([r for r in study.runs if r.dataset == ds])
        if fd is not None:
            designs[ds] = fd
    if not designs:
        return []
    parts = ["<h3>2 x 2 ablation: bias x noise (ours)</h3>",
             "<p>Each arm trains with the mean update of design N_b and the noise of design N_σ: per cell "
             "E<sub>CTF</sub>(N_b) + [exact<sub>CTF</sub>(N_σ) − E<sub>CTF</sub>(N_σ)], so the noise keeps its "
             "discreteness and row/column correlations (docs/science.md §4.9). Seeds are paired across the four arms. "
             "Effects are in percentage points of test accuracy: bias = mean over N_σ of y(N_b large) − y(N_b small); "
             "noise likewise over N_b; interaction = [y(LL) − y(SL)] − [y(LS) − y(SS)].</p>"]
    arm_rows, eff_rows = [], []
    for ds, fd in designs.items():
        name = F.DATASET_NAMES.get(ds, ds)
        for (b, nz), cell in sorted(fd.arms.items()):
            nb, ns = fd.sizes[0 if b == "small" else 1], fd.sizes[0 if nz == "small" else 1]
            sd = cell.std
            arm_rows.append([ds, nb, ns, fd.gap, cell.n, 100 * cell.mean, 100 * sd if math.isfinite(sd) else ""])
        if len(fd.arms) == 4 and min(c.n for c in fd.arms.values()) >= 2:
            f = V.factorial_effects(fd.arms, next(r.n_test for r in study.runs if r.dataset == ds))
            for key, t in (("bias (N_b)", f.bias), ("noise (N_sigma)", f.noise), ("interaction", f.interaction),
                           ("noise minus bias", f.noise_minus_bias)):
                eff_rows.append([ds, key, 100 * t.estimate.est, 100 * t.ci[0], 100 * t.ci[1], t.p, t.estimate.n,
                                 100 * t.mde])
    parts.append(_table(["dataset", "N_b (bias)", "N_σ (noise)", "t_gap", "seeds", "accuracy (%)"],
                        [[_esc(F.DATASET_NAMES.get(r[0], r[0])), r[1], r[2], time_label(r[3]), r[4],
                          f"{r[5]:.2f} ± {r[6]:.2f}" if r[6] != "" else f"{r[5]:.2f}"] for r in arm_rows]))
    if eff_rows:
        parts.append(_table(["dataset", "effect", "estimate (pp)", "95 % CI (pp)", "p (two-sided)", "paired seeds",
                             "detectable at 80 % (pp)"],
                            [[_esc(F.DATASET_NAMES.get(r[0], r[0])), _esc(r[1]), f"{r[2]:+.2f}",
                              f"[{r[3]:+.2f}, {r[4]:+.2f}]", f"{r[5]:.2g}", r[6], f"{r[7]:.2f}"] for r in eff_rows]))
    else:
        parts.append('<p class="missing">Fewer than 2 seeds in some factorial arm: no effects estimated.</p>')
    fp = {ds: [r.accuracy for r in study.runs if r.dataset == ds and r.arm == "fp"] for ds in designs}
    panels = [(ds, fd.sizes, fd.gap, fd.arms) for ds, fd in designs.items()]
    parts.append(w.figure(F.factorial_figure(panels, fp), f"{p}factorial",
                          "2 x 2 ablation: accuracy of the four bias x noise arms (mean ± sd over seeds)"))
    a = w.csv(f"{p}factorial_arms", ["dataset", "N_b", "N_sigma", "t_gap_s", "seeds", "accuracy_pct", "sd_pct"],
              arm_rows, "2x2 factorial arms")
    e = w.csv(f"{p}factorial_effects", ["dataset", "effect", "estimate_pp", "ci95_low_pp", "ci95_high_pp", "p",
                                        "paired_seeds", "mde80_pp"], eff_rows, "2x2 factorial effects")
    parts.append(f"<p>Tables: {a}, {e}</p>")
    return parts


def _grid_line(study: Study) -> str:
    """The grid the study's runs span (what a reader needs to rerun or cite it)."""
    analog = [r for r in study.runs if r.device != "fp"]
    if not analog:
        return ""
    ns = sorted({r.n for r in analog})
    gaps = sorted({r.gap for r in analog})
    seeds = sorted({r.seed for r in study.runs})
    comps = sorted({r.comp for r in analog})
    timings = sorted({str(r.config.get("update", {}).get("timing", "slot")) for r in analog})
    files = sorted({str(r.config.get("device", {}).get("params_file") or "our default preset") for r in analog
                    if r.device == "ctf"})
    t_on = sorted({r.t_on for r in analog if r.t_on})
    pw = f" (pw = {t_on[0] * 1e3:g} ms / N)" if len(t_on) == 1 else ""
    seed_txt = (f"{seeds[0]}–{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1
                else ", ".join(map(str, seeds)))
    return (f"<p><b>Grid.</b> N ∈ {{{', '.join(map(str, ns))}}}{pw}; t_gap ∈ "
            f"{{{', '.join(f'{g * 1e6:g} µs' for g in gaps)}}}; compensation: {', '.join(comps)}; timing: "
            f"{', '.join(timings)}; CTF parameters: {_esc(', '.join(files) or '-')}; seeds {seed_txt} (paired: the "
            f"same seed gives every arm the same initial weights and data order).</p>")


def _study_section(w: _Writer, study: Study, idx: int, store_path: str) -> tuple[str, list[V.Verdict]]:
    p = f"s{idx}_"
    datasets = study.datasets
    parts = [f"<h2>Study {idx}: {_esc(study.label)}</h2>",
             f"<p>{len(study.runs)} finished training runs; datasets: "
             f"{', '.join(F.DATASET_NAMES.get(d, d) for d in datasets) or 'none'}.</p>",
             _grid_line(study)]
    budget = (s_train := study.settings.get("train_limit") or 60000) * (study.settings.get("epochs") or 1)
    if budget < 100_000:
        parts.append(f'<p class="ours">Short training budget ({budget:,} SGD steps of {s_train:,} samples): accuracies '
                     "are far from convergence. A smaller mean update (bias, r &lt; 1) then costs more than it would at "
                     "convergence, and update noise can even speed up the escape from the sigmoid network's initial "
                     "plateau. Run <code>ctfrpu reproduce --profile full</code> for the paper-scale comparison.</p>")
    if "synthetic" in datasets:
        parts.append('<p class="ours">The synthetic dataset is a generated test set, not MNIST: its accuracies say '
                     "nothing about the paper's findings.</p>")
    devices = {json.dumps([r.config["device"].get("params_file"), r.config["device"].get("params", {})], sort_keys=True)
               for r in study.runs if r.device == "ctf"}
    if len(devices) > 1:
        parts.append(f'<p class="missing">Warning: this study pools CTF runs with {len(devices)} different device '
                     "parameter sets (device.params / params_file); cells mix them. Use separate stores per device.</p>")
    notes, optional = missing_notes(study, store_path)
    if notes:
        parts.append('<div class="missing"><b>Missing for the full comparison:</b><ul>'
                     + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul></div>")
    if optional:
        parts.append('<div class="optional"><b>Not in this store (not run by this profile; optional):</b> <ul>'
                     + "".join(f"<li>{_esc(n)}</li>" for n in optional) + "</ul></div>")
    verdicts = study_verdicts(study)
    seeds = _seeds_per_dataset(study)
    if verdicts:
        parts.append("<h3>Verdicts on the paper's findings (in our model)</h3>")
        if any(_seeds_behind(v, seeds) < MIN_FIRM_SEEDS for v in verdicts):
            parts.append(f'<p class="indicative-note">Verdicts marked <i>indicative</i> rest on fewer than '
                         f"{MIN_FIRM_SEEDS} seeds per compared cell: they can flip with more seeds (drawn in grey "
                         "italics, not in the colours of firm verdicts).</p>")
        rows = [[_esc(v.finding), _esc(F.DATASET_NAMES.get(v.dataset, v.dataset)),
                 _status(v.status, _seeds_behind(v, seeds), v.leaning), _esc(v.summary)] for v in verdicts]
        parts.append(_table(["finding", "dataset", "verdict", "numbers"], rows))
        rules = sorted({(v.finding[:5], v.rule) for v in verdicts})
        parts.append("<p><b>Decision rules (ours):</b></p><ul>" + "".join(
            f"<li>{_esc(f)} {_esc(r)}</li>" for f, r in rules) + "</ul>"
            f"<p>{_esc(V.thresholds_text())}</p>")
        w.csv(f"{p}verdicts", V.VERDICT_COLUMNS, [v.row() for v in verdicts])
    analog_ds = [d for d in datasets if any(r.dataset == d and r.arm in ("ctf", "ctf_comp", "fp") for r in study.runs)]
    if analog_ds:
        parts.append("<h3>Test accuracy vs N</h3>")
        parts.append(w.figure(F.accuracy_vs_n(study, analog_ds), f"{p}accuracy_vs_n",
                              "Final test accuracy vs pulses per train N, per t_gap, with/without compensation"))
        parts.append("<h3>Test accuracy vs epoch</h3>")
        parts.append(w.figure(F.accuracy_vs_epoch(study, analog_ds), f"{p}accuracy_vs_epoch",
                              "Test accuracy vs epoch"))
    designs = {d: ablation_design(study, d) for d in datasets}
    designs = {d: v for d, v in designs.items() if v}
    parts.append("<h3>Ablation (our arms)</h3>")
    parts.append("<table><thead><tr><th>arm</th><th>what</th><th>mean error</th><th>noise</th></tr></thead><tbody>"
                 + "".join(f"<tr><td><code>{a.key}</code></td><td>{_esc(a.label)}</td><td>{_esc(a.bias)}</td>"
                           f"<td>{_esc(a.noise)}</td></tr>" for a in ARMS.values()) + "</tbody></table>")
    if designs:
        parts.append(w.figure(F.ablation_accuracy(study, list(designs), designs), f"{p}ablation_accuracy",
                              "Final test accuracy per ablation arm"))
    else:
        parts.append('<p class="missing">No ablation runs in this study.</p>')
    parts += _factorial_section(w, study, p)
    if study.stats:
        by_ds: dict[str, list] = {}
        for s in study.stats:
            by_ds.setdefault(s["dataset"], []).append(s)
        rows_csv = []
        for ds, stats in by_ds.items():
            # The FP arm has no pulse design (it is stored with the default one): show it with
            # every design of its dataset instead of as a design of its own.
            fp = [s for s in stats if s.get("arm") == "fp"]
            analog = [s for s in stats if s.get("arm") != "fp"] or fp
            for key in sorted({(s["n"], s["gap"]) for s in analog}):
                sel = [s for s in analog if (s["n"], s["gap"]) == key]
                sel = fp + [s for s in sel if s not in fp]
                parts.append(w.figure(F.ablation_stats(sel, key), f"{p}update_stats_{ds}_{key[0]}",
                                      f"Bias and noise of single updates per arm ({F.DATASET_NAMES.get(ds, ds)}, "
                                      f"N = {key[0]}, t_gap {time_label(key[1])})"))
                trows = []
                for s in sorted(sel, key=lambda s: ARM_ORDER.index(s["arm"]) if s["arm"] in ARM_ORDER else 99):
                    for lay in s["layers"]:
                        # (key, not the record's own N/gap: the FP arm is stored with the default design)
                        rows_csv.append([ds, key[0], key[1], s["arm"], lay["layer"] + 1, f"{lay['shape'][1]}x{lay['shape'][0]}",
                                         lay["slope"], lay["relative_bias"], lay["relative_noise"], lay["relative_error"],
                                         lay["gain"], s["pairs"], s["reps"]])
                        trows.append([_esc(s["arm"]), lay["layer"] + 1, f"{lay['slope']:.3f} ± {lay['slope_se']:.3f}",
                                      f"{lay['relative_bias']:.3f}", f"{lay['relative_noise']:.3f}", f"{lay['gain']:.3g}"])
                parts.append(_table(["arm", "layer", "slope E[dW]/SGD", "relative bias", "relative noise", "gain"], trows))
        link = w.csv(f"{p}update_stats", ["dataset", "N", "t_gap_s", "arm", "layer", "in_x_out", "slope",
                                          "relative_bias", "relative_noise", "relative_error", "gain", "pairs", "reps"],
                     rows_csv, "our Monte-Carlo update statistics")
        parts.append(f"<p>Update statistics table: {link}</p>")
    header, rows = final_table(study)
    link = w.csv(f"{p}final_accuracy", header, rows, study.label)
    parts.append("<h3>Final test accuracies (mean ± sd over seeds)</h3>")
    trows = [[_esc(F.DATASET_NAMES.get(r[0], r[0])), f"<code>{_esc(r[1])}</code>", _esc(r[2]), _esc(r[3]), _esc(r[4]),
              r[5] or "", time_label(r[6]) if r[2] != "fp" else "", r[7],
              f"{r[8]:.2f} ± {r[9]:.2f}" if math.isfinite(r[9]) else f"{r[8]:.2f}"] for r in rows]
    parts.append(_table(["dataset", "arm", "device", "update", "comp.", "N", "t_gap", "n seeds", "accuracy (%)"], trows))
    parts.append(f"<p>Table: {link}</p>")
    return "\n".join(parts), verdicts


def _map_section(w: _Writer, points, mark) -> str:
    """The explore map (docs/science.md §9): where the paper's findings can hold, by prediction."""
    from ..design.explore import map_figure

    good = [p for p in points if p.promising]
    rows = [[p.timing, p.coarseness, p.tau_on, p.tau_off, p.compensation, p.large_n_better,
             p.gap_matters_more_at_small_n, p.promising] for p in points]
    link = w.csv("explore_map", ["timing", "W", "tau_on_s", "tau_off_s", "compensation", "large_n_better",
                                 "gap_matters_more_at_small_n", "promising"], rows, "explore map (predictions)")
    parts = ["<h2>Where can our model show the paper's findings? (map of predictions, ours)</h2>",
             "<p>Each point is a variant of OUR device model: timing model of a cell's coincidences × W (the weight "
             "change of a fully-ON train; dw_min = W/N) × τ_on × τ_off × compensation kind. The design helper "
             "predicts the relative mean-square error of one update of a typical output-layer cell (|xδ| = 0.2, lr "
             "0.1, T_on = 5 ms) at N = 100 and 1000 over t_gap 0.1–100 µs, and two <i>necessary</i> conditions for "
             "findings (i) and (ii): the error at large N is below that at small N at every gap, and it varies more "
             "with the gap at small N. Training runs decide; the map only says where to look "
             "(docs/science.md §9).</p>",
             w.figure(map_figure(points, mark), "explore_map", f"{len(good)} of {len(points)} points meet both "
                      "necessary conditions" + ("; the outlined column is the preset of these runs" if mark else "")),
             _table(["timing", "W", "τ_on", "τ_off", "compensation"],
                    [[_esc(p.timing), f"{p.coarseness:g}", time_label(p.tau_on), time_label(p.tau_off),
                      _esc(p.compensation)] for p in good]),
             f"<p>Table of all points: {link}</p>"]
    return "\n".join(parts)


def build_report(store, out: str | Path, store_label: str | None = None, force: bool = False,
                 explore_points=None, explore_mark: tuple[float, float, float] | None = None) -> Path:
    """Write the report for ``store`` (a :class:`ctfrpu.store.Store`) into ``out``; returns report.html.
    ``explore_points`` (from :func:`ctfrpu.design.explore.explore`) adds the map section,
    ``explore_mark`` outlines the preset's column in it.

    An existing ``out/report.html`` is overwritten only with ``force``; every file is written
    atomically, report.html last (a report that is there is complete)."""
    w = _Writer(Path(out), force=force, inputs=[store.path])
    studies = load_studies(store)
    label = store_label or str(store.path)
    t0 = time.strftime("%Y-%m-%d %H:%M:%S")
    head = [f"<h1>ctfrpu report: CTF program time and on-chip DNN training</h1>",
            f"<p>Store <code>{_esc(label)}</code>, generated {t0} by ctfrpu {__version__}.</p>",
            '<div class="ours"><b>What is ours.</b> Only the abstracts of Shrivastava et al. (arXiv:2307.06088, '
            "arXiv:2402.09792) are public. The CTF program-time model (transient field enhancement e, onset delay, "
            "relaxation), its parameter preset, the pulse-train compensation rule (gain 1/r on A*B), the ablation arms, "
            "the update-statistics instrument and the verdict thresholds are OUR reconstruction (docs/science.md §4), not the "
            "papers'. The stochastic pulse update follows Gokmen & Vlasov (2016). Verdicts say whether a finding holds "
            "<i>in our model</i>.</div>"]
    body: list[str] = []
    all_verdicts: list[tuple[int, V.Verdict]] = []
    if not studies:
        body.append('<div class="missing">The store has no finished runs. Run <code>ctfrpu reproduce --profile quick '
                    f"--store {_esc(label)}</code> (needs <code>ctfrpu data fetch</code>).</div>")
    body.append(_device_section(w, studies[0] if studies else None))
    if explore_points:
        body.append(_map_section(w, explore_points, explore_mark))
    seeds_of: dict[int, dict[str, int]] = {}
    for i, st in enumerate(studies, 1):
        section, verdicts = _study_section(w, st, i, label)
        body.append(section)
        seeds_of[i] = _seeds_per_dataset(st)
        all_verdicts += [(i, v) for v in verdicts]
    body.append(_diverged_section(store))
    if all_verdicts:
        summary = ["<h2>Summary of verdicts</h2>",
                   _table(["study", "finding", "dataset", "verdict"],
                          [[i, _esc(v.finding), _esc(F.DATASET_NAMES.get(v.dataset, v.dataset)),
                            _status(v.status, _seeds_behind(v, seeds_of[i]), v.leaning)]
                           for i, v in all_verdicts])]
        head += summary
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>ctfrpu report</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(head + body) + "</body></html>")
    from ..outfiles import write_text

    return write_text(w.page, page)
