"""`ctfrpu sweep FILE`: run (or list, with --dry-run) the runs of a sweep file, resumably."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import CtfrpuError
from .common import store_option


def _axes_text(sweep) -> str:
    if not sweep.axes:
        return "no grid"
    return " x ".join(f"{k} ({len(v)})" for k, v in sweep.axes.items())


@click.command("sweep")
@click.argument("file", metavar="FILE")
@store_option
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes of the local cluster (default: one per core, at most one per run).")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Use the running dask cluster at ADDRESS (e.g. tcp://10.0.0.5:8786) instead of a local one.")
@click.option("--retry-failed", is_flag=True, help="Also rerun runs whose only records failed.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Dataset directory as seen by the workers (default: $CTFRPU_DATA or ~/.cache/ctfrpu/data).")
@click.option("--dry-run", is_flag=True, help="List the runs and their status in the store; run nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a machine-readable summary (JSON) on stdout; progress lines go to stderr.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("-v", "--verbose", is_flag=True, help="Show dask's own log messages.")
def sweep(file: str, store_path: str | None, workers: int | None, scheduler: str | None,
          retry_failed: bool, data_dir: str | None, dry_run: bool, as_json: bool,
          progress: bool | None, verbose: bool) -> None:
    """Run every run of the sweep FILE that has no finished run in the store.

    FILE is a sweep TOML file (a [base] config, a [grid] of dotted paths -> lists of values,
    optional [[runs]]) or the name of a shipped sweep (e.g. `example`); see docs/sweeps.md.
    Rerunning after a crash, kill or Ctrl-C runs only what is missing. Exit status: 0 when every
    run of the sweep is finished (or diverged: a result, not rerun) in the store, 1 when some failed, 130 when interrupted by Ctrl-C (143: SIGTERM).
    """
    from ..store import Store, default_store_path
    from ..sweep.spec import load_sweep

    if scheduler:
        from ..sweep.engine import check_scheduler_address

        check_scheduler_address(scheduler)
    spec = load_sweep(file)
    if spec.equivalent:
        shown = ", ".join(f"{a} = {b}" for a, b in spec.equivalent[:6]) + (" ..." if len(spec.equivalent) > 6 else "")
        click.echo(f"warning: {len(spec.equivalent)} run(s) of this sweep compute the same as an earlier one "
                   f"(settings their device ignores, e.g. pulses or compensation of an fp run): runs {shown}",
                   err=True)
    path = Path(store_path) if store_path else default_store_path()
    if dry_run:
        _dry_run(spec, path, as_json)
        return
    if workers is not None and scheduler:
        raise CtfrpuError("--workers sizes the local cluster; it cannot be used with --scheduler")

    from ..sweep.engine import run_sweep

    log = sys.stderr if as_json else sys.stdout
    with Store(path) as store:
        result = run_sweep(spec, store, workers=workers, scheduler=scheduler,
                           retry_failed=retry_failed, data_dir=data_dir, log=log,
                           progress=progress, verbose=verbose)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _summary(result)
    if result.interrupted:
        raise click.exceptions.Exit(143 if result.terminated else 130)
    if not result.complete:
        raise click.exceptions.Exit(1)


def _summary(result) -> None:
    c = result.to_dict()["counts"]
    done = c["finished"] + c["skipped-finished"] + c["diverged"] + c["skipped-diverged"]
    parts = [f"{c['finished']} finished now", f"{c['failed']} failed now",
             f"{c['skipped-finished']} already finished"]
    if c["diverged"] or c["skipped-diverged"]:
        parts.append(f"{c['diverged'] + c['skipped-diverged']} diverged (a result: not rerun)")
    if c["skipped-failed"]:
        parts.append(f"{c['skipped-failed']} failed before (rerun with --retry-failed)")
    if c["not-run"]:
        parts.append(f"{c['not-run']} not run")
    where = result.scheduler or (f"{result.n_workers} local workers" if result.n_workers else "no cluster")
    click.echo(f"sweep {result.sweep}: {done}/{result.total} runs finished in the store "
               f"({', '.join(parts)}); {result.wall_seconds:.1f}s on {where}")
    if result.workers:
        peak = max(w["peak_rss_mb"] for w in result.workers.values())
        click.echo(f"peak worker memory: {peak:.0f} MiB (max over {len(result.workers)} workers)")
    click.echo(f"store: {result.store}  (results: ctfrpu runs export --sweep {result.sweep} "
               "--format csv --out FILE)")


def _dry_run(spec, path: Path, as_json: bool) -> None:
    from ..store import Store
    from ..sweep.engine import StoreState, store_status

    if path.exists():
        with Store(path) as store:
            status = store_status(spec, store)
    else:  # do not create a store just to list a sweep
        status = {run.hash: StoreState("missing", None, None) for run in spec.runs}
    counts = {s: sum(st.status == s for st in status.values())
              for s in ("finished", "diverged", "failed", "missing")}
    if as_json:
        click.echo(json.dumps({
            "sweep": spec.name, "file": str(spec.path), "store": str(path), "total": len(spec.runs),
            "duplicates": spec.duplicates, "counts": counts,
            "runs": [{"index": r.index, "hash": r.hash, "status": status[r.hash].status,
                      "run_id": status[r.hash].run_id, "final": status[r.hash].final,
                      "varied": r.varied, "config": r.config.to_dict()}
                     for r in spec.runs],
        }, indent=2))
        return
    click.echo(f"sweep {spec.name}: {len(spec.runs)} runs ({_axes_text(spec)}"
               + (f", {spec.duplicates} duplicate configs dropped" if spec.duplicates else "")
               + f"); store {path}")
    width = len(str(len(spec.runs)))
    click.echo(f"{'#':>{width}}  {'hash':16}  {'status':8}  {'acc':>6}  varied")
    for r in spec.runs:
        st = status[r.hash]
        acc = (st.final or {}).get("test_accuracy")
        acc_s = f"{acc:.4f}" if isinstance(acc, (int, float)) else "-"
        click.echo(f"{r.index:>{width}}  {r.hash}  {st.status:8}  {acc_s:>6}  {r.label()}")
    diverged = f"{counts['diverged']} diverged, " if counts["diverged"] else ""
    click.echo(f"{counts['finished']} finished, {diverged}{counts['failed']} failed, {counts['missing']} missing"
               + ("" if not counts["failed"] else " (failed runs rerun only with --retry-failed)"))


COMMANDS: list = [sweep]
