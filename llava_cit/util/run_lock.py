"""One writer per run (or evaluation) directory: an exclusive `flock` on `<dir>/.lock`.

The operating system releases the lock when its process ends, however it ends (SIGKILL included), so a
lock left by a dead process is never in the way; the file keeps the holder's process id for the error
message and for `llava-cit status`.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from llava_cit.util.errors import UserError

LOCK_FILE = ".lock"


class DirectoryLock:
    def __init__(self, directory: str | Path, what: str = "run directory"):
        self.directory, self.what = Path(directory), what
        self.path = self.directory / LOCK_FILE
        self._handle = None

    def acquire(self) -> DirectoryLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise UserError(f"{self.directory} is in use by process {holder} (one writer per {self.what}); "
                            f"wait for it to finish or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(directory: str | Path) -> int | None:
    """The process id holding `directory`'s lock, or None when nobody holds it (never takes the lock)."""
    path = Path(directory) / LOCK_FILE
    if not path.is_file():
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None
