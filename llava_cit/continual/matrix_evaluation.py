"""The accuracy matrix's row after a stage: every seen task's test set answered by the stage's routed model
(llava_cit.serve.routed_model, which routes and picks each query's budget), scored per sample and written to
predictions/stage-NN/<task>.jsonl; and single scores (the untrained base, an upper bound) of one task's test set.

In a multi-process run every rank routes every query (the same routes), answers its shard, and gets all the
answers back in order; rank 0 writes the predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llava_cit.continual.run_data import RunData
from llava_cit.data.example import Example
from llava_cit.evaluation.scoring import mean_defined, score_samples
from llava_cit.serve.routed_model import Prediction, Route, RoutedModel
from llava_cit.tasks.spec import TaskSpec
from llava_cit.train.distributed import Processes
from llava_cit.util.progress_display import ItemProgress
from switch.retention import write_jsonl


@dataclass
class MatrixRow:
    scores: list[float]  # a[stage][j] for every seen task j
    extra: dict[str, dict]  # task -> its extra metrics (e.g. HGen's constraint rate)
    bad: dict[str, int]  # task -> samples that could not be answered (scored as wrong)
    switch_accuracy: float | None  # the share of queries routed to their own task (None: no switch)
    false_rejection: dict[str, float] | None  # task -> the share of its answerable queries the switch rejected


def per_sample(task: TaskSpec, examples: list[Example], outcomes: list[Prediction]) -> list[dict]:
    """Each example's scores; a sample that could not be served scores 0 (scored as wrong)."""
    answered = [i for i, p in enumerate(outcomes) if p.error is None and not examples[i].meta.get("error")]
    values = dict(zip(answered, score_samples(task, [outcomes[i].answer for i in answered],
                                              [examples[i] for i in answered])))
    return [values.get(i, {"score": 0.0}) for i in range(len(examples))]


class MatrixEvaluation:
    def __init__(self, run_dir: Path, data: RunData, procs: Processes, batch_size: int, console=None,
                 say=lambda text: None):
        self.run_dir, self.data, self.procs, self.batch_size = run_dir, data, procs, batch_size
        self.console, self.say = console, say

    def answer(self, model: RoutedModel, examples: list[Example], routes: list[Route], label: str) -> list[Prediction]:
        """`model`'s predictions for `examples` routed as `routes`, this rank's shard answered (a progress bar
        labelled `label`), every rank's merged in order."""
        mine = self.procs.shard(len(examples))
        console = self.console if self.procs.is_main else None
        with ItemProgress(label, len(mine), console, self.say) as bar:
            answers = model.answer([examples[i] for i in mine], batch_size=self.batch_size, progress=bar.advance,
                                   routes=[routes[i] for i in mine])
        return self.procs.merge(len(examples), answers)

    def score(self, task: TaskSpec, model: RoutedModel, label: str) -> float:
        """`model`'s mean score on `task`'s test set."""
        tests = self.data.test_set(task)
        outcomes = self.answer(model, tests, model.routes(tests), label)
        return sum(v["score"] for v in per_sample(task, tests, outcomes)) / len(tests)

    def row(self, stage: int, seen: list[TaskSpec], model: RoutedModel) -> MatrixRow:
        tests = {t.name: self.data.test_set(t) for t in seen}
        flat = [(t, ex) for t in seen for ex in tests[t.name]]
        examples = [ex for _, ex in flat]
        routes = model.routes(examples)  # every query, on every rank: one routing for the whole set
        outcomes = self.answer(model, examples, routes, f"stage {stage} evaluation")
        scores, extra, bad, rejected, correct_routes = [], {}, {}, {}, 0
        for t in seen:
            indices = [i for i, (u, _) in enumerate(flat) if u is t]
            values = per_sample(t, [examples[i] for i in indices], [outcomes[i] for i in indices])
            rows = []
            for i, value in zip(indices, values):
                ex = examples[i]
                rows.append({"id": ex.id, "question": ex.turns[-1][0], "prediction": outcomes[i].answer,
                             "gold": ex.answer, **value, "error": ex.meta.get("error") or outcomes[i].error,
                             "routed_task": routes[i].task if model.routed else None,
                             "confidence": routes[i].confidence})
                correct_routes += model.routed and routes[i].task == t.name
            path = self.run_dir / "predictions" / f"stage-{stage:02d}" / f"{t.name}.jsonl"
            self.procs.on_main(lambda path=path, rows=rows: write_jsonl(path, rows))
            scores.append(sum(r["score"] for r in rows) / len(rows))
            bad[t.name] = sum(r["error"] is not None for r in rows)
            if t.extra_metrics:
                extra[t.name] = {m: mean_defined([r.get(m) for r in rows]) for m in t.extra_metrics}
            if model.switch is not None and model.switch.reject:
                rejected[t.name] = sum(routes[i].task is None and outcomes[i].error is None for i in indices) / len(indices)
        return MatrixRow(scores, extra, bad, correct_routes / len(flat) if model.switch is not None else None,
                         rejected or None)
