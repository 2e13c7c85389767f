"""Command line interface (click). One file per command group; ``main.py`` wires them."""
