"""The one error type users see: a one-line reason, no traceback."""


class UserError(Exception):
    """Bad input or a refused operation; the CLI prints `error: <message>` and exits 2."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run; its message says where it stopped and that a rerun resumes."""
