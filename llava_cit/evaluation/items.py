"""What each benchmark asks: its samples (read by llava_cit.data.benchmark_files, or a task's test source), its
scorer and report, behind one interface (`Benchmark`). Sample keys and bad samples: llava_cit.data.benchmark_files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from benchmarks import gqa, ocrbench, ocrvqa
from llava_cit.data.benchmark_files import EvalItem, read_benchmark
from llava_cit.data.images import BadImage
from llava_cit.data.sources import load_source
from llava_cit.evaluation.scoring import mean_defined, score_samples, wrong_scores
from llava_cit.tasks.registry import resolve_task
from llava_cit.util.errors import UserError


@dataclass
class Benchmark:
    name: str
    items: list[EvalItem]
    score: Callable[[str, EvalItem], float]
    report: Callable[[list[dict]], dict]
    # optional: score a whole list at once (BERTScore loads its model once) and add per-sample extras
    score_batch: Callable[[list[str], list[EvalItem]], list[dict]] | None = None
    max_new_tokens: int = 128  # the benchmark's generation budget (LLaVA's evaluation default)
    data: str = ""  # the annotation file (or hf:<id>) it was read from
    # optional: the row of a sample counted as wrong (no prediction, or a bad sample): 0 for its metric and for
    # every extra metric the sample has
    wrong_row: Callable[[EvalItem], dict] | None = None

    def wrong(self, item: EvalItem) -> dict:
        return self.wrong_row(item) if self.wrong_row is not None else {"score": 0.0}

    @cached_property
    def sample_keys(self) -> frozenset[str]:
        return frozenset(item.key for item in self.items)

    def key_for_row(self, row: dict, source: str) -> str | None:
        """Which sample an external prediction row answers: by `key`, `index`, `dataset_name`+`id`, or `id`
        (only where ids are unique in this benchmark's file)."""
        if "key" in row:
            return str(row["key"])
        if "index" in row and row["index"] is not None:
            index = int(row["index"])
            return self.items[index].key if 0 <= index < len(self.items) and _positional(self) else str(index)
        if "dataset_name" in row and "id" in row:
            return _by_dataset_id(self).get((str(row["dataset_name"]), str(row["id"])))
        if "id" in row:
            ids = _by_id(self)
            if ids is None:
                raise UserError(f"{source}: rows are keyed by 'id' alone, but ids repeat in {self.data} "
                                f"({len({i.meta.get('id') for i in self.items})} distinct of {len(self.items)}): "
                                f"key each row by 'index' (its position in the file) or by 'dataset_name' + 'id'")
            return ids.get(str(row["id"]))
        return None


def _positional(bench: Benchmark) -> bool:
    return bool(bench.items) and all("index" in item.meta for item in bench.items)


def _by_dataset_id(bench: Benchmark) -> dict[tuple[str, str], str]:
    return {(str(i.meta.get("dataset_name")), str(i.meta.get("id", i.key))): i.key for i in bench.items}


def _by_id(bench: Benchmark) -> dict[str, str] | None:
    ids = [str(i.meta.get("id", i.key)) for i in bench.items]
    if len(set(ids)) != len(ids):
        return None
    return dict(zip(ids, (i.key for i in bench.items)))


def load_ocrbench(data: str, images: str | None) -> Benchmark:
    def score(prediction: str, item: EvalItem) -> float:
        return float(ocrbench.score(prediction, item.answers, item.meta["dataset_name"]))

    return Benchmark("ocrbench", read_benchmark("ocrbench", data, images), score, ocrbench.report, max_new_tokens=128, data=data)


def load_gqa(data: str, images: str | None) -> Benchmark:
    def score(prediction: str, item: EvalItem) -> float:
        return float(gqa.score(prediction, item.answers[0]))

    return Benchmark("gqa", read_benchmark("gqa", data, images), score, gqa.report, max_new_tokens=16, data=data)


def load_ocrvqa(data: str, images: str | None) -> Benchmark:
    items = read_benchmark("ocrvqa", data, images)
    return Benchmark("ocrvqa", items, lambda prediction, item: float(ocrvqa.score(prediction, item.answers)),
                     ocrvqa.report, max_new_tokens=128, data=data)


def load_task(name: str, data: str | None, images: str | None, trained: dict | None = None) -> Benchmark:
    """Any registered task (or task file) evaluated on its declared test source (or --data: a LLaVA-format
    file for a vision task, a JSONL {"instruction","input","output"} file for a text task). `trained`: the task
    files' tasks of the run being evaluated ({name: TaskSpec}), found by name."""
    task = (trained or {}).get(name) or resolve_task(name)
    source = dict(task.test)
    if data:
        source = {"type": "jsonl", "path": data} if task.kind == "text" else {
            "type": "llava", "path": data, "image_folder": images}
    examples = load_source(source, task.name, "test", suffix=task.suffix, keep_bad=True)
    items = [EvalItem(ex.id, ex.turns[-1][0].replace("<image>", "").strip(), ex.meta.get("answers") or [ex.answer],
                      image=ex.image, image_path=ex.image_path, meta={"id": ex.id, "task": task.name}, input=ex.input,
                      history=list(ex.turns[:-1]), max_new_tokens=task.max_new_tokens, error=ex.meta.get("error"))
             for ex in examples]
    by_id = {ex.id: ex for ex in examples}

    def score_batch(predictions: list[str], batch: list[EvalItem]) -> list[dict]:
        return score_samples(task, predictions, [by_id[item.key] for item in batch])

    def report(rows: list[dict]) -> dict:  # "score": the mean of the task's metric over the samples, in [0, 1]
        return {"score": mean_defined([r["score"] for r in rows]), "metric": task.metric,
                **{m: mean_defined([r.get(m) for r in rows]) for m in task.extra_metrics}}

    return Benchmark(task.name, items, lambda prediction, item: score_batch([prediction], [item])[0]["score"], report,
                     score_batch=score_batch, max_new_tokens=task.max_new_tokens, data=data or str(source.get("path", "")),
                     wrong_row=lambda item: wrong_scores(task, by_id[item.key]))


LOADERS = {"ocrbench": load_ocrbench, "gqa": load_gqa, "ocrvqa": load_ocrvqa}


def load_benchmark(name: str, data: str | None, images: str | None, trained: dict | None = None) -> Benchmark:
    if name in LOADERS:
        return LOADERS[name](data, images)
    return load_task(name, data, images, trained)


__all__ = ["BadImage", "Benchmark", "EvalItem", "load_benchmark"]
