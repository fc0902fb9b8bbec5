"""Each task's upper bound UB_j, one denominator for every method: the score of the task's own adapter trained
on it alone, answering every query of the task (oracle routing) with the task's own budget.

Where the stage's adapter is such an adapter (fresh, trained on the task's examples only) it is scored pinned to
the task (at stage 0, the matrix's a[0][0] is that score already); otherwise (a continued, shared or replaying
adapter: seq-lora, rehearsal, eproj, a sim-expand reuse, ...) a fresh adapter is trained on the task alone,
saved under upper_bound/NN-task, scored and unloaded. full-sft keeps no untouched base to train one on.

`eval.upper_bound_from: RUN` takes the upper bounds another run measured instead, only from a run of the same
tasks at the same stages, with the same data (checksums of every split as loaded), `eval.limit` and seed.
`eval.upper_bound: false` measures none (a sweep ranks points by accuracy alone: no extra adapter to train).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llava_cit.config import RunConfig
from llava_cit.continual.learner import LearnedStage, Learner
from llava_cit.continual.manifest import Manifest
from llava_cit.continual.matrix_evaluation import MatrixEvaluation, MatrixRow
from llava_cit.continual.run_directory import read_run_config
from llava_cit.continual.stage_clock import PhaseTimer
from llava_cit.serve.routed_model import RoutedModel
from llava_cit.tasks.spec import TaskSpec
from llava_cit.util.errors import UserError


@dataclass
class UpperBound:
    value: float | None
    source: str  # where the value comes from (results.json's upper_bound_source)
    artifact: str | None = None  # a folder trained for it (checksummed with the stage)


class UpperBoundSource:
    """`eval.upper_bound_from`: a finished run whose upper bounds this run takes."""

    def __init__(self, run_dir: str):
        self.run_dir = Path(run_dir)
        self._results: dict | None = None

    @property
    def results(self) -> dict:
        if self._results is None:
            from llava_cit.continual.report import read_results  # checked against that run's manifest

            path = self.run_dir / "results.json"
            if not path.is_file():
                raise UserError(f"eval.upper_bound_from: {path} not found")
            self._results = read_results(self.run_dir)
        return self._results

    def check(self, config: RunConfig, tasks: list[TaskSpec], pending: dict[int, dict | None]) -> None:
        """Refuse (one line naming what differs) a source run whose seed or eval.limit differ from this run's, or
        whose stage i learned another task than this run's, or the same task from other data, for each pending
        stage i (`pending`: stage -> this run's data checksums of its task)."""
        self.results  # noqa: B018 - a missing or tampered source is refused first
        source = read_run_config(self.run_dir / "config.yaml")
        differ = [f"{key} ({here!r} here, {there!r} there)" for key, here, there in (
            ("seed", config.seed, source.get("seed", 0)),
            ("eval.limit", config.eval.limit, (source.get("eval") or {}).get("limit")))
            if here != there]
        stages = Manifest(self.run_dir).stages
        for stage, checksums in pending.items():
            task = tasks[stage].name
            there = stages[stage].get("task") if stage < len(stages) else None
            if there != task:
                differ.append(f"tasks (stage {stage}: '{task}' here, {repr(there) if there else 'none'} there)")
            elif stages[stage].get("data_sha256") is None:
                differ.append(f"data checksums (stage {stage} '{task}': none recorded there, a run from before they "
                              f"were)")
            elif stages[stage]["data_sha256"] != checksums:
                splits = sorted(k for k in set(checksums or {}) | set(stages[stage]["data_sha256"])
                                if (checksums or {}).get(k) != stages[stage]["data_sha256"].get(k))
                differ.append(f"data checksums (stage {stage} '{task}': {', '.join(splits)})")
        if differ:
            raise UserError(f"eval.upper_bound_from: {self.run_dir} differs from this run in {'; '.join(differ)}: "
                            f"its upper bounds are not this run's")

    def of(self, task: TaskSpec) -> UpperBound:
        value = self.results.get("upper_bound", {}).get(task.name)
        if value is None:
            raise UserError(f"eval.upper_bound_from: {self.run_dir / 'results.json'} has no upper bound for task "
                            f"'{task.name}'")
        return UpperBound(value, f"{self.run_dir} (upper_bound of '{task.name}')")


class UpperBounds:
    def __init__(self, source: UpperBoundSource | None, learner: Learner, evaluation: MatrixEvaluation,
                 wanted: bool = True):
        self.source, self.learner, self.evaluation, self.wanted = source, learner, evaluation, wanted

    def of(self, stage: int, task: TaskSpec, learned: LearnedStage, row: MatrixRow, model: RoutedModel,
           clock: PhaseTimer) -> UpperBound:
        """UB of stage `stage`'s task; `model`: the stage's routed model, `row`: its scores."""
        if not self.wanted:
            return UpperBound(None, "not measured (eval.upper_bound: false)")
        if self.source is not None:
            return self.source.of(task)
        if learned.alone:
            label = "own adapter (oracle routing)" if model.routed else "this stage's adapter (trained on the task alone)"
            if stage == 0:  # the matrix answered this task's queries alone, with this adapter and budget
                return UpperBound(row.scores[0], label)
            return UpperBound(self.evaluation.score(task, model.pinned(task.name), "upper bound"), label)
        alone = self.learner.train_alone(stage, task, clock)
        if alone is None:
            return UpperBound(None, "not available: full-sft keeps no untouched base after stage 0 (set "
                                    "eval.upper_bound_from)")
        value = self.evaluation.score(task, alone.model, "upper bound")
        self.learner.forget(alone)
        return UpperBound(value, f"{alone.folder} (a fresh adapter trained on the task alone)", alone.folder)
