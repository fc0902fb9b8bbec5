"""rehearsal (= ER, experience replay): seq-lora plus replay of the retained examples of every earlier task;
the replay buffer is exactly what `retention` keeps, the same data SwitchCIT's switch is fitted on.
`method_args.replay` (default: all of them) replays only the first N retained examples of each earlier task, for a
replay ratio nearer the paper's (16 examples beside a task of tens of thousands) without shrinking the switch's
retained sample."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llava_cit.data.example import Example
from llava_cit.methods.base import Method, StageContext
from llava_cit.methods.registry import register
from llava_cit.methods.settings import setting


@dataclass(frozen=True)
class RehearsalSettings:
    replay: int | None = setting(None, "replayed retained examples per earlier task (null: all of them)", at_least=0)


@dataclass(frozen=True)
class Rehearsal(Method):
    settings_type: type = RehearsalSettings

    def training_examples(self, ctx: StageContext, train: Mapping[str, list[Example]]) -> list[Example]:
        count = ctx.settings.replay
        examples = list(train[ctx.task])
        for earlier in ctx.tasks[: ctx.stage]:
            examples += ctx.replay[earlier][:count]
        return examples


register(Rehearsal("rehearsal", continues=True,
                   description="seq-lora + replay of the retained examples of earlier tasks (the buffer is the "
                               "retention setting; method_args.replay: only the first N of each); also known as ER",
                   paper="experience replay (Rolnick et al. 2019), as in SwitchCIT's comparison"), "er")
