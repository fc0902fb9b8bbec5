"""The learner of a run: what a stage trains and how the result answers, chosen once per run.

    LoraLearner            (llava_cit.continual.lora_learner) a LoRA adapter per stage on the frozen base, fresh or
                           copied from an earlier stage's (the method's start_from), saved under adapters/
    FullFinetuneLearner    (llava_cit.continual.full_learner) every weight, task after task (full-sft), the whole
                           model saved under models/

The runner speaks to either through this protocol only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from llava_cit.continual.stage_clock import PhaseTimer
from llava_cit.data.example import Example
from llava_cit.methods.base import StageContext, TrainingHooks
from llava_cit.serve.routed_model import RoutedModel
from llava_cit.serve.serving_plan import ServingPlan
from llava_cit.tasks.spec import TaskSpec
from switch import SwitchNetwork


@dataclass
class LearnedStage:
    """What a stage's learning left: where it is saved, what it started from, the training facts."""

    folder: str  # adapters/NN-task or models/NN-task
    started_from: str | None  # the earlier stage's folder it was copied from (None: fresh, or full-sft's continuation)
    alone: bool  # a fresh adapter trained on the task's own examples only: the task's upper bound adapter
    hooks: TrainingHooks | None  # the method's hooks as training left them (None: it did not train in this process)
    info: dict = field(default_factory=dict)  # steps, loss, resumed_from, ... (manifest `train`)


@dataclass
class TrainedAlone:
    """A fresh adapter trained on one task alone (an upper bound), pinned to that task."""

    model: RoutedModel
    folder: str
    name: str


class Learner(Protocol):
    kind: str  # "lora" or "full" (the serving plan's `learner`)

    @property
    def model(self):
        """The model the method's hooks see after a stage (PEFT model, or the whole model)."""

    def folder(self, stage: int) -> str:
        """Where stage `stage` saves what it learned."""

    def untrained(self, stage: int, task: str) -> RoutedModel | None:
        """The untrained base pinned to `task` (None where no untrained base is left)."""

    def learn(self, ctx: StageContext, task: TaskSpec, examples: list[Example], clock: PhaseTimer) -> LearnedStage:
        """Train stage ctx.stage on `examples` with the method's hooks, and publish it (or reuse what a crashed run
        published)."""

    def stage_recorded(self, learned: LearnedStage) -> None:
        """The method has what the hooks held: their saved state goes."""

    def routed_model(self, plan: ServingPlan, switch: SwitchNetwork | None) -> RoutedModel:
        """The model answering queries after the stage, as `plan` says (the switch in memory)."""

    def train_alone(self, stage: int, task: TaskSpec, clock: PhaseTimer) -> TrainedAlone | None:
        """A fresh adapter trained on `task`'s own examples alone, or the one saved before (None where the learner
        cannot: no untouched base)."""

    def forget(self, alone: TrainedAlone) -> None:
        """Release what `train_alone` loaded."""
