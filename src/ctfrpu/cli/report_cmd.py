"""`ctfrpu report`, `ctfrpu ablation`, `ctfrpu reproduce`, `ctfrpu design`.

The compensation rule, the design helper, the ablation arms and the verdict rules are OUR
reconstruction (the system paper's are not public); every command says so in its help.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import CtfrpuError

_STORE_HELP = "Run store (SQLite). Default: runs/ctfrpu.db, or $CTFRPU_STORE."
_DATA_HELP = "Dataset directory. Default: ~/.cache/ctfrpu/data, or $CTFRPU_DATA."


def _store(path):
    from ..store import Store, default_store_path

    return Store(Path(path) if path else default_store_path())


def _list(text: str | None, what: str, conv):
    if text is None:
        return None
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise CtfrpuError(f"{what}: empty list")
    try:
        return [conv(t) for t in items]
    except CtfrpuError:
        raise
    except (TypeError, ValueError):
        raise CtfrpuError(f"{what}: cannot read {text!r} as a comma-separated list") from None


def _int(t: str) -> int:
    v = int(t)
    if v < 0:
        raise ValueError
    return v


def _time(t: str, name: str = "--gap") -> float:
    from ..units import parse_cli_time

    return parse_cli_time(t, name)


def _echo(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


# ------------------------------------------------------------------------------------- report


@click.command("report")
@click.option("--store", "store_path", type=click.Path(), default=None, envvar="CTFRPU_STORE",
              help=_STORE_HELP)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="report", show_default=True,
              help="Output directory (report.html, figures/, tables/).")
@click.option("--force", is_flag=True, help="Overwrite an existing report in --out.")
@click.option("--map", "map_params", default=None, metavar="FILE|preset:NAME",
              help="Add the explore map (docs/science.md §9) with the place of these CTF parameters on it "
                   "(e.g. preset:ctf_paper); seconds.")
def report(store_path, out_dir, force, map_params) -> None:
    """Build a self-contained HTML report from the run store.

    Figures (device trends of OUR CTF model, accuracy vs N per t_gap with the FP baseline, accuracy
    vs epoch, the ablation), a table of final accuracies (mean ± sd over seeds) and a verdict per
    finding of the system paper -- holds / does not hold / inconclusive IN OUR MODEL, with the
    numbers and OUR decision rules. Missing datasets or arms are listed with the command that fills
    them. Writes OUT/report.html (figures embedded), OUT/figures/*.png|svg, OUT/tables/*.csv;
    an existing report there is replaced only with --force (`reproduce` always rebuilds its own).
    """
    from ..report import build_report
    from ..store import default_store_path

    path = Path(store_path) if store_path else default_store_path()
    if not path.exists():
        raise CtfrpuError(f"run store not found: {path} (run `ctfrpu reproduce --profile quick --store {path}`)")
    from ..store import Store

    with Store(path, create=False) as st:     # refuses a directory or a non-store file, before any work
        points = mark = None
        if map_params:
            from ..design.explore import map_for

            points, mark = map_for(map_params)
        path = build_report(st, out_dir, force=force, explore_points=points, explore_mark=mark)
    click.echo(f"report written to {path}")


# ------------------------------------------------------------------------------------- design


@click.command("design")
@click.option("--pulses", default="100,300,1000,3000", show_default=True, help="Values of N, comma-separated.")
@click.option("--gaps", default="0.1us,1us,10us,100us", show_default=True, help="Values of t_gap, comma-separated.")
@click.option("--device-params", type=click.Path(dir_okay=False), default=None,
              help="CTF parameter file (TOML/JSON), e.g. from `ctfrpu device fit` (default: our illustrative preset).")
@click.option("--lr", type=float, default=0.01, show_default=True, help="Learning rate of the training.")
@click.option("--u", "u", type=float, default=None,
              help="Typical |x_i d_j| of the layer being designed for (default: 0.2, the output layer of our reference MLP).")
@click.option("--pw-mode", type=click.Choice(["on_time", "fixed_pw"]), default="on_time", show_default=True,
              help="on_time: pw = t_on / N; fixed_pw: pw fixed.")
@click.option("--t-on", default="5ms", show_default=True, help="ON-time budget per train (on_time mode).")
@click.option("--pw", default="5us", show_default=True, help="Pulse width (fixed_pw mode).")
@click.option("--timing", default="slot", show_default=True, metavar="NAME",
              help="Timing model of the update (OUR models, docs/science.md §8): slot | burst | train.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def design(pulses, gaps, device_params, lr, u, pw_mode, t_on, pw, timing, as_json) -> None:
    """Predict the update's bias and variance over (N, t_gap) and recommend a pulse-train design.

    OUR design helper (the paper's technique is not public): for a typical cell it computes the
    exact mean and variance of one train's update in OUR CTF model (counting noise, e-history noise,
    cycle-to-cycle noise), the relative bias r - 1, the gain 1/r of OUR compensation and the residual
    after it, and recommends the design of least predicted bias^2 + variance (compensated).
    """
    from ..design.helper import U_DESIGN, design_grid, format_table, recommend
    from ..devices import build_device
    from ..devices.timing import timing_model
    from ..units import format_time

    ns = _list(pulses, "--pulses", _int)
    gs = _list(gaps, "--gaps", lambda t: _time(t, "--gaps"))
    if any(n < 1 for n in ns):
        raise CtfrpuError("--pulses: N must be >= 1")
    if not lr > 0:
        raise CtfrpuError("--lr must be > 0")
    timing_model(timing)  # an unknown name is a one-line error naming the choices
    device = build_device("ctf", device_params, {})
    pts = design_grid(device, ns, gs, lr=lr, u=U_DESIGN if u is None else u, mode=pw_mode,
                      t_on=_time(t_on, "--t-on"), pw=_time(pw, "--pw"), timing=timing)
    best = recommend(pts, compensated=True)
    best_raw = recommend(pts, compensated=False)
    if as_json:
        click.echo(json.dumps({"points": [p.to_dict() for p in pts], "recommended": best.to_dict(),
                               "recommended_uncompensated": best_raw.to_dict()}, indent=2))
        return
    src = device_params or "our illustrative CTF preset"
    click.echo(f"Pulse-train design, OUR CTF model ({src}), {timing} timing; lr = {lr:g}, "
               f"typical |x d| = {U_DESIGN if u is None else u:g}")
    click.echo("r: mean update / SGD; bias = r - 1; var: relative variance of one update; score = bias^2 + var;")
    click.echo("_c: with OUR gain compensation (A*B x gain); resid: max |bias_c| over our network's layers.\n")
    click.echo(format_table(pts))
    click.echo(f"\nrecommended (compensated): N = {best.n}, t_gap = {format_time(best.gap)} "
               f"(pw = {format_time(best.pw)}, gain {best.gain:.3g}, predicted score {best.score_comp:.4g})")
    click.echo(f"best without compensation: N = {best_raw.n}, t_gap = {format_time(best_raw.gap)} "
               f"(bias {best_raw.bias:+.3f}, score {best_raw.score:.4g})")


# ------------------------------------------------------------------------------------- ablation


@click.command("ablation")
@click.option("--dataset", default="mnist", show_default=True, help="mnist | fashion | synthetic")
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True, help="Epochs of every arm.")
@click.option("--train-limit", type=click.IntRange(min=1), default=4000, show_default=True,
              help="Training samples (the first N of the shuffled training set).")
@click.option("--test-limit", type=click.IntRange(min=1), default=None, help="Test samples (default: all).")
@click.option("--lr", type=float, default=0.1, show_default=True, help="Learning rate.")
@click.option("--hidden", default="256,128", show_default=True, help="Hidden sizes, comma-separated.")
@click.option("--seeds", default="0,1", show_default=True, help="Seeds, comma-separated.")
@click.option("--pulses", "n", type=click.IntRange(min=1), default=1000, show_default=True, help="N of the pulse trains.")
@click.option("--gap", default="1us", show_default=True, help="t_gap of the pulse trains.")
@click.option("--arms", default="all", show_default=True,
              help="Comma-separated subset of fp, ideal, ctf_expected, ctf, ctf_comp, ideal_gauss.")
@click.option("--device-params", type=click.Path(dir_okay=False), default=None,
              help="CTF parameter file (default: our illustrative preset).")
@click.option("--stats/--no-stats", default=True, show_default=True, help="Also measure bias/noise of single updates.")
@click.option("--stats-pairs", type=click.IntRange(min=1), default=8, show_default=True, help="(x, d) pairs for the update statistics.")
@click.option("--stats-reps", type=click.IntRange(min=2), default=40, show_default=True, help="Repeats per pair.")
@click.option("--store", "store_path", type=click.Path(), default=None, envvar="CTFRPU_STORE", help=_STORE_HELP)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="report", show_default=True,
              help="Where the sweep file goes (OUT/sweeps).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Local worker processes (1 = in this process).")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Dask scheduler address of a cluster.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, envvar="CTFRPU_DATA", help=_DATA_HELP)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def ablation(dataset, epochs, train_limit, test_limit, lr, hidden, seeds, n, gap, arms, device_params, stats,
             stats_pairs, stats_reps, store_path, out_dir, workers, scheduler, data_dir, progress) -> None:
    """Ablation: separate the bias of the CTF updates from their noise (OUR arms).

    Arms at one design (N, t_gap): fp (floating point); ideal (ideal device, stochastic pulses:
    counting noise only); ctf_expected (CTF expected update: bias only); ctf (full CTF model); ctf_comp
    (full model + OUR gain compensation); ideal_gauss (ideal expected update + Gaussian noise matched
    to the full CTF model's variance: noise only). Trains every arm and seed (resumable through the
    store), and measures the relative bias and noise of single updates of each arm on realistic
    (x, d) pairs. See `ctfrpu report` for the figures and the verdict.
    """
    from ..config import merge
    from ..experiments.ablation import ARM_ORDER, ablation_configs, measure_arms
    from ..pipeline.reproduce import check_datasets, run_configs

    arm_list = list(ARM_ORDER) if arms.strip() == "all" else _list(arms, "--arms", str)
    bad = [a for a in arm_list if a not in ARM_ORDER]
    if bad:
        raise CtfrpuError(f"--arms: unknown arm {bad[0]!r}; choose from {', '.join(ARM_ORDER)}")
    seed_list = _list(seeds, "--seeds", _int)
    hidden_list = _list(hidden, "--hidden", _int)
    if workers is not None and scheduler:
        raise CtfrpuError("--workers sizes the local cluster; it cannot be used with --scheduler")
    if scheduler:
        from ..sweep.engine import check_scheduler_address

        check_scheduler_address(scheduler)
    data = {"dataset": dataset, "train_limit": train_limit}
    if test_limit:
        data["test_limit"] = test_limit
    base = {"data": data, "optim": {"epochs": epochs, "lr": lr}, "model": {"hidden": hidden_list},
            "device": {"kind": "ctf", "params_file": device_params}, "pulses": {"n": n, "gap": _time(gap)}}
    configs = ablation_configs(base, seed_list, arm_list)
    datasets = check_datasets([dataset], data_dir)
    with _store(store_path) as st:
        counts = run_configs(f"ablation-{dataset}-N{n}", configs, st, Path(out_dir), workers=workers,
                             scheduler=scheduler, data_dir=data_dir, log=_echo, datasets=datasets, progress=progress)
        _echo(f"ablation: training runs {counts}")
        if stats:
            measure_arms(ablation_configs(merge(base, {}), seed_list[:1], arm_list), datasets[dataset], st,
                         pairs=stats_pairs, reps=stats_reps, log=_echo)
    _echo(f"ablation done; build the report with `ctfrpu report --store {st.path}`")


# ------------------------------------------------------------------------------------- reproduce


@click.command("reproduce")
@click.option("--profile", type=click.Choice(["quick", "medium", "paper", "full", "smoke"]), default="quick",
              show_default=True,
              help="quick: one 2-core machine, 6-8 min; medium: 3 seeds, 2x the data, 11-26 min on 2 cores; "
                   "paper: paper scale with OUR paper-consistent candidate preset, hours on 2 cores; "
                   "full: paper-scale grid for a cluster; smoke: seconds, synthetic data.")
@click.option("--store", "store_path", type=click.Path(), default=None, envvar="CTFRPU_STORE", help=_STORE_HELP)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="report", show_default=True,
              help="Output directory: OUT/report/ (report.html, figures/, tables/) and OUT/sweeps/ (the "
                   "generated sweep files).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local worker processes (default: one per core; 1 = in this process, no dask).")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Dask scheduler address (cluster; for --profile full).")
@click.option("--device-params", type=click.Path(dir_okay=False), default=None,
              help="CTF parameter file (or preset:NAME) for every CTF run (default: the profile's, "
                   "our illustrative preset except for --profile paper).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, envvar="CTFRPU_DATA", help=_DATA_HELP)
@click.option("--report/--no-report", default=True, show_default=True, help="Build the report at the end.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def reproduce(profile, store_path, out_dir, workers, scheduler, device_params, data_dir, report, progress) -> None:
    """Reproduce the system paper's study in OUR model, resumably: training grid, ablation, report.

    quick: MNIST and Fashion-MNIST, 4,000 training samples x 3 epochs (lr 0.1), N in {100, 300,
    1000}, t_gap in {0.1, 100} us, with/without OUR compensation, 2 seeds, FP baseline, the ablation
    on MNIST at N = 1000 with update statistics, then the report -- `make reproduce` in a fresh
    clone took 8 min 21 s with the install and the cold numba cache (2026-12-03, 2 idle cores,
    compiled training loop; on a faster 2-core machine, 2026-12-04: 4 min 34 s, then 4 min 0 s
    after that day's kernel changes); its accuracies are pre-convergence (see the report).

    medium: the same with 8,000 samples, 3 seeds and the ablation on both
    datasets -- 11-26 min on 2 cores.

    paper: all 60,000 samples x 5 epochs (lr 0.1, x0.6 per epoch; FP measured 97.80 % MNIST /
    87.25 % Fashion-MNIST, 5 seeds) with OUR paper-consistent candidate preset (preset:ctf_paper,
    train timing), N in {100, 300, 1000},
    t_gap in {0.1, 10, 100} us, with/without compensation, 5 paired seeds, the 2 x 2 bias x noise
    ablation on both datasets; 225 runs, about 7 h on 2 cores, of which the 30 dense-mode ablation
    runs take 13-18 min each (results/paper/ holds its committed store and report).

    full: all 60,000 samples x 30 epochs (lr 0.01), N in {100, 300, 1000, 3000}, t_gap in {0.1, 1,
    10, 100} us, 3 seeds, ablation at N = 100 and 1000 on both datasets: meant for a cluster
    (--scheduler).

    Rerunning continues where it stopped (finished config hashes are skipped).
    MNIST and Fashion-MNIST must be fetched first (`ctfrpu data fetch`).
    """
    from ..pipeline.reproduce import check_study_device, get_profile
    from ..pipeline.reproduce import reproduce as run

    check_study_device(get_profile(profile), params_file=device_params)  # before a store is created
    if workers is not None and scheduler:
        raise CtfrpuError("--workers sizes the local cluster; it cannot be used with --scheduler")
    if scheduler:
        from ..sweep.engine import check_scheduler_address

        check_scheduler_address(scheduler)
    with _store(store_path) as st:
        try:
            res = run(profile, st, out_dir, workers=workers, scheduler=scheduler, data_dir=data_dir,
                      params_file=device_params, log=_echo, progress=progress, report=report)
        except KeyboardInterrupt:
            click.echo("interrupted: the finished runs are recorded; rerun the same command to resume", err=True)
            raise click.exceptions.Exit(130)
    _echo(json.dumps(res))


COMMANDS: list = [report, ablation, reproduce, design]
