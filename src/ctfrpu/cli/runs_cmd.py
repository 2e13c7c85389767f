"""`ctfrpu runs ...` commands."""

import click  # noqa: F401

COMMANDS: list = []
