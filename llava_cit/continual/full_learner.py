"""Full fine-tuning (full-sft): every weight learns, task after task; each stage continues from the whole model
the stage before saved (models/NN-task, safetensors with its tokenizer), loaded again after a restart. No
untouched base is left after stage 0, so neither the untrained base's score nor an upper bound adapter trained
alone exists past it (`eval.upper_bound_from` takes upper bounds from another run)."""

from __future__ import annotations

import torch

from llava_cit.continual.learner import LearnedStage
from llava_cit.continual.run_base import RunBase
from llava_cit.continual.run_data import RunData
from llava_cit.continual.stage_clock import PhaseTimer
from llava_cit.continual.stage_training import TrainingSession
from llava_cit.data.example import Example
from llava_cit.methods.base import Method, StageContext
from llava_cit.models.loading import load_model
from llava_cit.serve.routed_model import RoutedModel
from llava_cit.serve.serving_plan import ServingPlan
from llava_cit.tasks.spec import TaskSpec
from llava_cit.train.trainer import train_full
from switch import SwitchNetwork


class FullFinetuneLearner:
    kind = "full"

    def __init__(self, base: RunBase, session: TrainingSession, method: Method, data: RunData, tasks: list[TaskSpec]):
        self.base, self.session, self.method, self.data, self.tasks = base, session, method, data, tasks
        self._holds: int | None = None  # the stage whose weights the model in memory holds (None: the base)

    @property
    def model(self):
        return self.base.loaded.model

    def folder(self, stage: int) -> str:
        return f"models/{stage:02d}-{self.tasks[stage].name}"

    def untrained(self, stage: int, task: str) -> RoutedModel | None:
        if stage > 0:  # the base itself was trained at stage 0
            return None
        return RoutedModel(self.base.loaded, self.base.prompt, {task: None}, None, None, task, True)

    def _load(self, stage: int) -> None:
        """Continue from the whole model saved by stage `stage` (after a restart)."""
        c = self.base.config
        loaded = load_model(str(self.session.run_dir / self.folder(stage)), c.dtype, c.device_map, c.load_in_4bit)
        if c.device_map is None and torch.cuda.is_available():
            loaded.model.to("cuda")
        self.base.replace(loaded)
        self._holds = stage

    def learn(self, ctx: StageContext, task: TaskSpec, examples: list[Example], clock: PhaseTimer) -> LearnedStage:
        stage, s, c = ctx.stage, self.session, self.base.config
        folder = self.folder(stage)
        if (s.run_dir / folder).is_dir():
            s.say(f"stage {stage} ({task.name}): model already saved, reusing {folder}")
            self._load(stage)
            return LearnedStage(folder, None, False, None, {"reused_saved_model": True})
        if stage > 0 and self._holds != stage - 1:
            self._load(stage - 1)
        s.say_resume(stage, task, folder)
        loaded = self.base.loaded
        info = train_full(loaded.model, examples, self.base.encoder, c.train, s.checkpoints(folder), seed=c.seed,
                          progress=s.progress.show_trainer_bars, callbacks=s.callbacks(stage, task, clock),
                          log_dir=s.log_dir(folder), run_name=f"{task.name}-{s.method}")
        if c.dtype in ("bfloat16", "bf16", "float16", "fp16"):  # saved in the precision the run loads it in
            loaded.model.to(torch.bfloat16 if c.dtype.startswith("b") else torch.float16)

        def save(staging):
            loaded.model.save_pretrained(staging)
            loaded.processor.save_pretrained(staging)

        s.publish(folder, "adapter", save)
        self._holds = stage
        return LearnedStage(folder, None, False, None, info)

    def stage_recorded(self, learned: LearnedStage) -> None:
        """No training hooks: nothing kept beside the model."""

    def routed_model(self, plan: ServingPlan, switch: SwitchNetwork | None) -> RoutedModel:
        return RoutedModel.for_plan(plan, self.base.loaded, self.base.prompt, None, switch)

    def train_alone(self, stage: int, task: TaskSpec, clock: PhaseTimer) -> None:
        """No untouched base to train a task alone on."""
        return None

    def forget(self, alone) -> None:
        """Nothing was loaded."""
