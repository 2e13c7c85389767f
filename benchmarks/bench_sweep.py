"""Benchmark: a small sweep on a dask LocalCluster vs the same runs one after another in-process.

    .venv/bin/python benchmarks/bench_sweep.py [--runs 8] [--workers K] [--device fp]
        [--dataset synthetic] [--train-limit 2000] [--test-limit 500] [--hidden 256] [--epochs 10]
        [--json]

Reports
  * sequential: wall time of the runs in this process, one after another (the training stack
    imported and the dataset loaded once, the first run pays the one-time JIT costs, as each
    worker does);
  * sweep: wall time of ``run_sweep`` with a fresh LocalCluster (start-up and shutdown included)
    writing a temporary run store, and the span from the first run's start to the last run's end;
  * ratio = sequential / sweep (the speed-up; ideal = number of workers, on idle cores);
  * peak RSS per worker process (ru_maxrss returned by each task) and of the sequential process;
  * that both ways give identical metrics (runs are deterministic for a seed).
Numbers depend on the machine and on its load: the cores are shared with anything else running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def sweep_doc(args) -> dict:
    return {
        "name": "bench",
        "base": {"data": {"dataset": args.dataset, "train_limit": args.train_limit or None,
                          "test_limit": args.test_limit or None},
                 "model": {"hidden": [args.hidden]}, "optim": {"epochs": args.epochs},
                 "device": {"kind": args.device}},
        "grid": {"seed": list(range(args.runs))},
    }


def strip(final: dict) -> dict:
    return {k: v for k, v in final.items() if k != "seconds"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--workers", type=int, default=None, help="default: one per core")
    ap.add_argument("--device", default="fp")
    ap.add_argument("--dataset", default="synthetic", help="synthetic (default), mnist or fashion")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train-limit", type=int, default=2000, help="0 = the whole training set")
    ap.add_argument("--test-limit", type=int, default=500, help="0 = the whole test set")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from ctfrpu.store import Store
    from ctfrpu.sweep.engine import available_cores, run_sweep
    from ctfrpu.sweep.spec import parse_sweep
    from ctfrpu.sweep.worker import peak_rss_mb

    sweep = parse_sweep(sweep_doc(args), "bench")
    workers = args.workers or available_cores()

    # 1. sequential, in this process (before distributed is imported: its RSS is the run's);
    #    timed from the imports of the training stack on, as a worker pays them too
    t0 = time.perf_counter()
    from ctfrpu.data import load_dataset
    from ctfrpu.training.runner import train_run

    data = load_dataset(args.dataset, args.data_dir)
    seq, seq_cpu = {}, []
    for run in sweep.runs:
        c0 = time.process_time()
        seq[run.hash] = strip(train_run(run.config, dataset=data)["final"])
        seq_cpu.append(time.process_time() - c0)
    t_seq = time.perf_counter() - t0
    seq_rss = peak_rss_mb()

    # 2. the sweep on a fresh LocalCluster
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        t0 = time.perf_counter()
        result = run_sweep(sweep, store, workers=workers, log=None, progress=False,
                           data_dir=args.data_dir)
        t_sweep = time.perf_counter() - t0
        records = store.list(status="finished")
    recs = {r.config_hash: strip(r.final) for r in records}
    runs = [o for o in result.outcomes if o.status == "finished"]
    for o in result.outcomes:
        if o.status != "finished":
            print(f"run {o.index} {o.status}: {o.error}", file=sys.stderr)
    if not records:
        return 1
    # from the first run's start to the last run's end on the workers: no cluster start/stop
    t_span = max(r.ended for r in records) - min(r.started for r in records)
    identical = recs == seq
    out = {
        "runs": len(sweep.runs), "device": args.device, "dataset": args.dataset,
        "train_limit": args.train_limit, "test_limit": args.test_limit,
        "hidden": args.hidden, "epochs": args.epochs, "cores": available_cores(),
        "workers": result.n_workers,
        "sequential_s": round(t_seq, 2), "sweep_s": round(t_sweep, 2),
        "ratio": round(t_seq / t_sweep, 2), "sweep_runs_span_s": round(t_span, 2),
        "ratio_without_cluster_startup": round(t_seq / t_span, 2),
        "per_run_s_mean": round(sum(o.seconds for o in runs) / max(len(runs), 1), 2),
        # CPU time (all threads) per run: alone in this process vs inside a worker; the first run of
        # a process also pays the JIT/cache loading, so the later runs are shown apart
        "cpu_per_run_alone_s": [round(c, 2) for c in seq_cpu],
        "cpu_per_run_in_sweep_s": [round(o.cpu_seconds, 2) for o in sorted(runs, key=lambda o: o.index)
                                   if o.cpu_seconds is not None],
        "peak_rss_mb_per_worker": {k: v["peak_rss_mb"] for k, v in result.workers.items()},
        "dataset_loads_per_worker": {k: v["dataset_loads"] for k, v in result.workers.items()},
        "peak_rss_mb_sequential_process": round(seq_rss, 1),
        "identical_metrics": identical,
        "load_average_1min_after": round(os.getloadavg()[0], 2),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        rss = list(out["peak_rss_mb_per_worker"].values())
        print(f"{out['runs']} runs ({args.device}, {args.dataset}, train_limit={args.train_limit or 'all'}, "
              f"hidden=[{args.hidden}], epochs={args.epochs}) on {out['cores']} cores "
              f"(load average after: {out['load_average_1min_after']})")
        print(f"  sequential in-process : {t_seq:7.2f} s")
        print(f"  LocalCluster sweep    : {t_sweep:7.2f} s  ({result.n_workers} workers, start-up included)")
        print(f"    of which runs       : {t_span:7.2f} s  (first run start to last run end)")
        print(f"  ratio (speed-up)      : {out['ratio']:7.2f}x  "
              f"({out['ratio_without_cluster_startup']:.2f}x without cluster start/stop)")
        print(f"  peak RSS per worker   : {min(rss):.0f}-{max(rss):.0f} MiB "
              f"(sequential process: {seq_rss:.0f} MiB)")
        alone, inside = out["cpu_per_run_alone_s"], out["cpu_per_run_in_sweep_s"]
        print(f"  CPU per run alone     : {' '.join(f'{c:.1f}' for c in alone)} s")
        print(f"  CPU per run in sweep  : {' '.join(f'{c:.1f}' for c in inside)} s")
        print(f"  identical metrics     : {identical}")
    return 0 if identical and result.complete else 1


if __name__ == "__main__":
    sys.exit(main())
