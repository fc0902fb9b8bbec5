"""The field's task sequences by name: `tasks: [ucit]` (or `coin`, `mllm-dcl`, and the CPU miniatures `ucit-mini`,
`coin-mini`, `mllm-dcl-mini`) expands to the sequence's tasks in their published order.

Each sequence is a `<name>.sequence.yaml` in a folder of this package, listing its task files (ordinary task files,
`llava-cit` reads them like a researcher's) with the source of the order and the layout of its released files under
`$LLAVA_CIT_DATA/<data>/`. The task registry (llava_cit.tasks.registry) loads them when it is imported, handing in its
task-file reader: every task file is registered by its name, so `ucit-flickr30k` can also be named on its own; the
miniatures' synthetic generators register with them (llava_cit.data.synthetic_sequences).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import llava_cit.data.synthetic_sequences  # noqa: F401  (registers the miniatures' generators)
from benchmarks.registry import Registry
from llava_cit.tasks.catalog import TASKS, register
from llava_cit.tasks.spec import TaskSpec
from llava_cit.util.errors import UserError

FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class TaskSequence:
    name: str
    tasks: tuple[str, ...]  # registered task names, in the published order
    description: str = ""
    source: str = ""  # where the order and the layout were published
    data: str | None = None  # the folder under $LLAVA_CIT_DATA its released files go in (None: synthetic)
    expected_test_records: int | None = None  # where the release fixes it (UCIT: 3,000 per task)
    task_files: tuple[Path, ...] = field(default=(), compare=False)


SEQUENCES: Registry[TaskSequence] = Registry("task sequence")


ReadTaskFile = Callable[[Path], TaskSpec]


def _task(path: Path, read_task_file: ReadTaskFile) -> str:
    """Register the task file at `path` (once) and return its name."""
    spec = read_task_file(path)
    if spec.name in TASKS:
        held = TASKS.get(spec.name)
        if held.source_file != spec.source_file:
            raise UserError(f"task '{spec.name}' is defined twice ({held.source_file} and {path})")
        return spec.name
    register(spec)
    return spec.name


def load_sequence_file(path: Path, read_task_file: ReadTaskFile) -> TaskSequence:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("tasks"), list):
        raise UserError(f"{path}: a sequence file is a mapping with 'name' and a 'tasks' list of task files")
    files = tuple(path.parent / entry for entry in data["tasks"])
    return TaskSequence(name=data["name"], tasks=tuple(_task(f, read_task_file) for f in files),
                        description=data.get("description", ""), source=data.get("source", ""),
                        data=data.get("data"), expected_test_records=data.get("expected_test_records"),
                        task_files=files)


def load_shipped(read_task_file: ReadTaskFile) -> None:
    """Register the shipped sequences and their task files (again: a no-op)."""
    for path in sorted(FOLDER.glob("*/*.sequence.yaml")):
        sequence = load_sequence_file(path, read_task_file)
        if sequence.name not in SEQUENCES:
            SEQUENCES.add(sequence.name, sequence)


def known_sequences() -> list[str]:
    return SEQUENCES.names()


def expand_sequences(entries: list[Any]) -> list[Any]:
    """A config's `tasks:` with each sequence name replaced by its task names, in order. A mapping entry naming a
    sequence ({name: ucit, train: {max_records: 1000}}) gives each of its tasks those overrides."""
    expanded: list[Any] = []
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) and "file" not in entry else entry
        if isinstance(name, str) and name in SEQUENCES:
            overrides = {k: v for k, v in entry.items() if k != "name"} if isinstance(entry, dict) else {}
            expanded += [{"name": task, **overrides} if overrides else task for task in SEQUENCES.get(name).tasks]
        else:
            expanded.append(entry)
    return expanded

