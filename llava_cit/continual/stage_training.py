"""Stage training for the runner: a LoRA adapter (fresh, or copied from an earlier stage's) or, for full-sft,
the whole model; published atomically and never rewritten; the Trainer's checkpoints go once it is."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import torch
from peft import PeftModel
from transformers import TrainerCallback

from llava_cit.continual.stage_clock import PhaseTimer
from llava_cit.continual.train_log import TRAIN_LOG, TrainLogCallback
from llava_cit.data.example import Example
from llava_cit.methods.adapter_loading import load_adapter
from llava_cit.models.loading import load_model
from llava_cit.tasks.spec import TaskSpec
from llava_cit.train.trainer import last_complete_checkpoint, save_hooks_state, train_adapter, train_full
from llava_cit.util.atomic import publish_dir, staging_dir, writing


class StepReached(TrainerCallback):
    """Keeps the runner's `_step` at the last optimizer step reached (for the "interrupted at" message)."""

    def __init__(self, runner):
        self.runner = runner

    def on_train_begin(self, args, state, control, **kwargs):
        self.runner._step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        self.runner._step = state.global_step


def remove_if_empty(directory: Path) -> None:
    """`checkpoints/` goes with its last stage's checkpoints: no empty folder stays after a finished run."""
    with contextlib.suppress(OSError):  # not empty (another stage's checkpoints), or already gone
        directory.rmdir()


class StageTraining:
    """Mixed into ContinualRunner: the training side of a stage."""

    def _load_full(self, stage: int) -> None:
        """full-sft: continue from the whole model saved by stage `stage` (after a restart)."""
        c = self.config
        self._loaded = load_model(str(self.run_dir / self.adapter_rel(stage)), c.dtype, c.device_map, c.load_in_4bit)
        if c.device_map is None and torch.cuda.is_available():
            self._loaded.model.to("cuda")
        self._full_stage = stage

    def _use_adapter(self, name: str, rel: str, trainable: bool = False) -> PeftModel:
        if self._peft is None or name not in self._peft.peft_config:
            self._peft = load_adapter(self._peft or self.loaded.model, self.run_dir / rel, name, trainable)
        return self._peft

    def _callbacks(self, stage: int, task: TaskSpec, clock: PhaseTimer, kind: str = "adapter") -> list:
        return [TrainLogCallback(self.run_dir / TRAIN_LOG, stage, task.name, self.method.name, clock, kind),
                StepReached(self), *self.progress.trainer_callbacks]

    def _say_resume(self, stage: int, task: TaskSpec, checkpoints: Path, kind: str = "adapter") -> None:
        """Which Trainer checkpoint a resumed stage starts from (the Trainer resumes from the same one)."""
        last = last_complete_checkpoint(checkpoints)
        if last is not None:
            what = "training" if kind == "adapter" else f"{kind.replace('_', ' ')} training"
            self.say(f"stage {stage} ({task.name}): resuming {what} from {last.relative_to(self.run_dir)} "
                     f"(step {last.name.split('-')[-1]})")

    def hooks_state_path(self, rel: str) -> Path:
        """Where a stage's training hooks leave their final state until the stage is recorded (SI's path integral)."""
        return self.run_dir / "method_state" / "hooks" / f"{Path(rel).name}.safetensors"

    def _train_lora(self, model: PeftModel, adapter: str, stage: int, task: TaskSpec, examples: list[Example],
                    rel: str, clock: PhaseTimer, kind: str = "adapter", hooks=None) -> dict:
        """Train `adapter` on `examples` and publish it at `rel` (atomically; never rewritten)."""
        c = self.config
        checkpoints = self.run_dir / "checkpoints" / Path(rel).name if kind == "adapter" else \
            self.run_dir / "checkpoints" / f"{kind}-{Path(rel).name}"
        self._say_resume(stage, task, checkpoints, kind)
        info = train_adapter(model, adapter, examples, self.encoder, c.train, c.lora, checkpoints, seed=c.seed,
                             progress=self.progress.show_trainer_bars, callbacks=self._callbacks(stage, task, clock, kind),
                             log_dir=self.run_dir / "logs" / (Path(rel).name if kind == "adapter" else f"{kind}-{Path(rel).name}"),
                             run_name=f"{task.name}-{self.method.name}", hooks=hooks)

        def publish():  # rank 0 writes; every rank holds the same trained weights in memory
            if kind == "adapter":  # the hooks' final state first: a kill after the adapter is published loses nothing
                save_hooks_state(hooks, self.hooks_state_path(rel))
            staging = staging_dir(self.run_dir / rel)
            with writing(staging):
                model.save_pretrained(staging, selected_adapters=[adapter])
            publish_dir(next(p.parent for p in staging.rglob("adapter_config.json")), self.run_dir / rel)
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(checkpoints, ignore_errors=True)  # Trainer checkpoints (pickled optimizer states) go
            remove_if_empty(checkpoints.parent)

        self.procs.on_main(publish)
        return info

    def _train_full(self, stage: int, task: TaskSpec, examples: list[Example], clock: PhaseTimer) -> dict:
        """full-sft: train every weight on this stage's examples and save the whole model (never rewritten)."""
        rel = self.adapter_rel(stage)
        if (self.run_dir / rel).is_dir():
            self.say(f"stage {stage} ({task.name}): model already saved, reusing {rel}")
            self._load_full(stage)
            return {"reused_saved_model": True}
        if stage > 0 and self._full_stage != stage - 1:
            self._load_full(stage - 1)
        c = self.config
        checkpoints = self.run_dir / "checkpoints" / Path(rel).name
        self._say_resume(stage, task, checkpoints)
        info = train_full(self.loaded.model, examples, self.encoder, c.train, checkpoints, seed=c.seed,
                          progress=self.progress.show_trainer_bars, callbacks=self._callbacks(stage, task, clock),
                          log_dir=self.run_dir / "logs" / Path(rel).name, run_name=f"{task.name}-{self.method.name}")
        if c.dtype in ("bfloat16", "bf16", "float16", "fp16"):  # saved in the precision the run loads it in
            self.loaded.model.to(torch.bfloat16 if c.dtype.startswith("b") else torch.float16)

        def publish():
            staging = staging_dir(self.run_dir / rel)
            with writing(staging):
                self.loaded.model.save_pretrained(staging)
                self.loaded.processor.save_pretrained(staging)
            publish_dir(staging, self.run_dir / rel)
            shutil.rmtree(checkpoints, ignore_errors=True)
            remove_if_empty(checkpoints.parent)

        self.procs.on_main(publish)
        self._full_stage = stage
        return info

