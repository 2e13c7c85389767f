"""Run-store results as tidy tables (pandas), written as CSV or Parquet.

Two tables, two files (``ctfrpu runs export --format csv --out results`` writes
``results_runs.csv`` and ``results_epochs.csv``; an existing directory as ``--out`` gets
``runs.csv`` and ``epochs.csv``):

runs    one row per run: ``run_id, sweep, name, status, config_hash, started, ended, version,
        error``, the final metrics (``test_accuracy, train_loss, test_loss, seconds, ...``), then
        every config field as a dotted column (``seed, data.dataset, pulses.n, pulses.gap,
        device.params.dw_min, ...``), then the resolved device parameters the run used
        (``device.resolved.<name>``; recorded since store schema 2).
epochs  one row per finished epoch: ``run_id, epoch``, the epoch metrics, then ``sweep, name,
        status, config_hash`` and the same config columns, so a plot needs no join.

Conventions (docs/sweeps.md has the table):

* ``started``/``ended`` are UTC datetimes: ISO 8601 text in CSV (``2026-12-02T19:11:06.123456Z``;
  ``pd.read_csv(..., parse_dates=["started", "ended"])``), ``timestamp[us, UTC]`` in Parquet.
* A field that does not apply to a run is empty, not a default it never used: an fp run has no
  ``pulses.*``, ``update.*``, ``compensation.*``, ``io.*`` or device parameters; ``pulses.pw`` is
  empty in 'on_time' mode and ``pulses.t_on`` in 'fixed_pw' mode; ``update.noise_scale`` outside
  'gaussian' mode; ``compensation.u_typ`` without compensation. A device parameter a run does
  not override is empty in ``device.params.*`` (its value is in ``device.resolved.*``).
* Every column has one dtype whatever the runs: integers ``Int64`` (nullable), reals
  ``float64``, flags ``boolean``, text ``string``, times ``datetime64[UTC]`` -- an all-empty
  column keeps its type (it was float64 in CSV but object in Parquet). Types of config columns
  come from the config schema, others from their values; a column whose values mix types (a
  rare ``device.params`` value) is text.
* Units: SI as stored -- times in seconds (``pulses.gap``, ``pulses.t_on``, ``pulses.pw``,
  ``seconds``, the CTF time constants), voltages in volts, accuracies as fractions in [0, 1].
  Parquet files carry them as field metadata (``unit``) and in the schema metadata
  ``ctfrpu.units`` (JSON column -> unit); CSV has them in docs/sweeps.md only.
* List-valued fields (``model.hidden``) are JSON strings (``"[256,128]"``) so that they can be
  grouped on.
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


#: Config prefixes that an fp run does not use (its float tiles have no pulses, device or periphery).
_FP_UNUSED = ("device.params", "device.params_file", "pulses.", "update.", "compensation.", "io.")


def applicable(flat: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``flat`` (flattened config) with the fields that do not apply to this run set to None."""
    sec = lambda name: config.get(name) if isinstance(config.get(name), dict) else {}  # noqa: E731
    blank: list[str] = []
    if sec("device").get("kind", "fp") == "fp":
        blank = [k for k in flat if k.startswith(_FP_UNUSED)]
    else:
        mode = sec("pulses").get("mode", "on_time")
        blank.append("pulses.pw" if mode == "on_time" else "pulses.t_on")
        if sec("update").get("mode", "exact") != "gaussian":
            blank.append("update.noise_scale")
        if sec("compensation").get("kind", "none") == "none":
            blank.append("compensation.u_typ")
    return {k: (None if k in blank else v) for k, v in flat.items()}


def _config_kinds() -> dict[str, str]:
    """Dotted config column -> 'int' | 'float' | 'bool' | 'str', from the config schema."""
    import typing

    from pydantic import BaseModel

    from ..config import RunConfig

    def kind(ann) -> str | None:
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if typing.get_origin(ann) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
            ann = args[0]
        if ann is bool:
            return "bool"
        if ann is int:
            return "int"
        if ann is float:
            return "float"
        if ann is str or typing.get_origin(ann) in (typing.Literal, list):
            return "str"
        return None

    out: dict[str, str] = {}

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
            elif (k := kind(ann)) is not None:
                out[f"{prefix}{name}"] = k

    walk(RunConfig, "")
    return out


