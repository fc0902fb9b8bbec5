"""A run's examples: each task's training and test sets, loaded from their sources when asked.

One training set is held at a time (the current stage's, until the stage releases it): a stage never keeps
earlier stages' training sets in memory (their images are opened batch by batch anyway). Test sets are kept:
every seen task is scored after every stage. Every retained example of an earlier task is found again in its
training set by id (retained/<task>.jsonl keeps the ids and instructions only).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from llava_cit.config import RunConfig
from llava_cit.continual.data_identity import examples_sha256
from llava_cit.data.example import Example
from llava_cit.data.sources import load_source
from llava_cit.tasks.spec import TaskSpec
from switch.retention import read_jsonl


class TrainSets(Mapping):
    """Each of `tasks`' training examples, loaded when asked for and not kept (a method's training_examples reads
    the sets it needs)."""

    def __init__(self, data: RunData, tasks: list[TaskSpec]):
        self.data, self.tasks = data, {t.name: t for t in tasks}

    def __getitem__(self, name: str) -> list[Example]:
        return self.data.train_set(self.tasks[name])

    def __iter__(self):
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)


class RunData:
    def __init__(self, config: RunConfig, run_dir: Path):
        self.config, self.run_dir = config, run_dir
        self._held: tuple[str, list[Example]] | None = None
        self._test: dict[str, list[Example]] = {}
        self.checksums: dict[str, dict[str, str]] = {}  # task -> {split: examples_sha256}, as checked before training

    def load(self, source: dict, task: str, split: str, limit: int | None, seed: int, suffix: str) -> list[Example]:
        """A split as the run reads it (a test set keeps its bad samples: they are counted, not dropped), its
        checksum recorded."""
        examples = load_source(source, task, split, limit, seed, suffix, keep_bad=(split == "test"))
        self.checksums.setdefault(task, {})[split] = examples_sha256(examples)
        return examples

    def hold(self, task: TaskSpec) -> list[Example]:
        """The current stage's training set, kept until `release`."""
        self._held = (task.name, self.train_set(task))
        return self._held[1]

    def release(self) -> None:
        self._held = None

    def train_set(self, task: TaskSpec) -> list[Example]:
        if self._held is not None and self._held[0] == task.name:
            return self._held[1]
        return load_source(task.train, task.name, "train", self.config.train_limit, self.config.seed, task.suffix)

    def train_sets(self, tasks: list[TaskSpec]) -> TrainSets:
        return TrainSets(self, tasks)

    def test_set(self, task: TaskSpec) -> list[Example]:
        if task.name not in self._test:
            self._test[task.name] = load_source(task.test, task.name, "test", self.config.eval.limit,
                                                self.config.seed, task.suffix, keep_bad=True)
        return self._test[task.name]

    def replay(self, earlier: list[TaskSpec]) -> dict[str, list[Example]]:
        """The retained examples of each earlier task, from its training set."""
        replay = {}
        for task in earlier:
            ids = {row["id"] for row in read_jsonl(self.run_dir / "retained" / f"{task.name}.jsonl")}
            replay[task.name] = [ex for ex in self.train_set(task) if ex.id in ids]
        return replay
