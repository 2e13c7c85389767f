"""`ctfrpu runs list|show|export`: read the run store."""

from __future__ import annotations

import datetime as dt
import json

import click

from ..store import Store
from ..units import format_time
from .common import resume_command, store_option


def _when(t):
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else "-"


def _summary(rec) -> str:
    c = rec.config
    dev = c["device"]["kind"]
    pulses = "" if dev == "fp" else f" N={c['pulses']['n']} gap={format_time(c['pulses']['gap'])} {c['update']['mode']}"
    comp = "" if c.get("compensation", {}).get("kind", "none") == "none" else " comp"
    return f"{c['data']['dataset']} {dev}{pulses}{comp} seed={c['seed']}"


@click.group("runs")
def runs() -> None:
    """List, show and export the runs in the store."""


@runs.command("list")
@click.option("--sweep", help="Only runs of this sweep.")
@click.option("--status", type=click.Choice(["running", "finished", "failed", "interrupted"]))
@click.option("--json", "as_json", is_flag=True)
@store_option
def list_runs(sweep, status, as_json, store_path) -> None:
    """One line per run: id, status, start, what, epochs, test accuracy."""
    with Store(store_path) as store:
        records = store.list(sweep=sweep, status=status)
    if as_json:
        click.echo(json.dumps([{"run_id": r.id, "status": r.status, "name": r.name, "sweep": r.sweep,
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
        click.echo(f"{r.id:>4}  {r.status:<11} {_when(r.started):<16}  {len(r.epochs):>6}  {acc_s:>8}  "
                   f"{label}{_summary(r)}")


@runs.command("show")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@store_option
def show_run(run_id, as_json, store_path) -> None:
    """Config, status and per-epoch metrics of one run."""
    with Store(store_path) as store:
        rec = store.get(run_id)
        resumable = rec.status in ("interrupted", "running") and store.checkpoint_path(rec.id).exists()
    if as_json:
        click.echo(json.dumps(rec.to_dict()))
        return
    click.echo(f"run {rec.id}  [{rec.status}]  {_summary(rec)}")
    click.echo(f"  config hash {rec.config_hash}, ctfrpu {rec.version}, started {_when(rec.started)}, "
               f"ended {_when(rec.ended)}")
    if rec.error:
        click.echo(f"  error: {rec.error}")  # full text, traceback included for unexpected failures
    if resumable:
        click.echo(f"  has a checkpoint: continue with `{resume_command(rec.id, store_path and store.path)}`")
    for m in rec.epochs:
        extra = f"  val {m['val_accuracy']:.4f}" if "val_accuracy" in m else ""
        click.echo(f"  epoch {m['epoch']:>3}: train loss {m['train_loss']:.4f}  test acc "
                   f"{m['test_accuracy']:.4f}{extra}  ({m['seconds']:.1f} s)")
    if rec.final:
        click.echo(f"  final test accuracy {rec.final['test_accuracy']:.4f}")
    click.echo("  config: " + json.dumps(rec.config, sort_keys=True))


@runs.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--out", required=True, type=click.Path(),
              help="OUT_runs.<fmt> + OUT_epochs.<fmt> (an existing directory: runs.<fmt>, epochs.<fmt>).")
@click.option("--sweep", default=None, help="Only runs of this sweep.")
@store_option
def export(fmt, out, sweep, store_path) -> None:
    """Write the runs and their epochs as tidy CSV/Parquet tables (see docs/sweeps.md)."""
    from ..sweep.export import export_runs

    with Store(store_path) as store:
        runs_path, epochs_path = export_runs(store, fmt, out, sweep=sweep)
    click.echo(f"wrote {runs_path} and {epochs_path}")


COMMANDS = [runs]
