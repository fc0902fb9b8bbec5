"""The one error type users see: a one-line reason, no traceback."""


class UserError(Exception):
    """Bad input or a refused operation; the CLI prints `error: <message>` and exits 2."""
