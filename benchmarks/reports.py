"""Reports by name: how a task's scored rows add up in scores.json. A task names one (`report`, default `mean`);
the LLaVA benchmarks' official layouts are reports like any other, so a task file may name them too.

    @report("mean")
    def mean_report(rows, metric, extra_metrics): ...

`rows` are the scored samples, one per sample in the file's order: the sample's own fields (a benchmark's `type`,
`dataset_name`, `types`, ...), its `key`, `score` (the task's metric, in [0, 1]; 0 for a wrong or bad sample) and one
entry per extra metric (None where it does not apply).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from benchmarks import gqa, ocrbench, ocrvqa
from benchmarks.registry import Registry

Report = Callable[[Sequence[dict], str, Sequence[str]], dict]  # (rows, metric name, extra metric names) -> scores
REPORTS: Registry[Report] = Registry("report")


def report(name: str) -> Callable[[Report], Report]:
    """Register the decorated function as report `name`."""
    return REPORTS.register(name)


def mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


@report("mean")
def mean_report(rows, metric, extra_metrics):
    """The mean of the task's metric over the samples (`score`, named by `metric`), and of each extra metric over
    the samples it applies to."""
    return {"score": mean_defined([r["score"] for r in rows]), "metric": metric,
            **{m: mean_defined([r.get(m) for r in rows]) for m in extra_metrics}}


@report("ocrbench")
def ocrbench_report(rows, metric, extra_metrics):
    """OCRBench's official layout: per type, Text Recognition, Final Score (and per source dataset)."""
    return ocrbench.report(rows)


@report("gqa")
def gqa_report(rows, metric, extra_metrics):
    """GQA's accuracy, overall and by structural and semantic question type."""
    return gqa.report(rows)


@report("accuracy")
def accuracy_report(rows, metric, extra_metrics):
    """Accuracy with its counts (OCR-VQA)."""
    return ocrvqa.report(rows)
