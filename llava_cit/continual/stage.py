"""What a finished stage records in manifest.json (one entry of `stages`; the manifest adds `checksums`).

results.json is rebuilt from these records (llava_cit.continual.results); runs written by earlier versions have
the same keys, less `data_sha256`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class StageRecord:
    stage: int
    task: str
    adapter: str  # the folder this stage saved what it learned in (adapters/NN-task, or models/NN-task for full-sft)
    scores: list[float]  # a[stage][j] for every task j seen so far
    upper_bound: float | None
    upper_bound_source: str
    base_score: float | None  # the untrained base on this task (None: no untrained base left, full-sft after stage 0)
    switch_accuracy: float | None
    false_rejection_rate: dict[str, float] | None
    bad_samples: dict[str, int]
    extra_metrics: dict[str, dict]
    train: dict  # steps, loss, resumed_from, examples, the method's facts (`method`), ...
    seconds: dict[str, float]  # train, eval, stage (adding up across resumes)
    switch: str | None  # the switch folder fitted after this stage
    serving: dict[str, str]  # the folder answering each seen task after this stage
    started_from: str | None  # the earlier stage's folder this stage's adapter started from
    task_similarity: dict | None
    task_spec: dict | None  # a task read from a file, as trained (`eval --run` finds it by name)
    data_sha256: dict[str, str] | None = None  # the task's train and test examples as loaded (eval.upper_bound_from)

    def entry(self) -> dict:
        return asdict(self)
