"""`ctfrpu sweep ...` commands."""

import click  # noqa: F401

COMMANDS: list = []
