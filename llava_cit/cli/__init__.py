"""The `llava-cit` command line: one module per command group, all registered on one Typer app."""

from __future__ import annotations

import sys

from llava_cit.cli import catalog, demo, evaluate, export, plan, runs, serve, sweep, train  # noqa: F401  (each registers)
from llava_cit.cli.app import app
from llava_cit.cli.data import data_app
from llava_cit.util.errors import UserError
from switch.errors import SwitchError

app.add_typer(data_app, name="data")
_HELP_ORDER = ["demo", "train", "sweep", "eval", "serve", "export", "plan", "status", "report", "route", "methods", "sequences",
               "vocab"]
app.registered_commands.sort(key=lambda command: _HELP_ORDER.index(command.name or command.callback.__name__))

__all__ = ["app", "main"]


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's kill, `kill PID`) stops like Ctrl-C: cleanup runs, the run resumes later."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main() -> None:
    _stop_on_sigterm()
    try:
        app()
    except (UserError, SwitchError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except UnicodeDecodeError as err:  # a user's file not read through llava_cit.util.text_files
        print(f"error: a file is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        from llava_cit.util.atomic import DISK_FULL_ADVICE, is_disk_full

        if not is_disk_full(err):
            raise
        where = f"cannot write {err.filename}: " if getattr(err, "filename", None) else "cannot write a file: "
        print(f"error: {where}{DISK_FULL_ADVICE}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        sys.exit(130)

