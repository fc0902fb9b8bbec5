"""rehearsal (= ER, experience replay): seq-lora plus replay of the retained examples of every earlier task;
the replay buffer is exactly what `retention` keeps, the same data SwitchCIT's switch is fitted on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llava_cit.data.example import Example
from llava_cit.methods.base import Method, StageContext
from llava_cit.methods.registry import register


@dataclass(frozen=True)
class Rehearsal(Method):
    def training_examples(self, ctx: StageContext, train: Mapping[str, list[Example]]) -> list[Example]:
        examples = list(train[ctx.task])
        for earlier in ctx.tasks[: ctx.stage]:
            examples += ctx.replay[earlier]
        return examples


register(Rehearsal("rehearsal", continues=True,
                   description="seq-lora + replay of the retained examples of earlier tasks (the buffer is the "
                               "retention setting); also known as ER",
                   paper="experience replay (Rolnick et al. 2019), as in SwitchCIT's comparison"), "er")
