"""``ctfrpu reproduce``: the paper's system-level study, end to end, resumable.

Profiles (OUR choices of grid and budget; the paper's own training set-up is not public):

* ``quick`` -- one 2-core machine in <= 15 minutes including numba compilation (measured
  2026-12-03 on 2 idle cores, 2 dask workers: ``make reproduce`` in a fresh clone 8 min 21 s with
  the install and the cold numba cache, on the compiled training loop; 4 min 34 s on a faster
  2-core machine, 2026-12-04): both datasets on a
  data subset (:data:`PROFILES`), a reduced grid of N and t_gap with and without compensation, two
  seeds, the FP baseline, the ablation on MNIST and its update statistics, then the report.
  It uses a larger learning rate than ``full`` (0.1 instead of 0.01) so that 12,000 SGD steps
  bring the sigmoid MLP near 90 % on MNIST (with lr 0.05 and 6,000 steps it is still on its initial
  plateau, where update noise *speeds up* learning and comparisons say little about the paper);
  coincidence probabilities P = lr |x d| / (N dw_min) scale with lr.
* ``full`` -- the paper-scale grid for a cluster (``--scheduler``): both datasets, all 60,000
  training samples, N in {100, 300, 1000, 3000}, t_gap in {0.1, 1, 10, 100} µs, compensation
  on/off, 3 seeds, the FP baseline with the same epochs, the ablation at N = 100 and N = 1000 on
  both datasets.
* ``paper`` -- paper scale with OUR paper-consistent candidate preset (``preset:ctf_paper``, train
  timing; ``docs/science.md`` §9-§10): both datasets, all 60,000 samples x 5 epochs (lr 0.1 decayed
  x0.6 per epoch), N in {100, 300, 1000}, t_gap in {0.1, 10, 100} µs, compensation on/off, 5 paired
  seeds, the FP baseline, the 2 x 2 bias x noise factorial and, on MNIST, the single-factor arms.
  The dense-mode ablation runs come last (:func:`_dense_last`). Its store and report are committed
  in ``results/paper/``.
* ``smoke`` -- seconds, the synthetic dataset and a tiny MLP: checks the pipeline, not the paper.

Every training run goes through the sweep engine (a sweep file is written to ``OUT/sweeps``), so a
rerun skips every config hash already finished in the store; the update statistics are keyed in
the store the same way. The report is rebuilt at the end.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import RunConfig, merge, validate
from ..errors import CtfrpuError
from ..experiments.ablation import ARM_ORDER, ablation_configs, arm_config, factorial_configs, measure_arms


@dataclass(frozen=True)
class Profile:
    name: str
    datasets: tuple[str, ...]
    train_limit: int | None
    test_limit: int | None
    epochs: int
    lr: float
    ns: tuple[int, ...]
    gaps: tuple[float, ...]
    seeds: tuple[int, ...]
    comps: tuple[str, ...] = ("none", "gain")
    hidden: tuple[int, ...] = (256, 128)
    ablation_datasets: tuple[str, ...] = ("mnist",)
    ablation_designs: tuple[tuple[int, float], ...] = ((1000, 1e-6),)
    stats_pairs: int = 8
    stats_reps: int = 50
    stats_warmup: int = 500
    description: str = ""
    lr_decay: float = 1.0
    params_file: str | None = None
    """The profile's CTF parameters (``preset:NAME`` or a path); None: the illustrative preset.
    ``--device-params`` replaces it."""
    timing: str = "slot"
    """``update.timing`` of every analog run (``ctfrpu.devices.timing``)."""
    factorial: tuple[int, int, float] | None = None
    """(N_small, N_large, t_gap) of the 2 x 2 bias x noise ablation (issue 10), on ``factorial_datasets``."""
    factorial_datasets: tuple[str, ...] = ()
    engine: str = "compiled"
    """``optim.engine`` of every run. The profiles whose results are committed (medium, paper) ran
    on the reference engine and keep it, so that rerunning them resumes their stores."""

    def base(self, dataset: str) -> dict[str, Any]:
        data: dict[str, Any] = {"dataset": dataset}
        if self.train_limit:
            data["train_limit"] = self.train_limit
        if self.test_limit:
            data["test_limit"] = self.test_limit
        optim = {"epochs": self.epochs, "lr": self.lr, "lr_decay": self.lr_decay}
        if self.engine != "compiled":
            optim["engine"] = self.engine
        base: dict[str, Any] = {"data": data, "optim": optim, "model": {"hidden": list(self.hidden)}}
        if self.timing != "slot":
            base["update"] = {"timing": self.timing}
        return base


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("quick", ("mnist", "fashion"), train_limit=4000, test_limit=None, epochs=3, lr=0.1,
            ns=(100, 300, 1000), gaps=(1e-7, 1e-4), seeds=(0, 1), ablation_designs=((1000, 1e-7),),
            stats_pairs=8, stats_reps=40,
            description="2-core machine, 6-8 min: 4,000 training samples x 3 epochs (lr 0.1), N in {100, 300, "
                        "1000}, t_gap in {0.1, 100} us, compensation on/off, 2 seeds, ablation on MNIST at N = 1000, "
                        "t_gap = 0.1 us"),
    Profile("medium", ("mnist", "fashion"), train_limit=8000, test_limit=None, epochs=3, lr=0.1,
            ns=(100, 300, 1000), gaps=(1e-7, 1e-4), seeds=(0, 1, 2), ablation_datasets=("mnist", "fashion"),
            ablation_designs=((1000, 1e-7),), stats_pairs=8, stats_reps=40, engine="reference",
            description="one 2-core machine, 11-26 min: 8,000 training samples x 3 epochs (lr 0.1), N in "
                        "{100, 300, 1000}, t_gap in {0.1, 100} us, compensation on/off, 3 seeds, ablation on both "
                        "datasets at N = 1000, t_gap = 0.1 us"),
    Profile("full", ("mnist", "fashion"), train_limit=None, test_limit=None, epochs=30, lr=0.01,
            ns=(100, 300, 1000, 3000), gaps=(1e-7, 1e-6, 1e-5, 1e-4), seeds=(0, 1, 2),
            ablation_datasets=("mnist", "fashion"), ablation_designs=((100, 1e-6), (1000, 1e-6)),
            stats_pairs=16, stats_reps=200,
            description="cluster: 60,000 samples x 30 epochs, N in {100, 300, 1000, 3000}, t_gap in "
                        "{0.1, 1, 10, 100} us, compensation on/off, 3 seeds, ablation on both datasets"),
    Profile("paper", ("mnist", "fashion"), train_limit=None, test_limit=None, epochs=5, lr=0.1, lr_decay=0.6,
            ns=(100, 300, 1000), gaps=(1e-7, 1e-5, 1e-4), seeds=(0, 1, 2, 3, 4),
            ablation_datasets=("mnist",), ablation_designs=((100, 1e-7),), params_file="preset:ctf_paper",
            timing="train", factorial=(100, 1000, 1e-7), factorial_datasets=("mnist", "fashion"),
            stats_pairs=8, stats_reps=40, engine="reference",
            description="paper scale, OUR paper-consistent candidate preset (ctf_paper, train timing): all 60,000 "
                        "samples x 5 epochs (lr 0.1, x0.6 per epoch; FP measured 97.80 % MNIST / 87.25 % Fashion, 5 seeds), "
                        "N in {100, 300, 1000}, t_gap in {0.1, 10, 100} us, compensation on/off, 5 paired seeds, "
                        "2 x 2 bias x noise ablation (N 100 / 1000, t_gap 0.1 us) on both datasets, the single-factor "
                        "arms on MNIST; 225 runs, about 7 h on 2 cores (the exact grid ~3 h; the 30 dense-mode ablation runs "
                        "13-18 min each)"),
    Profile("smoke", ("synthetic",), train_limit=200, test_limit=200, epochs=1, lr=0.05,
            ns=(100, 1000), gaps=(1e-6, 1e-4), seeds=(0, 1), hidden=(32,), ablation_datasets=("synthetic",),
            stats_pairs=2, stats_reps=5, stats_warmup=50,
            description="seconds: synthetic data, tiny MLP -- checks the pipeline, says nothing about the paper"),
)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise CtfrpuError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None


# ------------------------------------------------------------------------------------ configs


def grid_configs(profile: Profile, device_params: dict[str, Any] | None = None,
                 params_file: str | None = None) -> list[RunConfig]:
    """The study grid: per dataset FP per seed, the CTF full model at every (N, t_gap,
    compensation, seed) and the 2 x 2 factorial ablation; then the single-factor ablation arms --
    deduplicated by config hash (the ablation reuses grid runs). Seeds vary fastest, so a sweep
    that stops early leaves complete paired cells; per dataset the extreme N come first; the
    dense-mode ablation runs last (:func:`_dense_last`)."""
    out: list[RunConfig] = []
    seen: set[str] = set()

    def add(cfg: RunConfig) -> None:
        h = cfg.hash()
        if h not in seen:
            seen.add(h)
            out.append(cfg)

    dev = profile_device(profile, device_params, params_file)
    for ds in profile.datasets:
        base = merge(profile.base(ds), {"device": dev})
        for seed in profile.seeds:
            add(validate(dict(arm_config(base, "fp"), seed=seed)))

        def design(ns, comps) -> None:
            for comp in comps:
                for n in ns:
                    for gap in profile.gaps:
                        cfg = arm_config(merge(base, {"pulses": {"n": n, "gap": gap}}),
                                         "ctf_comp" if comp == "gain" else "ctf")
                        for seed in profile.seeds:
                            add(validate(dict(cfg, seed=seed)))

        # What the verdicts compare comes first, so a sweep stopped early can already decide:
        # the smallest and the largest N (compensated design first), then the factorial, then the rest.
        ends = [n for n in profile.ns if n in (min(profile.ns), max(profile.ns))]
        comps = sorted(profile.comps, key=lambda c: c != "gain")
        design(ends, comps)
        if profile.factorial and ds in profile.factorial_datasets:
            n_small, n_large, gap = profile.factorial
            for cfg in factorial_configs(merge(base, {"pulses": {"gap": gap}}), n_small, n_large, profile.seeds):
                add(cfg)
        design([n for n in profile.ns if n not in ends], comps)
    for ds in profile.datasets:
        base = merge(profile.base(ds), {"device": dev})
        if ds in profile.ablation_datasets:
            for n, gap in profile.ablation_designs:
                b = merge(base, {"pulses": {"n": n, "gap": gap}})
                for cfg in ablation_configs(b, profile.seeds):
                    add(cfg)
    return _dense_last(out)


DENSE_MODES = ("factorial", "expected", "gaussian")
"""Update modes that visit every active cell per sample (13-18 min per paper-scale factorial run,
two at once on 2 cores, against ~1.5 min for the pulse-exact mode)."""


def _dense_last(configs: list[RunConfig]) -> list[RunConfig]:
    """The pulse-exact and FP runs first (what most verdicts rest on, cheap), then the dense-mode
    ablation runs: the factorial before the single-factor arms, per dataset, seed by seed (both
    off-diagonal arms of a seed together), so a sweep stopped early leaves complete paired seeds."""
    fast = [c for c in configs if c.update.mode not in DENSE_MODES]
    dense = [c for c in configs if c.update.mode in DENSE_MODES]
    datasets = list(dict.fromkeys(c.data.dataset for c in configs))
    dense.sort(key=lambda c: (c.update.mode != "factorial", datasets.index(c.data.dataset), c.seed))
    return fast + dense


def profile_device(profile: Profile, device_params: dict[str, Any] | None = None,
                   params_file: str | None = None) -> dict[str, Any]:
    """The CTF device section of a profile's runs (``--device-params`` replaces the profile's file)."""
    return {"kind": "ctf", "params": dict(device_params or {}), "params_file": params_file or profile.params_file}


def check_study_device(profile: Profile, device_params: dict[str, Any] | None = None,
                       params_file: str | None = None) -> None:
    """The study tests the paper's findings on a device that behaves like the device paper's: CTF
    parameters that break one of its three trends (:mod:`ctfrpu.devices.trends`) are a one-line
    error before any run starts (train such a device with ``ctfrpu train`` instead)."""
    from ..devices import build_device
    from ..devices.trends import require_trends

    dev = profile_device(profile, device_params, params_file)
    require_trends(build_device("ctf", dev["params_file"], dev["params"]),
                   dev["params_file"] or "the illustrative preset")


def profile_map(profile: Profile, params_file: str | None = None):
    """The explore map (and the preset's place on it) for a profile with its own device preset;
    (None, None) otherwise. Seconds: single-update predictions only."""
    file = params_file or profile.params_file
    if not file:
        return None, None
    from ..design.explore import map_for

    return map_for(file)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif v is not None:
            out[key] = v
    return out


def sweep_doc(name: str, configs: list[RunConfig], description: str = "") -> dict[str, Any]:
    """A sweep document (as parsed from TOML) with one explicit [[runs]] entry per config."""
    default = _flatten(RunConfig().to_dict())
    runs = []
    for cfg in configs:
        flat = _flatten(cfg.to_dict())
        flat.pop("name", None)
        flat.pop("sweep", None)
        runs.append({k: v for k, v in flat.items() if default.get(k, object()) != v or k in ("seed", "device.kind")})
    return {"name": name, "description": description, "base": {}, "runs": runs}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise CtfrpuError(f"cannot write non-finite value {v!r} to a sweep file")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise CtfrpuError(f"cannot write {type(v).__name__} to a sweep file")


def write_sweep_file(doc: dict[str, Any], path: Path) -> Path:
    """Write a sweep document as TOML (runs as dotted keys)."""
    lines = [f"# written by `ctfrpu reproduce`; run it with `ctfrpu sweep {path.name}`",
             f"name = {_toml_value(doc['name'])}", f"description = {_toml_value(doc.get('description', ''))}", ""]
    for run in doc["runs"]:
        lines.append("[[runs]]")
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in run.items()]
        lines.append("")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines))
    except OSError as err:
        raise CtfrpuError(f"cannot write sweep file {path}: {err.strerror or err}") from None
    return path


def check_datasets(names, data_dir=None) -> dict[str, Any]:
    """Load the datasets up front; a missing one is a one-line error naming ``ctfrpu data fetch``."""
    from ..data import load_dataset

    out = {}
    for name in names:
        try:
            out[name] = load_dataset(name, data_dir)
        except CtfrpuError as err:
            if name == "synthetic":
                raise
            raise CtfrpuError(f"dataset {name} is not available ({str(err).split(';')[0]}); run `ctfrpu data fetch` "
                              "first") from None
    return out


# ------------------------------------------------------------------------------------ running


def run_configs(name: str, configs: list[RunConfig], store, out: Path, workers: int | None = None,
                scheduler: str | None = None, data_dir: str | None = None, log: Callable[[str], None] = print,
                progress: bool | None = None, datasets: dict[str, Any] | None = None) -> dict[str, int]:
    """Run the configs through the sweep engine (``workers == 1`` without a scheduler: in this
    process, no dask); finished hashes in the store are skipped. Returns status counts."""
    from ..sweep.spec import parse_sweep

    doc = sweep_doc(name, configs)
    path = write_sweep_file(doc, out / "sweeps" / f"{name}.toml")
    sweep = parse_sweep(doc, str(path))
    if workers == 1 and not scheduler:
        return _run_in_process(sweep, store, log, data_dir, datasets or {})
    from ..sweep.engine import run_sweep

    stream = _LogStream(log)
    result = run_sweep(sweep, store, workers=workers, scheduler=scheduler, data_dir=data_dir, log=stream,
                       progress=progress, retry_failed=True)
    counts = result.to_dict()["counts"]
    if result.interrupted:
        raise KeyboardInterrupt
    return counts


class _LogStream:
    """A file-like object that forwards lines to ``log``."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log

    def write(self, text: str) -> int:
        for line in text.rstrip("\n").splitlines():
            if line.strip():
                self.log(line)
        return len(text)

    def flush(self) -> None:
        pass


def run_label(cfg: RunConfig) -> str:
    """Short label of a run: dataset, arm, design, seed."""
    from ..units import format_time
    from ..experiments.ablation import classify

    arm = classify(cfg.to_dict()) or f"{cfg.device.kind}/{cfg.update.mode}/{cfg.compensation.kind}"
    design = "" if cfg.device.kind == "fp" else f" N={cfg.pulses.n} gap={format_time(cfg.pulses.gap)}"
    return f"{cfg.data.dataset} {arm}{design} seed={cfg.seed}"


def _run_in_process(sweep, store, log, data_dir, datasets) -> dict[str, int]:
    from ..training.runner import execute_run

    from ..sweep.engine import store_status

    counts = {"finished": 0, "diverged": 0, "failed": 0, "skipped-finished": 0, "skipped-diverged": 0}
    todo = []
    status = store_status(sweep, store)
    for run in sweep.runs:
        if status[run.hash].status in ("finished", "diverged"):  # a diverged run is a result: not rerun
            counts[f"skipped-{status[run.hash].status}"] += 1
        else:
            todo.append(run)
    log(f"sweep {sweep.name}: {len(sweep.runs)} runs, {counts['skipped-finished']} already finished, "
        f"{len(todo)} to run (in this process)")
    for k, run in enumerate(todo, 1):  # failed runs of an earlier attempt are retried
        t0 = time.time()
        cfg = run.config
        resume = store.resumable_by_hash(run.hash)  # an interrupted run continues from its checkpoint
        try:
            _, res = execute_run(None if resume else cfg, store, progress=False, data_dir=data_dir,
                                 dataset=datasets.get(cfg.data.dataset), resume=resume)
            state = res.get("status", "finished")
            counts[state] += 1
            acc = res["final"]["test_accuracy"] if isinstance(res, dict) and "final" in res else float("nan")
            note = f" -- DIVERGED ({res.get('reason')})" if state == "diverged" else ""
            log(f"[{k}/{len(todo)}] {run_label(cfg)}: accuracy {100 * acc:.2f} % ({time.time() - t0:.1f} s){note}")
        except CtfrpuError as err:
            counts["failed"] += 1
            log(f"[{k}/{len(todo)}] {run_label(cfg)}: failed: {err}")
    return counts


def reproduce(profile_name: str, store, out: str | Path, workers: int | None = None, scheduler: str | None = None,
              data_dir: str | None = None, device_params: dict[str, Any] | None = None,
              params_file: str | None = None, log: Callable[[str], None] = print, progress: bool | None = None,
              report: bool = True) -> dict[str, Any]:
    """Run (or resume) a profile: training grid + ablation, update statistics, report."""
    profile = get_profile(profile_name)
    out = Path(out)
    t0 = time.time()
    datasets = check_datasets(profile.datasets, data_dir)
    configs = grid_configs(profile, device_params, params_file)
    check_study_device(profile, device_params, params_file)
    log(f"reproduce {profile.name}: {profile.description}")
    log(f"reproduce {profile.name}: {len(configs)} training runs -> store {store.path}")
    counts = run_configs(f"reproduce-{profile.name}", configs, store, out, workers=workers, scheduler=scheduler,
                         data_dir=data_dir, log=log, progress=progress, datasets=datasets)
    t_train = time.time() - t0
    log(f"reproduce {profile.name}: training done in {t_train:.0f} s ({counts})")
    stats = {}
    for ds in profile.ablation_datasets:
        for n, gap in profile.ablation_designs:
            dev = profile_device(profile, device_params, params_file)
            base = merge(profile.base(ds), {"device": dev, "pulses": {"n": n, "gap": gap}})
            cfgs = ablation_configs(base, profile.seeds[:1])
            stats[f"{ds}/N={n}"] = measure_arms(cfgs, datasets[ds], store, pairs=profile.stats_pairs,
                                                reps=profile.stats_reps, warmup=profile.stats_warmup, log=log)
    t_stats = time.time() - t0 - t_train
    result: dict[str, Any] = {"profile": profile.name, "runs": len(configs), "counts": counts,
                              "train_seconds": round(t_train, 1), "stats_seconds": round(t_stats, 1)}
    if report:
        from ..report import build_report

        points, mark = profile_map(profile, params_file)
        # the pipeline's own output: rebuilt on rerun
        path = build_report(store, out / "report", force=True, explore_points=points, explore_mark=mark)
        result["report"] = str(path)
        log(f"reproduce {profile.name}: report written to {path}")
    result["seconds"] = round(time.time() - t0, 1)
    log(f"reproduce {profile.name}: done in {result['seconds']:.0f} s")
    return result
