"""`ctfrpu device ...` commands."""

import click  # noqa: F401

COMMANDS: list = []
