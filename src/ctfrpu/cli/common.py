"""Options shared by several commands."""

from __future__ import annotations

import click

store_option = click.option(
    "--store", "store_path", type=click.Path(), default=None, envvar="CTFRPU_STORE",
    help="Run store (SQLite). Default: runs/ctfrpu.db, or $CTFRPU_STORE.")
data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False), default=None, envvar="CTFRPU_DATA",
    help="Dataset directory. Default: ~/.cache/ctfrpu/data, or $CTFRPU_DATA.")


def resume_command(run_id: int, store_path=None) -> str:
    """The command that continues run ``run_id`` (naming the store unless it is the default)."""
    return f"ctfrpu train --resume {run_id}" + (f" --store {store_path}" if store_path else "")
