"""Reading the run store for the report: finished runs as flat rows, grouped into studies.

A *study* is a set of runs that differ only in what the paper varies (device, update mode,
compensation, pulse design N and t_gap, seed) and in the dataset: same training budget
(train_limit, epochs), learning rate, network, test set and periphery. Runs are classified by their
config, not by their sweep label, so a run shared by several sweeps (same config hash) counts once.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..arms import STATS_SWEEP, classify

TEST_SET_SIZE = {"mnist": 10000, "fashion": 10000, "synthetic": 500}


@dataclass
class RunRow:
    run_id: int
    study: str
    dataset: str
    arm: str | None
    device: str
    mode: str
    comp: str
    n: int
    gap: float
    seed: int
    accuracy: float
    curve: list[tuple[int, float]]
    n_test: int
    t_on: float
    config: dict[str, Any] = field(repr=False)
    sweep: str | None = None
    """the sweep label the run was recorded under (e.g. 'reproduce-paper')."""
    bias_pulses: int | None = None
    """N_b of a 2x2 factorial-arm run (``update.mode = 'factorial'``), else None."""


@dataclass
class Study:
    key: str
    label: str
    settings: dict[str, Any]
    runs: list[RunRow] = field(default_factory=list)
    stats: list[dict[str, Any]] = field(default_factory=list)
    """update-statistics records (``final`` dicts with ``dataset`` added)."""

    @property
    def profile(self) -> str | None:
        """The `reproduce` profile most of the runs came from (their sweep label), if any."""
        names = [r.sweep[len("reproduce-"):] for r in self.runs if r.sweep and r.sweep.startswith("reproduce-")]
        return max(set(names), key=names.count) if names else None

    @property
    def datasets(self) -> list[str]:
        order = {"mnist": 0, "fashion": 1, "synthetic": 2}
        return sorted({r.dataset for r in self.runs} | {s["dataset"] for s in self.stats},
                      key=lambda d: (order.get(d, 9), d))


def study_settings(config: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for runs to be compared (everything but the studied knobs)."""
    data = config.get("data", {})
    optim = config.get("optim", {})
    model = config.get("model", {})
    return {
        "train_limit": data.get("train_limit"), "test_limit": data.get("test_limit"),
        "val_size": data.get("val_size", 0), "epochs": optim.get("epochs"), "lr": optim.get("lr"),
        "lr_decay": optim.get("lr_decay", 1.0), "batch_size": optim.get("batch_size", 1), "hidden": model.get("hidden"),
        "activation": model.get("activation"), "io": config.get("io", {}),
    }


def study_label(s: dict[str, Any]) -> str:
    train = "all" if s["train_limit"] is None else f"{s['train_limit']:,}"
    test = "all" if s["test_limit"] is None else f"{s['test_limit']:,}"
    hidden = "-".join(str(h) for h in (s["hidden"] or []))
    decay = s.get("lr_decay", 1.0)
    lr = f"lr {s['lr']:g}" + (f" (x{decay:g} per epoch)" if decay != 1.0 else "")
    return (f"{train} training samples x {s['epochs']} epochs, {lr}, batch {s['batch_size']}, "
            f"MLP 784-{hidden}-10 ({s['activation']}), {test} test samples")


def _key(s: dict[str, Any]) -> str:
    return json.dumps(s, sort_keys=True)


def load_studies(store) -> list[Study]:
    """All finished runs of ``store`` grouped into studies, the largest (most runs) first."""
    studies: dict[str, Study] = {}

    def study_for(cfg: dict[str, Any]) -> Study:
        s = study_settings(cfg)
        k = _key(s)
        if k not in studies:
            studies[k] = Study(key=k, label=study_label(s), settings=s)
        return studies[k]

    for rec in store.list(status="finished"):
        cfg = rec.config or {}
        final = rec.final or {}
        dataset = cfg.get("data", {}).get("dataset", "?")
        if final.get("kind") == "update_stats" or rec.sweep == STATS_SWEEP:
            if final.get("layers"):
                study_for(cfg).stats.append(dict(final, dataset=dataset, run_id=rec.id, config=cfg))
            continue
        acc = final.get("test_accuracy")
        if acc is None or not math.isfinite(float(acc)):
            continue
        pulses = cfg.get("pulses", {})
        test_limit = cfg.get("data", {}).get("test_limit")
        n_test = int(test_limit) if test_limit else TEST_SET_SIZE.get(dataset, 10000)
        curve = [(int(e["epoch"]), float(e["test_accuracy"])) for e in rec.epochs
                 if "test_accuracy" in e and e["test_accuracy"] is not None]
        row = RunRow(run_id=rec.id, study="", dataset=dataset, arm=classify(cfg),
                     device=cfg.get("device", {}).get("kind", "fp"),
                     mode=cfg.get("update", {}).get("mode", "exact"),
                     comp=cfg.get("compensation", {}).get("kind", "none"),
                     n=int(pulses.get("n", 0)), gap=float(pulses.get("gap", 0.0)), seed=int(cfg.get("seed", 0)),
                     accuracy=float(acc), curve=curve, n_test=n_test, t_on=float(pulses.get("t_on", 0.0)),
                     config=cfg, sweep=rec.sweep, bias_pulses=cfg.get("update", {}).get("bias_pulses")
                     if cfg.get("update", {}).get("mode") == "factorial" else None)
        st = study_for(cfg)
        row.study = st.key
        st.runs.append(row)
    # one run per config (the first finished one) -- a rerun of the same config is not a new seed
    for st in studies.values():
        seen: set[tuple] = set()
        unique = []
        for r in st.runs:
            sig = (r.dataset, _normal_key(r.config))
            if sig in seen:
                continue
            seen.add(sig)
            unique.append(r)
        st.runs = unique
        latest: dict[tuple, dict[str, Any]] = {}
        for rec in st.stats:       # one update-statistics record per (dataset, design, arm): the latest
            latest[(rec["dataset"], rec.get("n"), rec.get("gap"), rec.get("arm"))] = rec
        st.stats = list(latest.values())
    return sorted(studies.values(), key=lambda s: (-len(s.runs), s.key))


def _normal_key(config: dict[str, Any]) -> str:
    """Identity of a run's config across schema versions: the hash of the config re-validated with
    today's defaults (a record written before a new field existed equals one written after it)."""
    from ..config import stored_config
    from ..errors import CtfrpuError

    try:
        return stored_config({k: v for k, v in config.items() if k not in ("name", "sweep")}).hash()
    except CtfrpuError:
        return json.dumps({k: v for k, v in config.items() if k not in ("name", "sweep")}, sort_keys=True)


def group(rows: list[RunRow], *keys: str) -> dict[tuple, list[RunRow]]:
    out: dict[tuple, list[RunRow]] = defaultdict(list)
    for r in rows:
        out[tuple(getattr(r, k) for k in keys)].append(r)
    return dict(out)
