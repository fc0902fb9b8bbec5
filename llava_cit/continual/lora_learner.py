"""LoRA learning: a stage trains one adapter on the frozen base, fresh (its initial weights seeded by the run's
seed and the stage) or copied from the earlier stage the method starts from, and publishes it under
adapters/NN-task. An adapter published before a crash is reused, never retrained or rewritten. The adapters stay
loaded (llava_cit.serve.loaded_adapters): the routed model after the stage answers with the ones in memory."""

from __future__ import annotations

import torch

from llava_cit.continual.learner import LearnedStage, TrainedAlone
from llava_cit.continual.run_base import RunBase
from llava_cit.continual.run_data import RunData
from llava_cit.continual.stage_clock import PhaseTimer
from llava_cit.continual.stage_training import TrainingSession, remove_if_empty
from llava_cit.data.example import Example
from llava_cit.methods.base import Method, StageContext
from llava_cit.serve.loaded_adapters import LoadedAdapters
from llava_cit.serve.routed_model import RoutedModel
from llava_cit.serve.serving_plan import ServingPlan
from llava_cit.tasks.spec import TaskSpec
from llava_cit.train.lora_targets import describe_trainable
from llava_cit.train.trainer import load_hooks_state, save_hooks_state, train_adapter
from switch import SwitchNetwork


class LoraLearner:
    kind = "lora"

    def __init__(self, base: RunBase, session: TrainingSession, method: Method, data: RunData, tasks: list[TaskSpec]):
        self.base, self.session, self.method, self.data, self.tasks = base, session, method, data, tasks
        self._adapters: LoadedAdapters | None = None

    @property
    def adapters(self) -> LoadedAdapters:
        if self._adapters is None:
            self._adapters = LoadedAdapters(self.base.loaded.model, self.session.run_dir)
        return self._adapters

    @property
    def model(self):
        return self.adapters.model

    def folder(self, stage: int) -> str:
        return f"adapters/{stage:02d}-{self.tasks[stage].name}"

    def untrained(self, stage: int, task: str) -> RoutedModel:
        """Every adapter off: the base answers (the same at every stage)."""
        return RoutedModel(self.base.loaded, self.base.prompt, {task: None}, self.adapters, None, task, True)

    def learn(self, ctx: StageContext, task: TaskSpec, examples: list[Example], clock: PhaseTimer) -> LearnedStage:
        stage, name, say = ctx.stage, ctx.adapter, self.session.say
        folder = self.folder(stage)
        start = self.method.start_from(ctx)
        started_from = self.folder(start) if start is not None else None
        if (self.session.run_dir / folder).is_dir():  # published before a crash: never retrained or rewritten
            say(f"stage {stage} ({task.name}): adapter already saved, reusing {folder}")
            self.adapters.load(folder, name)
            hooks = self.method.training_hooks(ctx)  # with the state training left them in, where they keep one
            if not load_hooks_state(hooks, self.session.hooks_state_path(folder)):
                hooks = None
            info = {"reused_saved_adapter": True}
        else:
            if started_from is not None:
                say(f"stage {stage} ({task.name}): starting from {started_from}")
                model = self.adapters.load(started_from, name, trainable=True)
            else:
                torch.manual_seed(self.base.config.seed + stage)  # a fresh adapter depends on the seed and stage only
                model = self.adapters.add(name, self.base.config.lora, self.base.loaded.is_vision)
                say(f"stage {stage} ({task.name}): {describe_trainable(model, name, self.base.config.lora)}")
            self.method.before_training(ctx, model)
            hooks = self.method.training_hooks(ctx)
            info = self._train(model, name, stage, task, examples, folder, clock, "adapter", hooks)
        alone = start is None and {ex.id for ex in examples} == {ex.id for ex in self.data.train_set(task)}
        return LearnedStage(folder, started_from, alone, hooks, info)

    def _train(self, model, name: str, stage: int, task: TaskSpec, examples: list[Example], folder: str,
               clock: PhaseTimer, kind: str, hooks=None) -> dict:
        """Train adapter `name` on `examples` and publish it at `folder` (atomically; never rewritten)."""
        s, c = self.session, self.base.config
        s.say_resume(stage, task, folder, kind)
        info = train_adapter(model, name, examples, self.base.encoder, c.train, c.lora, s.checkpoints(folder, kind),
                             seed=c.seed, progress=s.progress.show_trainer_bars,
                             callbacks=s.callbacks(stage, task, clock, kind), log_dir=s.log_dir(folder, kind),
                             run_name=f"{task.name}-{s.method}", hooks=hooks)

        def save(staging):  # the hooks' final state first: a kill after the adapter is published loses nothing
            if kind == "adapter":
                save_hooks_state(hooks, s.hooks_state_path(folder))
            model.save_pretrained(staging, selected_adapters=[name])

        s.publish(folder, kind, save)
        self.adapters.published(folder, name)
        return info

    def stage_recorded(self, learned: LearnedStage) -> None:
        path = self.session.hooks_state_path(learned.folder)
        self.session.procs.on_main(lambda: path.unlink(missing_ok=True))  # what it held is in method_state now
        self.session.procs.on_main(lambda: remove_if_empty(path.parent))

    def routed_model(self, plan: ServingPlan, switch: SwitchNetwork | None) -> RoutedModel:
        return RoutedModel.for_plan(plan, self.base.loaded, self.base.prompt, self.adapters, switch)

    def train_alone(self, stage: int, task: TaskSpec, clock: PhaseTimer) -> TrainedAlone:
        folder, name = f"upper_bound/{stage:02d}-{task.name}", f"solo-{task.name}"
        if (self.session.run_dir / folder).is_dir():
            self.adapters.load(folder, name)
        else:
            self.session.say(f"stage {stage} ({task.name}): training the task's own adapter alone (the upper bound)")
            torch.manual_seed(self.base.config.seed + stage)
            model = self.adapters.add(name, self.base.config.lora, self.base.loaded.is_vision)
            self._train(model, name, stage, task, self.data.train_set(task), folder, clock, "upper_bound")
        pinned = RoutedModel(self.base.loaded, self.base.prompt, {task.name: folder}, self.adapters, None, task.name, True)
        return TrainedAlone(pinned, folder, name)

    def forget(self, alone: TrainedAlone) -> None:
        self.adapters.drop(alone.name)
