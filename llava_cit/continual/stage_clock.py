"""Wall-clock time of a stage's phases (train, eval) that adds up across resumes.

The running total is written to `timings/stage-NN.json` every few seconds while a phase runs, so a
stage killed and resumed reports the time it really took (at most `every` seconds are lost per kill).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from llava_cit.train.distributed import is_main_process
from llava_cit.util.atomic import write_json


class PhaseTimer:
    def __init__(self, path: Path, phase: str, every: float = 5.0):
        self.path, self.phase, self.every = path, phase, every
        self.before = float(self._read().get(phase, 0.0))
        self.started = self.last = time.perf_counter()
        self.stopped: float | None = None

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def total(self) -> float:
        return self.stopped if self.stopped is not None else self.before + time.perf_counter() - self.started

    def tick(self, force: bool = False) -> None:
        if self.stopped is not None:
            return
        now = time.perf_counter()
        if (force or now - self.last >= self.every) and is_main_process():  # rank 0 writes the run directory
            self.last = now
            write_json(self.path, {**self._read(), self.phase: self.total()})

    def stop(self) -> float:
        self.tick(force=True)
        self.stopped = self.total()
        return self.stopped


class StageClock:
    """A stage's two phases: `train` (from the stage's start: retention, training, the method's after-stage work, the
    switch) then `eval` (the accuracy matrix's row and the upper bound), each adding up across resumes."""

    def __init__(self, run_dir: Path, stage: int):
        self.path = run_dir / "timings" / f"stage-{stage:02d}.json"
        self.train = PhaseTimer(self.path, "train")
        self.eval: PhaseTimer | None = None

    def start_eval(self) -> PhaseTimer:
        self.train.stop()
        self.eval = PhaseTimer(self.path, "eval")
        return self.eval

    def seconds(self) -> dict[str, float]:
        """{train, eval, stage} once the eval phase is stopped."""
        train, evaluation = self.train.stop(), self.eval.stop()
        return {"train": train, "eval": evaluation, "stage": train + evaluation}

    def interrupted(self) -> None:
        """The time spent so far counts when the stage resumes."""
        (self.eval or self.train).tick(force=True)
