"""Metrics by name: each one registered here with one decorator, and any task (a built-in or a researcher's task
file) can name any of them as its `metric` or among its `extra_metrics`.

    @metric("exact_match")
    def exact_match_metric(samples, normalizer="lower", **args):
        return [exact_match(s.prediction, s.references, normalizer) for s in samples]

A metric takes every sample of an evaluation at once (BERTScore batches) and returns one score per sample in
[0, 1], or None where the sample does not carry what the metric needs (`applies`); `check(**args)` fails fast,
before training, where the metric could not run (a missing package, an unreachable model). `args` are the task's
`metric_args`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks import ocrbench, text_metrics
from benchmarks.exact_match import exact_match
from benchmarks.gqa import score as gqa_score
from benchmarks.registry import Registry


@dataclass(frozen=True)
class Sample:
    """One answered sample, as a metric sees it."""

    prediction: str
    references: list[str]
    source: str = ""  # the text a rewrite starts from (SARI's source)
    meta: Mapping[str, Any] = field(default_factory=dict)  # e.g. OCRBench's dataset_name, CT0's constraint


@dataclass(frozen=True)
class Metric:
    name: str
    score: Callable[..., list[float | None]]  # (samples, normalizer=..., **args) -> a score per sample
    description: str = ""
    applies: Callable[[Sample], bool] | None = None  # None: every sample; else a sample it does not apply to scores None
    check: Callable[..., None] | None = None  # (**args): raise text_metrics.MetricUnavailable where it cannot run

    def applies_to(self, sample: Sample) -> bool:
        return self.applies is None or self.applies(sample)

    def wrong(self, sample: Sample) -> float | None:
        """The score of a sample counted as wrong (no prediction, a bad sample): 0, or None where it does not apply."""
        return 0.0 if self.applies_to(sample) else None


METRICS: Registry[Metric] = Registry("metric")


def metric(name: str, description: str = "", applies: Callable[[Sample], bool] | None = None,
           check: Callable[..., None] | None = None) -> Callable:
    """Register the decorated function as metric `name`."""

    def wrap(function: Callable[..., list[float | None]]) -> Callable[..., list[float | None]]:
        summary = description or next(iter((function.__doc__ or "").strip().splitlines()), "")
        METRICS.add(name, Metric(name, function, summary, applies, check))
        return function

    return wrap


def score(name: str, samples: Sequence[Sample], normalizer: str = "lower", **args) -> list[float | None]:
    """Per-sample scores of metric `name`; a sample it does not apply to scores None."""
    chosen = METRICS.get(name)
    values = list(chosen.score(list(samples), normalizer=normalizer, **args))
    if len(values) != len(samples):
        raise ValueError(f"metric '{name}' gave {len(values)} scores for {len(samples)} samples")
    return [v if chosen.applies_to(s) else None for v, s in zip(values, samples)]


@metric("exact_match")
def exact_match_metric(samples, normalizer="lower", **_):
    """Exact match with any reference after the task's normaliser (GQA, OCR-VQA, the synthetic tasks)."""
    return [exact_match(s.prediction, s.references, normalizer) for s in samples]


@metric("gqa")
def gqa_metric(samples, **_):
    """LLaVA-1.5's GQA rule: trailing period stripped, lower-cased, equal to the answer."""
    return [float(any(gqa_score(s.prediction, gold) for gold in s.references)) for s in samples]


@metric("ocrbench")
def ocrbench_metric(samples, **_):
    """The official OCRBench rule: a reference contained in the prediction (HME100k: spaces removed, case kept)."""
    return [float(ocrbench.score(s.prediction, s.references, s.meta.get("dataset_name", ""))) for s in samples]


@metric("rouge1")
def rouge1_metric(samples, stemmer: bool = True, **_):
    """ROUGE-1 F-measure, the best over the references (rouge-score)."""
    return text_metrics.rouge1([s.prediction for s in samples], [s.references for s in samples], stemmer=stemmer)


@metric("sari")
def sari_metric(samples, **_):
    """SARI (simplification: source, prediction, references), divided by 100."""
    scores = text_metrics.sari([s.source for s in samples], [s.prediction for s in samples],
                               [s.references for s in samples])
    return [v / 100 for v in scores]


@metric("bertscore", check=text_metrics.check_bertscore)
def bertscore_metric(samples, normalizer=None, **args):
    """BERTScore F1 (bert-score; metric_args: model_type, num_layers, batch_size)."""
    return text_metrics.bertscore_f1([s.prediction for s in samples], [s.references for s in samples], **args)


@metric("constraint_rate", applies=lambda s: "constraint" in s.meta)
def constraint_rate_metric(samples, **_):
    """CT0's keyword constraint met (HGen: the title starts with / contains / ends with the word)."""
    return [float(text_metrics.constraint_met(s.prediction, s.meta["constraint"]["type"], s.meta["constraint"]["word"]))
            if "constraint" in s.meta else None for s in samples]
