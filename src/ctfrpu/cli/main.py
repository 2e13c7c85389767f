"""The ``ctfrpu`` command: wires the command groups and turns user errors into one-line messages."""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import CtfrpuError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ctfrpu")
def cli() -> None:
    """ctfrpu: simulate on-chip DNN training on RPU crossbars of Charge Trap Flash (CTF) devices.

    The CTF program-time model is OUR reconstruction from the abstracts of Shrivastava et al.
    (arXiv:2307.06088, arXiv:2402.09792); see README.md.
    """


def _register() -> None:
    # Each group lives in its own module so that commands can be developed independently.
    from . import data_cmd, device_cmd, explore_cmd, train_cmd, runs_cmd, sweep_cmd, report_cmd

    for module in (data_cmd, device_cmd, train_cmd, runs_cmd, sweep_cmd, report_cmd, explore_cmd):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI; CtfrpuError -> 'error: ...' on stderr, exit 2."""
    try:
        rv = cli.main(args=argv, prog_name="ctfrpu", standalone_mode=False)
    except CtfrpuError as err:
        click.echo(f"error: {' '.join(str(err).splitlines())}", err=True)
        return 2
    except MemoryError:  # a size the sanity bounds let through but this machine cannot hold
        click.echo("error: out of memory: the run (layer sizes, pulses.n, batch) is too large for this machine",
                   err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as err:
        return err.exit_code
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