_BASE_KINDS = {"run_id": "int", "epoch": "int", "sweep": "str", "name": "str", "status": "str", "config_hash": "str",
               "started": "time", "ended": "time", "version": "str", "error": "str", "epochs": "int",
               "train_samples": "int"}
_DTYPES = {"int": "Int64", "float": "float64", "bool": "boolean", "str": "string"}


def _units(columns) -> dict[str, str]:
    from ..devices.registry import DEVICES

    # Any device's time parameter is in seconds; the kinds come from the registry alone.
    time_fields = {f for cls in DEVICES.values() for f in getattr(cls, "time_fields", ())}
    out = {}
    for c in columns:
        last = c.rsplit(".", 1)[-1]
        if c in ("pulses.gap", "pulses.t_on", "pulses.pw") or last == "seconds" or \
                (c.startswith(("device.params.", "device.resolved.")) and last in time_fields):
            out[c] = "s"
        elif c.startswith(("device.params.", "device.resolved.")) and last in ("vt_min", "vt_max", "vt_ref", "v_unit"):
            out[c] = "V"
        elif last.endswith("accuracy"):
            out[c] = "fraction"
        elif c in ("started", "ended"):
            out[c] = "UTC"
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
        flat = applicable(flatten_config(rec.config), rec.config)
        flat.update({f"device.resolved.{k}": v for k, v in (rec.device or {}).items()})
        cfg = _prefixed(flat, set(RUN_COLUMNS) | set(final), "config.")
        run_rows.append({**base, **final, **cfg})
        for metrics in rec.epochs:
            m = {k: v for k, v in metrics.items() if k not in EPOCH_KEYS}
            m = _prefixed(m, set(RUN_COLUMNS), "metric.")
            ecfg = _prefixed(flat, set(RUN_COLUMNS) | set(m), "config.")
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


def _value_kind(values) -> str:
    kinds = {type(v) for v in values if v is not None and v == v}
    if not kinds:
        return "float"
    if kinds <= {bool}:
        return "bool"
    if kinds <= {int}:
        return "int"
    if kinds <= {int, float}:
        return "float"
    return "str"


def _tidy(df):
    """One dtype per column (see the module doc), whatever values the runs happen to have."""
    import pandas as pd

    schema = _config_kinds()
    for col in df.columns:
        values = list(df[col])
        key = col[len("config."):] if col.startswith("config.") else col
        kind = _BASE_KINDS.get(col) or schema.get(key) or _value_kind(values)
        if kind != "str" and _value_kind(values) == "str" and any(v is not None and v == v for v in values):
            kind = "str"  # values of several types (an unusual device.params entry): text
        if kind == "time":
            df[col] = pd.to_datetime(pd.Series(values, dtype="float64"), unit="s", utc=True)
        elif kind == "str":
            df[col] = pd.array([None if v is None or v != v else str(v) for v in values], dtype="string")
        elif kind == "int" and _value_kind(values) == "float" and any(
                isinstance(v, float) and v == v and v != int(v) for v in values):
            df[col] = pd.array(values, dtype="float64")
        else:
            df[col] = pd.array([None if v is None or v != v else v for v in values], dtype=_DTYPES[kind])
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


#: CSV text of the UTC datetimes: ISO 8601 with microseconds and 'Z'.
CSV_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _write(df, fmt: str, path: Path) -> None:
    if fmt == "csv":
        df.to_csv(path, index=False, date_format=CSV_DATE_FORMAT)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    units = _units(df.columns)
    table = pa.Table.from_pandas(df, preserve_index=False)
    fields = [f.with_metadata({"unit": units[f.name]}) if f.name in units else f for f in table.schema]
    meta = dict(table.schema.metadata or {})
    meta[b"ctfrpu.units"] = json.dumps(units, sort_keys=True).encode()
    pq.write_table(table.cast(pa.schema(fields, metadata=meta)), path)


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
