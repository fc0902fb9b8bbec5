"""Score a task's predictions with its declared metric, a whole list at a time (BERTScore batches)."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks import text_metrics
from benchmarks.exact_match import exact_match
from benchmarks.ocrbench import score as ocrbench_score
from llava_cit.data.example import Example
from llava_cit.tasks.spec import TaskSpec


def references(example: Example) -> list[str]:
    return list(example.meta.get("answers") or [example.answer])


def score_all(task: TaskSpec, predictions: Sequence[str], examples: Sequence[Example]) -> list[float]:
    """Per-sample scores in [0, 1] (SARI is divided by 100)."""
    if task.metric == "exact_match":
        return [exact_match(p, references(ex), task.normalizer) for p, ex in zip(predictions, examples)]
    if task.metric == "ocrbench":
        return [float(ocrbench_score(p, references(ex), ex.meta.get("dataset_name", "")))
                for p, ex in zip(predictions, examples)]
    if task.metric == "rouge1":
        return text_metrics.rouge1(predictions, [references(ex) for ex in examples])
    if task.metric == "sari":
        scores = text_metrics.sari([ex.input for ex in examples], predictions, [references(ex) for ex in examples])
        return [s / 100 for s in scores]
    if task.metric == "bertscore":
        return text_metrics.bertscore_f1(predictions, [references(ex)[0] for ex in examples],
                                         **task.metric_args)
    raise ValueError(f"unknown metric {task.metric}")


def score_one(task: TaskSpec, prediction: str, example: Example) -> float:
    return score_all(task, [prediction], [example])[0]
