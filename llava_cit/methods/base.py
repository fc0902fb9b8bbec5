"""What a continual-learning method decides: each stage's training data, adapter and routing."""

from __future__ import annotations

from dataclasses import dataclass

from llava_cit.data.example import Example


@dataclass(frozen=True)
class Method:
    """A method in three answers.

    continues: does stage i start from stage i-1's adapter (one adapter for the whole sequence)?
    routes: does inference route each query through the switch to its task's adapter?
    full_finetune: are all the base model's weights trained (no LoRA), and saved whole after each stage?
    """

    name: str
    continues: bool
    routes: bool
    description: str = ""
    full_finetune: bool = False
    paper: str = ""  # where the method comes from (shown by `llava-cit methods`)

    def training_examples(self, stage: int, tasks: list[str], train: dict[str, list[Example]],
                          replay: dict[str, list[Example]]) -> list[Example]:
        """Stage `stage`'s training data; `replay[t]` are the retained examples of earlier task t."""
        return list(train[tasks[stage]])
