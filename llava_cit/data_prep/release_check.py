"""`llava-cit data check <benchmark>`: is a downloaded copy of a sequence's released files complete?

For every task of the sequence (UCIT, CoIN, MLLM-DCL), in order: its train and test files are found (the first of
their candidate names), read as the task reads them, counted, and every image they name is looked up (not opened).
Each thing missing is one line: a file, an image folder, an image, a record that cannot be served, a count that
differs from the release's. A complete copy gives one `ok` line per task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llava_cit.data import released
from llava_cit.tasks.sequences import SEQUENCES, TaskSequence
from llava_cit.tasks.spec import TaskSpec
from llava_cit.util.errors import UserError


@dataclass
class SplitReport:
    records: int = 0
    images: int = 0
    problems: list[str] = field(default_factory=list)


def _files(source: dict, where: str) -> list[tuple[str, list[Path], bool]]:
    """(what, candidate files, required) for a source's data file and the reference files it joins."""
    found = [("data file", released.candidates(source.get("path"), where), True)]
    if source.get("captions"):
        found.append(("caption references", released.candidates(source["captions"], where), True))
    spec = source.get("vqa_answers")
    if isinstance(spec, dict) and "path" in spec:
        found.append(("human answers", released.candidates(spec["path"], where), not spec.get("optional")))
    return found


def check_split(task: TaskSpec, split: str, max_listed: int = 20) -> SplitReport:
    """Files, records and images of one split of a task whose source is a released file."""
    source = task.train if split == "train" else task.test
    where = f"{task.name} {split}"
    report = SplitReport()
    missing_files = [f"missing {what}: {' or '.join(str(p) for p in paths)} ({where})"
                     for what, paths, required in _files(source, where)
                     if required and not any(p.is_file() for p in paths)]
    if missing_files:
        report.problems += missing_files
        return report
    try:
        examples = (released.read_instructions(source, task.name) if split == "train"
                    else released.read_questions(source, task.name, keep_bad=True))
    except UserError as err:
        report.problems.append(f"unreadable: {err} ({where})")
        return report
    report.records = len(examples)
    report.problems += [f"bad record: {ex.meta['error']} ({where})" for ex in examples if ex.meta.get("error")]
    lines, found = _missing_images(examples, where, max_listed)
    report.problems += lines
    report.images = found
    return report


def _highest_missing(path: Path) -> Path:
    """The outermost folder (or the file itself) of `path` that does not exist."""
    while not path.parent.exists() and path.parent != path.parent.parent:
        path = path.parent
    return path


def _missing_images(examples, where: str, max_listed: int) -> tuple[list[str], int]:
    """One line per missing image, or per missing folder with the number of images it should hold; and the
    number of images found."""
    paths = sorted({ex.image_path for ex in examples if ex.image_path is not None})
    gone: dict[Path, int] = {}
    for path in paths:
        if not path.is_file():
            top = _highest_missing(path)
            gone[top] = gone.get(top, 0) + 1
    lines = [f"missing image: {top} ({where})" if count == 1 and top.suffix else
             f"missing folder: {top} ({count:,} images) ({where})" for top, count in list(gone.items())[:max_listed]]
    if len(gone) > max_listed:
        lines.append(f"... and {len(gone) - max_listed} more missing images or folders ({where}; --max-listed N)")
    return lines, len(paths) - sum(gone.values())


def check_sequence(name: str, say: Callable[[str], None] = print, max_listed: int = 20) -> int:
    """Check the released files of sequence `name`; print one line per task and per problem. Returns the number
    of problems (0: the copy is complete)."""
    from llava_cit.tasks.catalog import TASKS

    if name not in SEQUENCES:
        raise UserError(f"unknown benchmark '{name}' (known: {', '.join(released_sequences())})")
    sequence: TaskSequence = SEQUENCES.get(name)
    if sequence.data is None:
        raise UserError(f"'{name}' is synthetic: it has no released files to check "
                        f"(known: {', '.join(released_sequences())})")
    problems = 0
    for task_name in sequence.tasks:
        task = TASKS.get(task_name)
        train, test = check_split(task, "train", max_listed), check_split(task, "test", max_listed)
        if sequence.expected_test_records and not test.problems and test.records != sequence.expected_test_records:
            test.problems.append(f"count: {test.records} test records, the release has "
                                 f"{sequence.expected_test_records} ({task.name} test)")
        lines = train.problems + test.problems
        problems += len(lines)
        status = "ok " if not lines else "BAD"
        say(f"{status} {task.name}: train {train.records:,} records, test {test.records:,} records, "
            f"{train.images + test.images:,} images found")
        for line in lines:
            say(f"    {line}")
    return problems


def released_sequences() -> list[str]:
    return [name for name in SEQUENCES.names() if SEQUENCES.get(name).data is not None]
