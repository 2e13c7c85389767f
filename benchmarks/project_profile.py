"""Projection: the wall time of a reproduction profile on K workers, from per-run times measured in a
run store (the "paper-scale line" of the speed benchmarks).

    .venv/bin/python benchmarks/project_profile.py [--store results/paper/paper.db]
        [--profile full] [--workers 2,64] [--json]

Model (ours): the wall time of a run is samples x epochs x c, where c (seconds per training
sample) is fitted per (device kind, update mode) as a + b N by least squares over the store's
finished runs -- FP runs give one constant. The per-sample cost is close to linear in N because the
device pulses per update grow with N while the forward/backward part does not. The profile's runs
are then packed on K workers, longest first (LPT: within 4/3 of the best packing). What the store's
runs cost depends on their machine and its load (their workers shared the cores), on their device
parameters and timing model (the fit pools them), and N outside the measured range (3000 in
``full``) is an extrapolation; the output says so.
"""

from __future__ import annotations

import argparse
import heapq
import json
from collections import defaultdict

import numpy as np


def per_sample_costs(records) -> dict[tuple[str, str], tuple[float, float, list[int]]]:
    """(kind, mode) -> (a, b, measured N) with seconds per sample = a + b N."""
    points: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for r in records:
        f = r.final or {}
        samples, epochs, sec = f.get("train_samples"), f.get("epochs"), f.get("seconds")
        if not (samples and epochs and sec):
            continue
        kind = r.config["device"]["kind"]
        mode = r.config["update"]["mode"] if kind != "fp" else "-"
        n = r.config["pulses"]["n"] if kind != "fp" else 0
        points[(kind, mode)].append((n, sec / (samples * epochs)))
    out = {}
    for key, pts in points.items():
        n = np.array([p[0] for p in pts], float)
        c = np.array([p[1] for p in pts])
        if key[0] == "fp" or len(set(n)) < 2:
            out[key] = (float(np.median(c)), 0.0, sorted(set(int(v) for v in n)))
        else:
            b, a = np.polyfit(n, c, 1)
            out[key] = (float(a), float(max(b, 0.0)), sorted(set(int(v) for v in n)))
    return out


def run_seconds(cfg, costs, samples: dict[str, int]) -> float:
    kind = cfg.device.kind
    mode = cfg.update.mode if kind != "fp" else "-"
    key = (kind, mode) if (kind, mode) in costs else ("ctf", "exact")
    a, b, _ = costs[key]
    n = cfg.pulses.n if kind != "fp" else 0
    limit = cfg.data.train_limit or samples[cfg.data.dataset]
    return (a + b * n) * limit * cfg.optim.epochs


def lpt(times: list[float], workers: int) -> float:
    """Makespan of longest-processing-time-first packing on ``workers`` identical workers."""
    heap = [0.0] * workers
    for t in sorted(times, reverse=True):
        heapq.heappush(heap, heapq.heappop(heap) + t)
    return max(heap)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="results/paper/paper.db")
    ap.add_argument("--profile", default="full")
    ap.add_argument("--workers", default="2,64", help="comma-separated worker counts")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from ctfrpu.pipeline.reproduce import get_profile, grid_configs
    from ctfrpu.store import Store

    with Store(args.store, create=False) as st:
        records = st.list(status="finished")
    costs = per_sample_costs(records)
    if not costs:
        print(f"no finished runs with timings in {args.store}")
        return 1
    profile = get_profile(args.profile)
    samples: dict[str, int] = {}  # a full training set's size, as the store's runs saw it
    for r in records:
        ds = r.config["data"]["dataset"]
        samples[ds] = max(samples.get(ds, 0), int((r.final or {}).get("train_samples") or 0))
    missing = sorted({c.data.dataset for c in grid_configs(profile)} - {d for d, n in samples.items() if n})
    for ds in missing:  # MNIST and Fashion-MNIST both have 60,000 training samples
        samples[ds] = max(samples.values())
    configs = grid_configs(profile)
    times = [run_seconds(c, costs, samples) for c in configs]
    measured_ns = sorted({n for _, _, ns in costs.values() for n in ns if n})
    extrapolated = sorted({c.pulses.n for c in configs if c.device.kind != "fp"} - set(measured_ns))
    out = {
        "store": args.store, "profile": profile.name, "runs": len(configs),
        "cost_model_s_per_sample": {f"{k[0]}/{k[1]}": {"a": a, "b_per_pulse": b, "measured_N": ns}
                                    for k, (a, b, ns) in costs.items()},
        "extrapolated_N": extrapolated,
        "total_run_hours": round(sum(times) / 3600, 2),
        "wall_hours": {int(w): round(lpt(times, int(w)) / 3600, 2) for w in args.workers.split(",")},
        "datasets_sized_like_another": missing,
        "note": "per-run times as measured in the store (their machine and load); N outside measured_N is "
                "extrapolated linearly",
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"profile {profile.name}: {len(configs)} runs; cost model from {len(records)} finished runs in "
              f"{args.store} (measured N {measured_ns}; extrapolated N {extrapolated or 'none'}"
              + (f"; no run of {', '.join(missing)}: sized like the others" if missing else "") + ")")
        for k, v in out["cost_model_s_per_sample"].items():
            print(f"  {k:12s} {v['a'] * 1e6:7.1f} us/sample + {v['b_per_pulse'] * 1e9:7.2f} ns x N")
        print(f"  sum of run times: {out['total_run_hours']:.1f} h")
        for w, h in out["wall_hours"].items():
            print(f"  wall on {w:3d} workers (LPT packing): {h:.1f} h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
