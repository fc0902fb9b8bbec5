"""`logs/train_log.jsonl`: one row per logged training step (stage, task, step / total steps, loss, learning
rate, grad norm, epoch, tokens/s), appended durably by a Trainer callback; the stage clock ticks with it."""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from llava_cit.util.jsonl import append_rows, read_rows

TRAIN_LOG = "logs/train_log.jsonl"


class TrainLogCallback(TrainerCallback):
    def __init__(self, path: Path, stage: int, task: str, method: str, clock=None, kind: str = "adapter"):
        self.path, self.stage, self.task, self.method, self.clock, self.kind = path, stage, task, method, clock, kind
        self._time = self._tokens = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._time, self._tokens = time.perf_counter(), state.num_input_tokens_seen or 0

    def on_step_end(self, args, state, control, **kwargs):
        if self.clock is not None:
            self.clock.tick()
        if state.global_step >= state.max_steps:  # the last step is logged too: a stage shorter than
            control.should_log = True  # train.logging_steps still has its row (and its loss curve)
        return control

    def on_save(self, args, state, control, **kwargs):
        if self.clock is not None:
            self.clock.tick(force=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        # the end-of-training summary row has train_loss instead; rank 0 alone writes the run directory
        if "loss" not in logs or not state.is_world_process_zero:
            return
        now, tokens = time.perf_counter(), state.num_input_tokens_seen or 0
        elapsed = now - self._time if self._time is not None else 0.0
        rate = (tokens - self._tokens) / elapsed if elapsed > 0 and tokens else None
        self._time, self._tokens = now, tokens
        append_rows(self.path, [{
            "time": time.time(), "stage": self.stage, "task": self.task, "method": self.method, "kind": self.kind,
            "step": state.global_step, "max_steps": state.max_steps, "epoch": logs.get("epoch", state.epoch),
            "loss": logs.get("loss"), "learning_rate": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
            "tokens_per_second": rate,
        }])


def read_train_log(run_dir: Path) -> list[dict]:
    return read_rows(run_dir / TRAIN_LOG)
