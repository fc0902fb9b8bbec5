"""Progress of long evaluation work: items done / total with a rate and an ETA, on a rich bar, and the same
figures written to the run's log every `every` seconds (and at the end)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text


class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} items/s" if speed else "? items/s", style="progress.data.speed")


def progress_line(label: str, done: int, total: int, seconds: float) -> str:
    rate = done / seconds if seconds > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else float("nan")
    eta_text = f"{eta:.0f} s" if eta == eta else "?"
    return f"{label}: {done}/{total} items, {rate:.2f} items/s, ETA {eta_text}"


class ItemProgress:
    def __init__(self, label: str, total: int, console: Console | None = None,
                 log: Callable[[str], None] | None = None, every: float = 30.0):
        self.label, self.total, self.log, self.every = label, total, log, every
        self.done = 0
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                             TextColumn("ETA"), TimeRemainingColumn(), console=console) if console is not None else None
        self._job = None
        self._started = self._last_log = 0.0

    def __enter__(self) -> ItemProgress:
        self._started = self._last_log = time.perf_counter()
        if self._bar is not None:
            self._bar.__enter__()
            self._job = self._bar.add_task(self.label, total=self.total)
        return self

    def advance(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.advance(self._job, count)
        now = time.perf_counter()
        if self.log is not None and now - self._last_log >= self.every:
            self._last_log = now
            self._write(now)

    def _write(self, now: float) -> None:
        line = progress_line(self.label, self.done, self.total, now - self._started)
        writer = getattr(self.log, "write", self.log)  # RunLog: the file only (the bar is on screen)
        writer(line)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        if self.log is not None:
            self._write(time.perf_counter())
