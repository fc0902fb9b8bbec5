"""Score a task's predictions with its declared metric, a whole list at a time (BERTScore batches)."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks import text_metrics
from benchmarks.exact_match import exact_match
from benchmarks.ocrbench import score as ocrbench_score
from llava_cit.data.example import Example
from llava_cit.errors import UserError
from llava_cit.tasks.ct0_prompts import constraint_met
from llava_cit.tasks.spec import TaskSpec


def references(example: Example) -> list[str]:
    return list(example.meta.get("answers") or [example.answer])


def source(example: Example) -> str:
    """The text a simplification rewrites (SARI's source): recorded by the loader, else the input field."""
    return example.meta.get("source") or example.input


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
        scores = text_metrics.sari([source(ex) for ex in examples], predictions, [references(ex) for ex in examples])
        return [s / 100 for s in scores]
    if task.metric == "bertscore":
        return text_metrics.bertscore_f1(predictions, [references(ex) for ex in examples],
                                         **bertscore_args(task.metric_args))
    raise ValueError(f"unknown metric {task.metric}")


def extra_scores(task: TaskSpec, predictions: Sequence[str], examples: Sequence[Example]
                 ) -> dict[str, list[float | None]]:
    """The task's extra metrics per sample (None where a sample does not carry what the metric needs)."""
    out: dict[str, list[float | None]] = {}
    for name in task.extra_metrics:
        if name == "constraint_rate":
            out[name] = [float(constraint_met(p, ex.meta["constraint"]["type"], ex.meta["constraint"]["word"]))
                         if "constraint" in ex.meta else None for p, ex in zip(predictions, examples)]
        else:
            raise ValueError(f"unknown extra metric {name}")
    return out


def wrong_scores(task: TaskSpec, example: Example) -> dict:
    """The row of a sample counted as wrong (no prediction, or a bad sample): 0 for the task's metric and for each
    extra metric the sample has (None where it has none, as `extra_scores` gives)."""
    extras = {name: (0.0 if "constraint" in example.meta else None) if name == "constraint_rate" else 0.0
              for name in task.extra_metrics}
    return {"score": 0.0, **extras}


def score_samples(task: TaskSpec, predictions: Sequence[str], examples: Sequence[Example]) -> list[dict]:
    """Per sample: {"score": the task's metric, plus one key per extra metric}."""
    extras = extra_scores(task, predictions, examples)
    return [{"score": value, **{name: values[i] for name, values in extras.items()}}
            for i, value in enumerate(score_all(task, predictions, examples))]


def mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def bertscore_args(args: dict) -> dict:
    """`model_type` may name a model packaged on PyPI (e.g. `minilm-l6`): it is read from the installed package."""
    from llava_cit.models.packaged import PACKAGED, packaged_path

    args = dict(args)
    if args.get("model_type") in PACKAGED:
        args["model_type"] = str(packaged_path(args["model_type"]))
    return args


def check_metric(task: TaskSpec) -> None:
    """Raise UserError now if the task's metric could not run at evaluation time (e.g. BERTScore offline)."""
    if task.metric == "bertscore":
        try:
            text_metrics.check_bertscore(**bertscore_args(task.metric_args))
        except text_metrics.MetricUnavailable as err:
            raise UserError(f"task '{task.name}': {err} (set metric_args.model_type to a local model, or "
                            f"evaluate elsewhere)") from None
