"""Run-store results as tidy tables (pandas), written as CSV or Parquet.

Two tables, two files (``ctfrpu runs export --format csv --out results`` writes
``results_runs.csv`` and ``results_epochs.csv``; an existing directory as ``--out`` gets
``runs.csv`` and ``epochs.csv``):

runs    one row per run: ``run_id, sweep, name, status, config_hash, started, ended, version,
        error``, the final metrics (``test_accuracy, train_loss, test_loss, seconds, ...``), then
        every config field as a dotted column (``seed, data.dataset, pulses.n, pulses.gap,
        device.params.dw_min, ...``).
epochs  one row per finished epoch: ``run_id, epoch``, the epoch metrics, then ``sweep, name,
        status, config_hash`` and the same config columns, so a plot needs no join.

Conventions: times ``started``/``ended`` are Unix seconds (float); ``pulses.gap`` etc. are in SI
units (seconds) as stored; list-valued fields (``model.hidden``) are JSON strings (``"[256,128]"``)
so that they can be grouped on; a device parameter a run does not override is empty (NaN). A
column whose values mix types (a rare ``device.params`` value) is written as strings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import CtfrpuError

FORMATS = ("csv", "parquet")
RUN_COLUMNS = ["run_id", "sweep", "name", "status", "config_hash", "started", "ended", "version",
               "error"]
EPOCH_KEYS = ["run_id", "epoch"]
_LABELS = ("name", "sweep")  # in the config too, identical to the run's columns


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {dotted path: scalar}; lists become JSON strings."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if not prefix and key in _LABELS:
            continue
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_config(value, path + "."))
        elif isinstance(value, (list, tuple)):
            out[path] = json.dumps(value, separators=(",", ":"))
        else:
            out[path] = value
    return out


def _prefixed(values: dict[str, Any], taken: set[str], prefix: str) -> dict[str, Any]:
    return {(f"{prefix}{k}" if k in taken else k): v for k, v in values.items()}


def tables(store, sweep: str | None = None):
    """(runs, epochs) DataFrames of the runs in ``store`` (of ``sweep`` only, if given)."""
    import pandas as pd

    records = store.list(sweep=sweep)
    run_rows, epoch_rows = [], []
    for rec in records:
        base = {"run_id": rec.id, "sweep": rec.sweep, "name": rec.name, "status": rec.shown_status,
                "config_hash": rec.config_hash, "started": rec.started, "ended": rec.ended,
                "version": rec.version, "error": rec.error}
        final = _prefixed(dict(rec.final or {}), set(RUN_COLUMNS), "final.")
        cfg = _prefixed(flatten_config(rec.config), set(RUN_COLUMNS) | set(final), "config.")
        run_rows.append({**base, **final, **cfg})
        for metrics in rec.epochs:
            m = {k: v for k, v in metrics.items() if k not in EPOCH_KEYS}
            m = _prefixed(m, set(RUN_COLUMNS), "metric.")
            ecfg = _prefixed(flatten_config(rec.config), set(RUN_COLUMNS) | set(m), "config.")
            epoch_rows.append({"run_id": rec.id, "epoch": int(metrics["epoch"]), **m,
                               "sweep": rec.sweep, "name": rec.name, "status": rec.shown_status,
                               "config_hash": rec.config_hash, **ecfg})
    runs = _tidy(pd.DataFrame(run_rows, columns=_columns(run_rows, RUN_COLUMNS)))
    epochs = _tidy(pd.DataFrame(epoch_rows, columns=_columns(epoch_rows, EPOCH_KEYS)))
    return runs, epochs


def _columns(rows: list[dict[str, Any]], first: list[str]) -> list[str]:
    """``first``, then the other keys in first-seen order (stable across runs)."""
    cols = list(first)
    seen = set(cols)
    for row in rows:
        for k in row:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    return cols


def _tidy(df):
    """Make every column writable as Parquet: a column mixing types becomes strings."""
    for col in df.columns:
        if df[col].dtype != object:
            continue
        kinds = {type(v) for v in df[col] if v is not None and v == v}
        if len(kinds) > 1 and not kinds <= {int, float}:
            df[col] = df[col].map(lambda v: v if v is None or v != v else str(v))
    return df


def output_paths(fmt: str, out: str | Path) -> tuple[Path, Path]:
    """Where :func:`export_runs` writes: (runs file, epochs file)."""
    if fmt not in FORMATS:
        raise CtfrpuError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        return out / f"runs.{fmt}", out / f"epochs.{fmt}"
    suffix = out.suffix.lower()
    if suffix in (".csv", ".parquet", ".pq"):
        if suffix.lstrip(".").replace("pq", "parquet") != fmt:
            raise CtfrpuError(f"--out {out} does not match --format {fmt}")
        out = out.with_suffix("")
    return (out.with_name(f"{out.name}_runs.{fmt}"), out.with_name(f"{out.name}_epochs.{fmt}"))


def _write(df, fmt: str, path: Path) -> None:
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)


def export_runs(store, fmt: str, out: str | Path, sweep: str | None = None,
                force: bool = False) -> tuple[Path, Path]:
    """Write the runs table and the epochs table of ``store`` (of ``sweep`` only, if given) as
    ``fmt`` ('csv' or 'parquet') next to ``out``; returns the two paths (see module doc).

    Both files are written to temporaries first and renamed only when both are complete (a full
    disk leaves neither half a file nor one table without the other). Existing files need
    ``force``; an output that is the store itself or a symbolic link is refused.
    """
    from ..outfiles import atomic_path, check_outputs, output_dir

    runs_path, epochs_path = output_paths(fmt, out)
    check_outputs([runs_path, epochs_path], inputs=[store.path], force=force)
    runs, epochs = tables(store, sweep)
    if runs.empty:
        which = f" of sweep '{sweep}'" if sweep else ""
        hint = " (see `ctfrpu runs list`)" if sweep else ""
        raise CtfrpuError(f"no runs{which} in {store.path}{hint}")
    output_dir(runs_path.parent)
    with atomic_path(runs_path) as tmp_runs, atomic_path(epochs_path) as tmp_epochs:
        _write(runs, fmt, tmp_runs)
        _write(epochs, fmt, tmp_epochs)
    return runs_path, epochs_path
