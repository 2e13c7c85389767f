"""The one exception type the CLI turns into a one-line message (no traceback)."""


class CtfrpuError(Exception):
    """A user-facing error: bad input, missing data, invalid configuration.

    The CLI prints ``error: <message>`` on one line and exits with status 2.
    The message should say what is wrong and, where possible, what to run.
    """
