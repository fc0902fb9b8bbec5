"""What `llava-cit eval --benchmark NAME` evaluates: a task (built-in — the LLaVA benchmarks gqa, ocrbench and ocrvqa
among them —, a task file, or a task the run trained from a task file) and its test samples, read once into
examples (llava_cit.data.example.Example) that are served, keyed and scored as they are. The task's test source
gives the samples, or `--data` read with the task's `data_reader`; its metric scores them and its report adds them
up (benchmarks.metrics, benchmarks.reports: by name).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from benchmarks.reports import REPORTS
from llava_cit.data.example import Example
from llava_cit.data.sources import load_source
from llava_cit.evaluation.scoring import score_samples, wrong_scores
from llava_cit.tasks.registry import resolve_task
from llava_cit.tasks.spec import TaskSpec
from llava_cit.util.errors import UserError


@dataclass
class EvalSet:
    """A task's test samples, in the file's order, and where they were read from."""

    task: TaskSpec
    items: list[Example]
    data: str = ""  # the file (or hf:<id>) the samples were read from

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def max_new_tokens(self) -> int:
        """The task's generation budget."""
        return self.task.max_new_tokens

    def score(self, predictions: list[str], items: list[Example]) -> list[dict]:
        """Per answered sample: {"score": the task's metric, plus one entry per extra metric}."""
        return score_samples(self.task, predictions, items)

    def wrong(self, item: Example) -> dict:
        """The scores of a sample counted as wrong (no prediction, or a bad sample)."""
        return wrong_scores(self.task, item)

    def report(self, rows: list[dict]) -> dict:
        return REPORTS.get(self.task.report)(rows, self.task.metric, self.task.extra_metrics)

    @cached_property
    def sample_keys(self) -> frozenset[str]:
        return frozenset(item.id for item in self.items)

    def key_for_row(self, row: dict, source: str) -> str | None:
        """Which sample an external prediction row answers: by `key`, `index`, `dataset_name`+`id`, or `id`
        (only where ids are unique in this benchmark's file)."""
        if "key" in row:
            return str(row["key"])
        if "index" in row and row["index"] is not None:
            index = int(row["index"])
            return self.items[index].id if 0 <= index < len(self.items) and self._positional else str(index)
        if "dataset_name" in row and "id" in row:
            return self._by_dataset_id.get((str(row["dataset_name"]), str(row["id"])))
        if "id" in row:
            ids = self._by_id
            if ids is None:
                raise UserError(f"{source}: rows are keyed by 'id' alone, but ids repeat in {self.data} "
                                f"({len({i.meta.get('id') for i in self.items})} distinct of {len(self.items)}): "
                                f"key each row by 'index' (its position in the file) or by 'dataset_name' + 'id'")
            return ids.get(str(row["id"]))
        return None

    @cached_property
    def _positional(self) -> bool:
        return bool(self.items) and all("index" in item.meta for item in self.items)

    @cached_property
    def _by_dataset_id(self) -> dict[tuple[str, str], str]:
        return {(str(i.meta.get("dataset_name")), str(i.meta.get("id", i.id))): i.id for i in self.items}

    @cached_property
    def _by_id(self) -> dict[str, str] | None:
        ids = [str(i.meta.get("id", i.id)) for i in self.items]
        if len(set(ids)) != len(ids):
            return None
        return dict(zip(ids, (i.id for i in self.items)))


def load_benchmark(name: str, data: str | None, images: str | None, trained: dict | None = None) -> EvalSet:
    """The task `name` (registered, a task file, or one of `trained`: the run's tasks read from task files,
    {name: TaskSpec}) with its test samples: its declared test source, or `data` (a file, or hf:<id>) read with the
    task's `data_reader`, its images under `images`. Bad records are kept, to be counted as bad samples."""
    task = (trained or {}).get(name) or resolve_task(name)
    source, suffix = dict(task.test), task.suffix
    if data:
        source = task.data_source(data, images)
        if source["type"] == "benchmark":  # a benchmark's own file is asked as the benchmark asks it (its reader's
            suffix = ""                    # prompt: GQA's answer-format line; OCRBench's, OCR-VQA's questions as written)
    examples = load_source(source, task.name, "test", suffix=suffix, keep_bad=True)
    return EvalSet(task, examples, data or str(source.get("path", "")))


__all__ = ["EvalSet", "load_benchmark"]
