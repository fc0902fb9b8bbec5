"""multitask: one adapter trained jointly on all tasks seen so far (a reference, not continual)."""

from __future__ import annotations

from dataclasses import dataclass

from llava_cit.data.example import Example
from llava_cit.methods.base import Method
from llava_cit.methods.registry import register


@dataclass(frozen=True)
class Multitask(Method):
    def training_examples(self, stage: int, tasks: list[str], train: dict[str, list[Example]],
                          replay: dict[str, list[Example]]) -> list[Example]:
        return [example for task in tasks[: stage + 1] for example in train[task]]


register(Multitask("multitask", continues=False, routes=False,
                   description="one fresh adapter per stage, trained on all seen tasks' data (reference)",
                   paper="joint training on all tasks seen so far (the usual upper reference)"))
