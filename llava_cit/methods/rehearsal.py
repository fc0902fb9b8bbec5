"""rehearsal: seq-lora plus replay of the retained examples of every earlier task."""

from __future__ import annotations

from dataclasses import dataclass

from llava_cit.data.example import Example
from llava_cit.methods.base import Method
from llava_cit.methods.registry import register


@dataclass(frozen=True)
class Rehearsal(Method):
    def training_examples(self, stage: int, tasks: list[str], train: dict[str, list[Example]],
                          replay: dict[str, list[Example]]) -> list[Example]:
        examples = list(train[tasks[stage]])
        for earlier in tasks[:stage]:
            examples += replay[earlier]
        return examples


register(Rehearsal("rehearsal", continues=True, routes=False,
                   description="seq-lora + replay of the retained examples of earlier tasks",
                   paper="experience replay (Rolnick et al. 2019), as in SwitchCIT's comparison"))
