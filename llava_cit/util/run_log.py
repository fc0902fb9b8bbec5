"""`run.log`: the CLI's own messages, timestamped, appended to a file as well as shown on the console."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from llava_cit.util.atomic import writing

SESSION_START = "session started by process"  # the line a run writes when a process starts (or resumes) it


class RunLog:
    def __init__(self, path: str | Path | None, echo: Callable[[str], None] | None = None):
        """`path` None: nothing is written (the other ranks of a multi-process run)."""
        self.path, self.echo = (Path(path) if path is not None else None), echo

    def __call__(self, text: str) -> None:
        if self.echo is not None:
            self.echo(text)
        self.write(text)

    def write(self, text: str) -> None:
        """To the file only."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with writing(self.path), open(self.path, "a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
            handle.flush()
            os.fsync(handle.fileno())

    def last_error(self, session_start: str | None = None) -> str | None:
        """The last `error:` or `interrupted at` line of the log, if the run stopped with one; with `session_start`,
        only lines after the last line holding it count (an older session's error, since fixed, is no cause)."""
        if self.path is None or not self.path.is_file():
            return None
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        if session_start is not None:
            starts = [i for i, line in enumerate(lines) if session_start in line]
            lines = lines[starts[-1] + 1:] if starts else lines
        errors = [line.rstrip("\n") for line in lines if " error: " in line or " interrupted at " in line]
        return errors[-1] if errors else None
