"""Sweeps: many runs from one file, on dask.distributed, resumable, with tidy exports.

    spec.py     load_sweep(path) -> Sweep (validated runs: index, config, hash, varied fields)
    engine.py   run_sweep(sweep, store, workers=, scheduler=, retry_failed=, data_dir=) -> SweepResult
                store_status(sweep, store) -> {hash: StoreState('finished'|'failed'|'missing', ...)}
    worker.py   run_task: what a worker runs (train one config, dataset cached per process)
    export.py   export_runs(store, 'csv'|'parquet', out, sweep=None) -> (runs file, epochs file)

See docs/sweeps.md. Only the client (engine.py) writes the run store.
"""

from .engine import RunOutcome, StoreState, SweepResult, run_sweep, store_status
from .export import export_runs, tables
from .spec import Sweep, SweepRun, load_sweep, parse_sweep

__all__ = [
    "RunOutcome", "StoreState", "Sweep", "SweepResult", "SweepRun", "export_runs", "load_sweep",
    "parse_sweep", "run_sweep", "store_status", "tables",
]
