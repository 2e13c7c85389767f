"""`ctfrpu runs list|show|export`: read the run store."""

from __future__ import annotations

import datetime as dt
import json

import click

from ..store import SHOWN_STATUSES, Store, process_alive
from ..units import format_time
from .common import resume_command, store_option


def _when(t):
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else "-"


def _summary(rec) -> str:
    """One-line description from the stored config (tolerant of records of older versions)."""
    c = rec.config

    def sec(name):
        v = c.get(name)
        return v if isinstance(v, dict) else {}

    dev = sec("device").get("kind", "?")
    p = sec("pulses")
    gap = p.get("gap")
    gap_s = format_time(gap) if isinstance(gap, (int, float)) else "?"
    pulses = "" if dev == "fp" else f" N={p.get('n', '?')} gap={gap_s} {sec('update').get('mode', '?')}"
    comp = "" if sec("compensation").get("kind", "none") == "none" else " comp"
    return f"{sec('data').get('dataset', '?')} {dev}{pulses}{comp} seed={c.get('seed', '?')}"


def _status_note(rec) -> str:
    if rec.shown_status == "dead":
        return (f"recorded 'running', but its process (pid {rec.pid} on {rec.host}) is gone: it was killed "
                "or crashed")
    if rec.status == "running" and rec.host and rec.pid is not None:
        return f"pid {rec.pid} on {rec.host}"
    return ""


@click.group("runs")
def runs() -> None:
    """List, show and export the runs in the store."""


@runs.command("list")
@click.option("--sweep", help="Only runs of this sweep.")
@click.option("--status", type=click.Choice(list(SHOWN_STATUSES)),
              help="Only runs of this status; 'dead': recorded running, process gone.")
@click.option("--json", "as_json", is_flag=True)
@store_option
def list_runs(sweep, status, as_json, store_path) -> None:
    """One line per run: id, status, start, what, epochs, test accuracy.

    Statuses: running, finished, failed, interrupted (resumable), diverged (loss ran away: a
    result), dead (recorded running, but its process is gone -- killed or crashed; resumable from
    its last checkpoint with `ctfrpu train --resume ID`)."""
    with Store(store_path, create=False) as store:
        records = store.list(sweep=sweep, status=status)
    if as_json:
        click.echo(json.dumps([{"run_id": r.id, "status": r.shown_status, "name": r.name, "sweep": r.sweep,
                                "config_hash": r.config_hash, "started": r.started,
                                "test_accuracy": (r.final or {}).get("test_accuracy"),
                                "epochs": len(r.epochs)} for r in records]))
        return
    if not records:
        click.echo("no runs")
        return
    click.echo(f"{'id':>4}  {'status':<11} {'started':<16}  {'epochs':>6}  {'test_acc':>8}  run")
    for r in records:
        acc = (r.final or {}).get("test_accuracy")
        if acc is None and r.epochs:
            acc = r.epochs[-1].get("test_accuracy")
        acc_s = f"{acc:.4f}" if acc is not None else "-"
        label = f"{r.name}: " if r.name else ""
        click.echo(f"{r.id:>4}  {r.shown_status:<11} {_when(r.started):<16}  {len(r.epochs):>6}  {acc_s:>8}  "
                   f"{label}{_summary(r)}")


def _num(v, fmt: str = ".4f") -> str:
    return format(v, fmt if abs(v) < 1e4 else ".4g") if isinstance(v, (int, float)) else "-"


@runs.command("show")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@store_option
def show_run(run_id, as_json, store_path) -> None:
    """Config, status and per-epoch metrics of one run."""
    with Store(store_path, create=False) as store:
        rec = store.get(run_id)
        resumable = store.checkpoint_path(rec.id).exists() and (
            rec.status == "interrupted"
            or (rec.status == "running" and process_alive(rec.pid, rec.host, rec.proc_start) is not True))
    if as_json:
        click.echo(json.dumps(rec.to_dict()))
        return
    click.echo(f"run {rec.id}  [{rec.shown_status}]  {_summary(rec)}")
    if _status_note(rec):
        click.echo(f"  {_status_note(rec)}")
    click.echo(f"  config hash {rec.config_hash}, ctfrpu {rec.version}, started {_when(rec.started)}, "
               f"ended {_when(rec.ended)}")
    if rec.error:
        click.echo(f"  error: {rec.error}")  # full text, traceback included for unexpected failures
    if resumable:
        click.echo(f"  has a checkpoint: continue with `{resume_command(rec.id, store_path and store.path)}`")
    for m in rec.epochs:
        extra = f"  val {_num(m['val_accuracy'])}" if "val_accuracy" in m else ""
        click.echo(f"  epoch {m.get('epoch', '?'):>3}: train loss {_num(m.get('train_loss'))}  test acc "
                   f"{_num(m.get('test_accuracy'))}{extra}  ({_num(m.get('seconds'), '.1f')} s)")
    if rec.final and "test_accuracy" in rec.final:
        click.echo(f"  final test accuracy {_num(rec.final['test_accuracy'])}")
    if rec.device:
        click.echo("  device parameters: " + json.dumps(rec.device, sort_keys=True))
    click.echo("  config: " + json.dumps(rec.config, sort_keys=True))


@runs.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--out", required=True, type=click.Path(),
              help="OUT_runs.<fmt> + OUT_epochs.<fmt> (an existing directory: runs.<fmt>, epochs.<fmt>).")
@click.option("--sweep", default=None, help="Only runs of this sweep.")
@click.option("--force", is_flag=True, help="Overwrite existing export files.")
@store_option
def export(fmt, out, sweep, force, store_path) -> None:
    """Write the runs and their epochs as tidy CSV/Parquet tables (see docs/sweeps.md).

    Existing files are kept unless --force; both files appear together or not at all."""
    from ..sweep.export import export_runs

    with Store(store_path, create=False) as store:
        runs_path, epochs_path = export_runs(store, fmt, out, sweep=sweep, force=force)
    click.echo(f"wrote {runs_path} and {epochs_path}")


COMMANDS = [runs]
