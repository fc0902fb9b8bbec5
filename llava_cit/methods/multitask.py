"""multitask: one adapter trained jointly on all tasks seen so far (a reference, not continual)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llava_cit.data.example import Example
from llava_cit.methods.base import Method, StageContext
from llava_cit.methods.registry import register


@dataclass(frozen=True)
class Multitask(Method):
    def training_examples(self, ctx: StageContext, train: Mapping[str, list[Example]]) -> list[Example]:
        return [example for task in ctx.tasks[: ctx.stage + 1] for example in train[task]]


register(Multitask("multitask", description="one fresh adapter per stage, trained on all seen tasks' data (reference)",
                   paper="joint training on all tasks seen so far (the usual upper reference)"))
