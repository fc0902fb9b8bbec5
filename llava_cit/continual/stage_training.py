"""What every stage's training shares, whichever learner trains (llava_cit.continual.learner): where its
Trainer checkpoints and TensorBoard logs go, the callbacks that log it and keep the step reached, and publishing
what it trained: atomically, never rewritten, the Trainer's checkpoints removed once it is published."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainerCallback

from llava_cit.config import RunConfig
from llava_cit.continual.stage_clock import PhaseTimer
from llava_cit.continual.train_log import TRAIN_LOG, TrainLogCallback
from llava_cit.tasks.spec import TaskSpec
from llava_cit.train.distributed import Processes
from llava_cit.train.trainer import last_complete_checkpoint
from llava_cit.util.atomic import publish_dir, staging_dir, writing


@dataclass
class Progress:
    """Callbacks the CLI plugs a rich display into; silent by default."""

    message: Callable[[str], None] = field(default=lambda text: None)
    show_trainer_bars: bool = False
    trainer_callbacks: list = field(default_factory=list)  # extra transformers TrainerCallbacks
    record_ids: bool = False  # keep each stage's training example ids in the manifest (tests, audits)
    console: object | None = None  # a rich Console: evaluation progress bars


def remove_if_empty(directory: Path) -> None:
    """`checkpoints/` goes with its last stage's checkpoints: no empty folder stays after a finished run."""
    with contextlib.suppress(OSError):  # not empty (another stage's checkpoints), or already gone
        directory.rmdir()


class StepReached(TrainerCallback):
    """Keeps the session's `step` at the last optimizer step reached (for the "interrupted at" message)."""

    def __init__(self, session: TrainingSession):
        self.session = session

    def on_train_begin(self, args, state, control, **kwargs):
        self.session.step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        self.session.step = state.global_step


class TrainingSession:
    def __init__(self, run_dir: Path, config: RunConfig, method: str, progress: Progress, say, procs: Processes):
        self.run_dir, self.config, self.method, self.progress, self.say, self.procs = \
            run_dir, config, method, progress, say, procs
        self.step: int | None = None  # the last optimizer step the current stage's training reached

    def label(self, folder: str, kind: str) -> str:
        """A training's name under checkpoints/ and logs/: the folder's (an upper bound's prefixed)."""
        return Path(folder).name if kind == "adapter" else f"{kind}-{Path(folder).name}"

    def checkpoints(self, folder: str, kind: str = "adapter") -> Path:
        return self.run_dir / "checkpoints" / self.label(folder, kind)

    def log_dir(self, folder: str, kind: str = "adapter") -> Path:
        return self.run_dir / "logs" / self.label(folder, kind)

    def hooks_state_path(self, folder: str) -> Path:
        """Where a stage's training hooks leave their final state until the stage is recorded (SI's path integral)."""
        return self.run_dir / "method_state" / "hooks" / f"{Path(folder).name}.safetensors"

    def callbacks(self, stage: int, task: TaskSpec, clock: PhaseTimer, kind: str = "adapter") -> list:
        return [TrainLogCallback(self.run_dir / TRAIN_LOG, stage, task.name, self.method, clock, kind),
                StepReached(self), *self.progress.trainer_callbacks]

    def say_resume(self, stage: int, task: TaskSpec, folder: str, kind: str = "adapter") -> None:
        """Which Trainer checkpoint a resumed stage starts from (the Trainer resumes from the same one)."""
        last = last_complete_checkpoint(self.checkpoints(folder, kind))
        if last is not None:
            what = "training" if kind == "adapter" else f"{kind.replace('_', ' ')} training"
            self.say(f"stage {stage} ({task.name}): resuming {what} from {last.relative_to(self.run_dir)} "
                     f"(step {last.name.split('-')[-1]})")

    def publish(self, folder: str, kind: str, save: Callable[[Path], None]) -> None:
        """Rank 0 saves (`save(staging)`) and publishes `folder` atomically, then removes the Trainer's checkpoints
        (pickled optimizer states); every rank holds the same trained weights in memory."""

        def work():
            staging = staging_dir(self.run_dir / folder)
            with writing(staging):
                save(staging)
            saved = next((p.parent for p in staging.rglob("adapter_config.json")), staging)  # PEFT: a sub-folder
            publish_dir(saved, self.run_dir / folder)
            shutil.rmtree(staging, ignore_errors=True)
            checkpoints = self.checkpoints(folder, kind)
            shutil.rmtree(checkpoints, ignore_errors=True)
            remove_if_empty(checkpoints.parent)

        self.procs.on_main(work)
