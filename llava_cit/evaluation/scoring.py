"""Score a task's predictions with the metrics it names (benchmarks.metrics, found by name), a whole list at a time
(BERTScore batches). A sample is the Example its reader gave: its references, SARI's source and the reader's fields
(`meta`) are what a metric reads."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.metrics import METRICS, Sample
from benchmarks.metrics import score as metric_score
from benchmarks.reports import mean_defined
from benchmarks.text_metrics import MetricUnavailable
from llava_cit.data.example import Example
from llava_cit.tasks.spec import TaskSpec
from llava_cit.util.errors import UserError


def source(example: Example) -> str:
    """The text a simplification rewrites (SARI's source): recorded by the loader, else the input field."""
    return example.meta.get("source") or example.input


def as_sample(prediction: str, example: Example) -> Sample:
    return Sample(prediction, example.references, source(example), example.meta)


def score_all(task: TaskSpec, predictions: Sequence[str], examples: Sequence[Example]) -> list[float]:
    """Per-sample scores of the task's metric, in [0, 1] (SARI is divided by 100)."""
    samples = [as_sample(p, ex) for p, ex in zip(predictions, examples)]
    return metric_score(task.metric, samples, task.normalizer, **metric_args(task.metric_args))


def extra_scores(task: TaskSpec, predictions: Sequence[str], examples: Sequence[Example]
                 ) -> dict[str, list[float | None]]:
    """The task's extra metrics per sample (None where a sample does not carry what the metric needs)."""
    samples = [as_sample(p, ex) for p, ex in zip(predictions, examples)]
    return {name: metric_score(name, samples, task.normalizer) for name in task.extra_metrics}


def wrong_scores(task: TaskSpec, example: Example) -> dict:
    """The row of a sample counted as wrong (no prediction, or a bad sample): 0 for the task's metric and for each
    extra metric the sample has (None where it has none, as `extra_scores` gives)."""
    sample = as_sample("", example)
    return {"score": 0.0, **{name: METRICS.get(name).wrong(sample) for name in task.extra_metrics}}


def score_samples(task: TaskSpec, predictions: Sequence[str], examples: Sequence[Example]) -> list[dict]:
    """Per sample: {"score": the task's metric, plus one key per extra metric}."""
    extras = extra_scores(task, predictions, examples)
    return [{"score": value, **{name: values[i] for name, values in extras.items()}}
            for i, value in enumerate(score_all(task, predictions, examples))]


def metric_args(args: dict) -> dict:
    """`model_type` may name a model packaged on PyPI (e.g. `minilm-l6`): it is read from the installed package."""
    from llava_cit.models.packaged import PACKAGED, packaged_path

    args = dict(args)
    if args.get("model_type") in PACKAGED:
        args["model_type"] = str(packaged_path(args["model_type"]))
    return args


def check_metric(task: TaskSpec) -> None:
    """Raise UserError now if one of the task's metrics could not run at evaluation time (e.g. BERTScore offline)."""
    for name, args in [(task.metric, task.metric_args), *((extra, {}) for extra in task.extra_metrics)]:
        check = METRICS.get(name).check
        if check is None:
            continue
        try:
            check(**metric_args(args))
        except MetricUnavailable as err:
            raise UserError(f"task '{task.name}': {err} (set metric_args.model_type to a local model, or "
                            f"evaluate elsewhere)") from None


__all__ = ["as_sample", "check_metric", "extra_scores", "mean_defined", "metric_args", "score_all",
           "score_samples", "source", "wrong_scores"]
