"""The continual runner: for each stage, retain -> learn (with the method's hooks) -> fit the switch -> evaluate
every seen task -> record the stage in manifest.json and rebuild results.json. Resumable; extending the task list
trains only the new stages and never touches finished artifacts.

The runner only orders a stage's steps; each is an explicit collaborator chosen once per run:

    RunData          (run_data)           each task's examples, one training set held at a time
    RunBase          (run_base)           the base model and the prompt the run is trained and served with
    Learner          (learner)            LoRA adapters or full fine-tuning: train, publish, the model after a stage
    serving policy   (serving_policy)     routed methods: a switch (switch_fitting) over per-task adapters; others:
                                          one model for every task
    RoutedModel      (llava_cit.serve.routed_model)   the only place a query is routed and given a budget
    MatrixEvaluation (matrix_evaluation)  the accuracy matrix's row, predictions, single scores
    UpperBounds      (upper_bound)        each task's upper bound, one denominator for every method

Before anything trains, every stage's data is opened and checked (llava_cit.continual.data_validation). One
process writes a run directory at a time (a lock). A stage killed anywhere resumes with the same command: from its
newest complete Trainer checkpoint, or from its published adapter.

Under `accelerate launch` (N processes) every rank trains, rank 0 alone writes the run directory (config,
adapters, retained data, switch, predictions, manifest, results), and evaluation is sharded across the ranks
and merged (llava_cit.train.distributed): the run directory is the one a single process writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from llava_cit.config import RunConfig
from llava_cit.continual.data_validation import validate_data
from llava_cit.continual.full_learner import FullFinetuneLearner
from llava_cit.continual.learner import LearnedStage
from llava_cit.continual.lora_learner import LoraLearner
from llava_cit.continual.loss_curves import draw_loss_curves
from llava_cit.continual.manifest import Manifest
from llava_cit.continual.matrix_evaluation import MatrixEvaluation
from llava_cit.continual.results import below_base, write_results
from llava_cit.continual.run_base import RunBase
from llava_cit.continual.run_data import RunData
from llava_cit.continual.run_directory import open_run_directory, task_files
from llava_cit.continual.serving_policy import serving_policy
from llava_cit.continual.similarity_plot import draw_task_similarity
from llava_cit.continual.stage import StageRecord
from llava_cit.continual.stage_clock import StageClock
from llava_cit.continual.stage_training import Progress, TrainingSession
from llava_cit.continual.switch_fitting import SwitchFitting, switch_folder
from llava_cit.continual.upper_bound import UpperBounds, UpperBoundSource
from llava_cit.data.collation import Encoder
from llava_cit.data.example import Example
from llava_cit.evaluation.scoring import check_metric
from llava_cit.methods.base import StageContext
from llava_cit.methods.registry import get_method
from llava_cit.methods.task_similarity import similarity_to_earlier
from llava_cit.models.loading import LoadedModel
from llava_cit.serve.serving_plan import ServingPlan
from llava_cit.tasks.registry import resolve_task
from llava_cit.tasks.spec import TaskSpec
from llava_cit.train.distributed import Processes
from llava_cit.train.trainer import TrainingDiverged
from llava_cit.util.errors import RunInterrupted, UserError
from llava_cit.util.run_log import SESSION_START, RunLog
from switch import retain
from switch.errors import SwitchError
from switch.retention import write_jsonl

__all__ = ["ContinualRunner", "Progress"]


class ContinualRunner:
    def __init__(self, config: RunConfig, run_dir: str | Path, force: bool = False, progress: Progress | None = None,
                 config_dir: Path | None = None, loaded: LoadedModel | None = None):
        self.config, self.run_dir = config, Path(run_dir)
        self.progress = progress or Progress()
        self.method = get_method(config.method, config_dir)
        self.method_settings = self.method.parse_settings(config.method_args)  # checked before anything loads
        self.tasks = [resolve_task(entry, config_dir) for entry in config.tasks]
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise UserError(f"a task appears twice in the sequence: {names}")
        learner = learner_type(self.method, config)  # refuses what the learner cannot train
        for task in self.tasks:  # a metric that cannot run fails now, not after the first stage's training
            check_metric(task)
        self.procs = Processes()
        if self.procs.distributed and not self.method.multi_process:
            raise UserError(f"method '{self.method.name}' keeps per-stage state that one process computes: run it as "
                            f"one process (multi-process runs: switchcit, seq-lora, rehearsal and the other stateless "
                            f"methods)")
        self._lock = self.procs.on_main(
            lambda: open_run_directory(self.run_dir, config.to_dict(), force, self.progress.message, task_files(self.tasks)))
        # rank 0 alone writes run.log (and the console); the other ranks train and evaluate silently
        self.say = RunLog(self.run_dir / "run.log" if self.procs.is_main else None,
                          echo=self.progress.message if self.procs.is_main else None)
        self.manifest = Manifest(self.run_dir)
        self.data = RunData(config, self.run_dir)
        self.base = RunBase(config, self.run_dir, self.tasks, self.procs, self.say, loaded)
        self.fitting = SwitchFitting(config, self.run_dir, self.tasks, self.method.router, self.say, self.procs)
        self.policy = serving_policy(self.method, self.fitting)
        self.session = TrainingSession(self.run_dir, config, self.method.name, self.progress, self.say, self.procs)
        self.learner = learner(self.base, self.session, self.method, self.data, self.tasks)
        self.evaluation = MatrixEvaluation(self.run_dir, self.data, self.procs, config.eval.batch_size,
                                           self.progress.console, self.say)
        self.upper_bound_source = UpperBoundSource(config.eval.upper_bound_from) if config.eval.upper_bound_from \
            else None
        self.upper_bounds = UpperBounds(self.upper_bound_source, self.learner, self.evaluation,
                                        config.eval.upper_bound)
        self._stage = 0

    def close(self) -> None:
        """Release the run directory's lock (also released by the OS if the process dies)."""
        if self._lock is not None:
            self._lock.release()

    @property
    def loaded(self) -> LoadedModel:
        return self.base.loaded

    @property
    def encoder(self) -> Encoder:
        return self.base.encoder

    def test_set(self, task: TaskSpec) -> list[Example]:
        return self.data.test_set(task)

    # -- the run ---------------------------------------------------------------------------
    def validate(self) -> dict[str, int]:
        """Open every unfinished stage's data (and every seen task's test set) before anything trains; each split's
        checksum is kept for the stage's record."""
        pending = [t for i, t in enumerate(self.tasks) if not self.manifest.done(i)]
        if not pending:
            return {}
        tokenizer = None
        if self.config.model.startswith("tiny-"):
            from llava_cit.models.tiny import tiny_tokenizer

            tokenizer = tiny_tokenizer(self.config.model)
        counts = validate_data(pending, self.config, tokenizer, self.data.load)
        self.say(f"data checked: {', '.join(f'{k} {v}' for k, v in counts.items())}")
        if self.upper_bound_source is not None:  # refused now, not after a stage's training
            self.upper_bound_source.check(self.config, self.tasks, {
                i: self.data.checksums.get(t.name) for i, t in enumerate(self.tasks) if not self.manifest.done(i)})
        return counts

    def run(self) -> dict:
        self.say.write(f"{SESSION_START} {os.getpid()}")
        try:
            self.validate()
            for stage, task in enumerate(self.tasks):
                self._stage = stage
                if self.manifest.done(stage):
                    self.manifest.verify(stage)
                    if self.manifest.stages[stage]["task"] != task.name:
                        raise UserError(f"stage {stage} of {self.run_dir} learned '{self.manifest.stages[stage]['task']}',"
                                        f" the config says '{task.name}'")
                    self.say(f"stage {stage} ({task.name}): finished earlier, skipped")
                    continue
                self._run_stage(stage, task)
            return self.procs.on_main(self.write_results) or self.results_on_disk()
        except (UserError, SwitchError) as err:
            self.say.write(f"error: {err}")
            if isinstance(err, TrainingDiverged):  # results.json says why the run stopped (its stages stay finished ones)
                diverged = {"stage": self._stage, "task": self.tasks[self._stage].name, "step": err.step, "error": str(err)}
                self.procs.on_main(lambda: self.write_results(diverged=diverged))
            raise
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the CLI turns it into an interrupt)
            step = f" step {self.session.step}" if self.session.step is not None else ""
            message = f"interrupted at stage {self._stage}{step} — rerun the same command to resume"
            self.say(message)  # the console too: the CLI (Typer) ends an interrupted command silently, exit code 130
            raise RunInterrupted(message) from None
        except Exception as err:
            self.say.write(f"error: {type(err).__name__}: {err}")
            raise
        finally:
            self.close()

    def _run_stage(self, stage: int, task: TaskSpec) -> None:
        clock = StageClock(self.run_dir, stage)
        self.session.step = None
        try:
            record, plan, artifacts = self.run_stage(stage, task, clock)
        except TrainingDiverged as err:
            clock.interrupted()
            raise TrainingDiverged(f"stage {stage} ({task.name}): {err}", err.step) from None
        except BaseException:
            clock.interrupted()  # the time spent so far counts when the stage resumes
            raise
        self.record(record, plan, artifacts)

    # -- one stage -------------------------------------------------------------------------
    def run_stage(self, stage: int, task: TaskSpec, clock: StageClock) -> tuple[StageRecord, ServingPlan, list[str]]:
        """One stage, top to bottom: retain, learn with the method's hooks, fit the switch, evaluate; returns its
        record, how the run is served after it and the artifacts it made."""
        seen, r = self.tasks[: stage + 1], self.config.retention
        self.say(f"stage {stage} ({task.name}): training with {self.method.name}")
        train = self.data.hold(task)
        kept = retain(train, r.fraction, r.min_count, r.seed + stage)
        ctx = StageContext(stage, [t.name for t in self.tasks], self.policy.adapter_name(stage, task.name),
                           self.run_dir / "method_state", self.data.replay(self.tasks[:stage]), lambda: kept,
                           self.base.encoder, self.method_settings, self.fitting.instruction_features, self.say)
        examples = self.method.training_examples(ctx, self.data.train_sets(seen))
        untrained = self.learner.untrained(stage, task.name)
        base_score = self.evaluation.score(task, untrained, f"{task.name}: untrained base") if untrained else None
        learned = self.learner.learn(ctx, task, examples, clock.train)
        similarity = similarity_to_earlier(ctx) if self.method.uses_similarity else None
        learned.info.update(self.training_facts(examples))
        del examples
        self.keep_retained(stage, task, kept, train)
        method_facts = self.method.after_stage(ctx, self.learner.model, learned.hooks)
        self.learner.stage_recorded(learned)
        serving = self.policy.serving(ctx, self.manifest.serving_after_last(), learned.folder, learned.started_from)
        self.data.release()
        del train
        switch = self.policy.switch(stage)
        plan = self.serving_plan(seen, serving, switch_folder(stage) if switch is not None else None)
        model = self.learner.routed_model(plan, switch)
        eval_clock = clock.start_eval()
        row = self.evaluation.row(stage, seen, model)
        upper = self.upper_bounds.of(stage, task, learned, row, model, eval_clock)
        record = StageRecord(
            stage, task.name, learned.folder, row.scores, upper.value, upper.source, base_score, row.switch_accuracy,
            row.false_rejection, row.bad, row.extra, {**learned.info, **({"method": method_facts} if method_facts else {})},
            clock.seconds(), plan.switch, serving, learned.started_from, similarity,
            dataclasses.asdict(task) if task.source_file else None,  # `eval --run` finds a task file's task by name
            self.data.checksums.get(task.name))
        return record, plan, self.artifacts(learned, serving, plan.switch, upper.artifact)

    def training_facts(self, examples: list[Example]) -> dict:
        ids = sorted({f"{ex.task}/{ex.id}" for ex in examples}) if self.progress.record_ids else None
        return {"examples": len(examples), "example_ids": ids}

    def keep_retained(self, stage: int, task: TaskSpec, kept: list[Example], train: list[Example]) -> None:
        """retained/<task>.jsonl: the only data of the task kept after its stage (and, for a switch, its calibration)."""
        self.procs.on_main(lambda: write_jsonl(
            self.run_dir / "retained" / f"{task.name}.jsonl",
            [{"task": task.name, "id": ex.id, "instruction": ex.instruction, "input": ex.input, "answer": ex.answer}
             for ex in kept]))
        self.policy.retained(stage, task, kept, train)

    def serving_plan(self, seen: list[TaskSpec], serving: dict[str, str], switch: str | None) -> ServingPlan:
        return ServingPlan(self.method.name, self.policy.routing, self.learner.kind, [t.name for t in seen],
                           {t.name: self.learner.folder(i) for i, t in enumerate(seen)}, serving, switch,
                           dataclasses.asdict(self.base.prompt))

    def artifacts(self, learned: LearnedStage, serving: dict[str, str], switch: str | None,
                  upper: str | None) -> list[str]:
        """The folders the stage made, checksummed in its record: its own, those serving tasks besides the stages'
        own (eproj's composites), its switch, its upper bound adapter."""
        own = {self.learner.folder(i) for i in range(len(self.tasks))}
        extra = sorted({rel for rel in serving.values() if rel not in own})
        return [learned.folder, *extra, *([switch] if switch else []), *([upper] if upper else [])]

    def record(self, record: StageRecord, plan: ServingPlan, artifacts: list[str]) -> None:
        def finish():
            self.manifest.record(record.entry(), artifacts, plan.to_dict())
            self.write_results()
            draw_loss_curves(self.run_dir)
            draw_task_similarity(self.run_dir, self.manifest.stages)

        self.procs.on_main(finish)
        if not self.procs.is_main:
            self.manifest = Manifest(self.run_dir)  # as rank 0 wrote it
        names = [t.name for t in self.tasks]
        self.say(f"stage {record.stage} ({record.task}): scores "
                 f"{', '.join(f'{names[j]}={v:.3f}' for j, v in enumerate(record.scores))}")
        for low in below_base([record.entry()], plan.routed):
            self.say(f"warning: stage {record.stage} ({record.task}): its adapter scores {low['score']:.3f} on its own "
                     f"task, no better than the untrained base ({low['base_model']:.3f}); check train.lr, "
                     f"train.epochs and the data")

    # -- results ---------------------------------------------------------------------------
    def write_results(self, diverged: dict | None = None) -> dict:
        return write_results(self.run_dir, self.manifest.stages, self.method, self.config.to_dict(), self.tasks, diverged)

    def results_on_disk(self) -> dict:
        """results.json as rank 0 wrote it (what the other ranks of a multi-process run return)."""
        return json.loads((self.run_dir / "results.json").read_text(encoding="utf-8"))


def learner_type(method, config: RunConfig) -> type:
    """The learner class of a run of `method`, checked against the config before anything is written."""
    if not method.full_finetune:
        return LoraLearner
    if config.load_in_4bit:
        raise UserError("full-sft trains every weight: it cannot train a 4-bit model (use a LoRA method for QLoRA)")
    return FullFinetuneLearner
