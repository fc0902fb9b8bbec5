"""replay-last: one adapter carried through the sequence, replaying only the previous task's retained
examples, with a small L2 pull of the adapter's weights towards zero (a worked example of a method file:
`llava-cit train --config my.yaml --set method=scripts/methods/replay_last.py`)."""

from collections.abc import Mapping
from dataclasses import dataclass

from llava_cit.data.example import Example
from llava_cit.methods.base import Method, StageContext, TrainingHooks
from llava_cit.methods.registry import register
from llava_cit.methods.regularization import adapter_parameters
from llava_cit.methods.settings import setting


@dataclass(frozen=True)
class ReplayLastSettings:  # method_args, typed and range-checked before stage 0 (llava-cit methods FILE shows them)
    l2: float = setting(1e-4, "strength of the pull of the adapter's weights towards zero", at_least=0)


class L2Pull(TrainingHooks):
    def __init__(self, adapter: str, strength: float):
        self.adapter, self.strength = adapter, strength

    def loss(self, model):  # added to the task loss at every step
        params = adapter_parameters(model, self.adapter).values()
        return self.strength * sum((p.float() ** 2).sum() for p in params)


@dataclass(frozen=True)
class ReplayLast(Method):
    continues: bool = True  # stage i starts from stage i-1's adapter
    settings_type: type = ReplayLastSettings

    def training_examples(self, ctx: StageContext, train: Mapping[str, list[Example]]) -> list[Example]:
        previous = ctx.replay.get(ctx.tasks[ctx.stage - 1], []) if ctx.stage > 0 else []
        return list(train[ctx.task]) + previous

    def training_hooks(self, ctx: StageContext) -> TrainingHooks:
        return L2Pull(ctx.adapter, ctx.settings.l2)


register(ReplayLast("replay-last", description="seq-lora + replay of the previous task only + an L2 pull",
                    paper="a worked example of a method file (README, 'Adding a method')"))
