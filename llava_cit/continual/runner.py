"""The continual runner: for each stage, train -> save adapter -> retain -> (re)train switch ->
evaluate every seen task -> update results.json. Resumable; extending the task list trains
only the new stages and never touches finished artifacts.

Before anything trains, every stage's data is opened and checked (llava_cit.continual.data_validation).
One process writes a run directory at a time (a lock). A stage killed anywhere resumes with the same
command: from its newest complete Trainer checkpoint, or from its published adapter.

Under `accelerate launch` (N processes) every rank trains, rank 0 alone writes the run directory (config,
adapters, retained data, switch, predictions, manifest, results), and evaluation is sharded across the ranks
and merged (llava_cit.train.distributed): the run directory is the one a single process writes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import PeftModel

from llava_cit.config import RunConfig
from llava_cit.continual.data_validation import validate_data
from llava_cit.continual.loss_curves import draw_loss_curves
from llava_cit.continual.manifest import Manifest
from llava_cit.continual.matrix_evaluation import MatrixEvaluation
from llava_cit.continual.results import below_base, write_results
from llava_cit.continual.run_directory import open_run_directory, task_files
from llava_cit.continual.similarity_plot import draw_task_similarity
from llava_cit.continual.stage_clock import PhaseTimer
from llava_cit.continual.stage_training import StageTraining, remove_if_empty
from llava_cit.continual.switch_fitting import SwitchFitting
from llava_cit.data.collation import Encoder
from llava_cit.data.example import Example
from llava_cit.data.prompt_settings import PromptSettings
from llava_cit.data.sources import load_source
from llava_cit.evaluation.scoring import check_metric
from llava_cit.methods.base import StageContext
from llava_cit.methods.registry import get_method
from llava_cit.methods.task_similarity import similarity_to_earlier
from llava_cit.models.loading import LoadedModel, load_model
from llava_cit.tasks.registry import resolve_task
from llava_cit.tasks.spec import TaskSpec
from llava_cit.train.distributed import Processes
from llava_cit.train.lora_targets import describe_trainable
from llava_cit.train.pretraining import pretrained_base
from llava_cit.train.trainer import TrainingDiverged, add_adapter, load_hooks_state
from llava_cit.util.errors import RunInterrupted, UserError
from llava_cit.util.run_log import SESSION_START, RunLog
from switch import retain
from switch.errors import SwitchError
from switch.retention import read_jsonl, write_jsonl

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Callbacks the CLI plugs a rich display into; silent by default."""

    message: callable = field(default=lambda text: None)
    show_trainer_bars: bool = False
    trainer_callbacks: list = field(default_factory=list)  # extra transformers TrainerCallbacks
    record_ids: bool = False  # keep each stage's training example ids in the manifest (tests, audits)
    console: object | None = None  # a rich Console: evaluation progress bars


class TrainSets(Mapping):
    """Each task's training examples, loaded when asked for and not kept: a stage never holds earlier
    stages' training sets in memory (images are opened batch by batch anyway)."""

    def __init__(self, runner: ContinualRunner, tasks: list[TaskSpec]):
        self.runner, self.tasks = runner, {t.name: t for t in tasks}

    def __getitem__(self, name: str) -> list[Example]:
        return self.runner.train_set(self.tasks[name])

    def __iter__(self):
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)


class ContinualRunner(StageTraining, SwitchFitting, MatrixEvaluation):
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
        if self.method.full_finetune and config.load_in_4bit:
            raise UserError("full-sft trains every weight: it cannot train a 4-bit model (use a LoRA method for QLoRA)")
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
        self._loaded = loaded
        self._peft: PeftModel | None = None
        self._full_stage: int | None = None  # full-sft: the stage whose weights the in-memory model holds
        self._train: tuple[str, list[Example]] | None = None  # the one training set held (the current stage's)
        self._test: dict[str, list[Example]] = {}
        self._prompt: PromptSettings | None = None

    def close(self) -> None:
        """Release the run directory's lock (also released by the OS if the process dies)."""
        if self._lock is not None:
            self._lock.release()

    # -- model, prompt and data ------------------------------------------------------------
    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            c = self.config
            if c.pretrain.task:
                self._loaded = pretrained_base(c, self.say)
            else:
                self._loaded = load_model(c.model, c.dtype, c.device_map, c.load_in_4bit, c.trust_remote_code, c.seed)
            if c.device_map is None and not c.load_in_4bit and torch.cuda.is_available():
                self._loaded.model.to("cuda")
        return self._loaded

    def budget(self, task_name: str | None) -> int:
        """A task's own generation budget (capped by eval.max_new_tokens when set)."""
        task = next((t for t in self.tasks if t.name == task_name), None)
        own = task.max_new_tokens if task is not None else max(t.max_new_tokens for t in self.tasks)
        return min(own, self.config.eval.max_new_tokens) if self.config.eval.max_new_tokens else own

    @property
    def prompt(self) -> PromptSettings:
        """The run's prompt, stored in prompt.json when the run starts and used as stored from then on."""
        if self._prompt is None:
            stored = PromptSettings.load(self.run_dir)
            current = PromptSettings.from_config(self.config, self.loaded.is_vision,
                                                 {t.name: self.budget(t.name) for t in self.tasks})
            if stored is not None:
                current.system, current.image_aspect_ratio = stored.system, stored.image_aspect_ratio
                current.max_new_tokens = {**current.max_new_tokens, **stored.max_new_tokens}
            if stored != current:
                self.procs.on_main(lambda: current.save(self.run_dir))
            self._prompt = current
        return self._prompt

    @property
    def encoder(self) -> Encoder:
        return self.prompt.encoder(self.loaded)

    def train_set(self, task: TaskSpec) -> list[Example]:
        if self._train is not None and self._train[0] == task.name:
            return self._train[1]
        examples = load_source(task.train, task.name, "train", self.config.train_limit, self.config.seed, task.suffix)
        if task is self.tasks[self._stage]:
            self._train = (task.name, examples)
        return examples

    def test_set(self, task: TaskSpec) -> list[Example]:
        if task.name not in self._test:
            self._test[task.name] = load_source(task.test, task.name, "test", self.config.eval.limit,
                                                self.config.seed, task.suffix, keep_bad=True)
        return self._test[task.name]

    def adapter_rel(self, stage: int) -> str:
        """Where stage `stage` saves what it learned: a LoRA adapter, or (full-sft) the whole model."""
        folder = "models" if self.method.full_finetune else "adapters"
        return f"{folder}/{stage:02d}-{self.tasks[stage].name}"

    # -- the stages ------------------------------------------------------------------------
    _stage = 0

    def validate(self) -> dict[str, int]:
        """Open every unfinished stage's data (and every seen task's test set) before anything trains."""
        pending = [t for i, t in enumerate(self.tasks) if not self.manifest.done(i)]
        if not pending:
            return {}
        tokenizer = None
        if self.config.model.startswith("tiny-"):
            from llava_cit.models.tiny import tiny_tokenizer

            tokenizer = tiny_tokenizer(self.config.model)

        def load(source, task, split, limit, seed, suffix):
            return load_source(source, task, split, limit, seed, suffix, keep_bad=(split == "test"))

        counts = validate_data(pending, self.config, tokenizer, load)
        self.say(f"data checked: {', '.join(f'{k} {v}' for k, v in counts.items())}")
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
            step = f" step {self._step}" if self._step is not None else ""
            message = f"interrupted at stage {self._stage}{step} — rerun the same command to resume"
            self.say(message)  # the console too: the CLI (Typer) ends an interrupted command silently, exit code 130
            raise RunInterrupted(message) from None
        except Exception as err:
            self.say.write(f"error: {type(err).__name__}: {err}")
            raise
        finally:
            self.close()

    def _replay(self, stage: int) -> dict[str, list[Example]]:
        replay = {}
        for task in self.tasks[:stage]:
            ids = {row["id"] for row in read_jsonl(self.run_dir / "retained" / f"{task.name}.jsonl")}
            replay[task.name] = [ex for ex in self.train_set(task) if ex.id in ids]
        return replay

    _step: int | None = None  # the last optimizer step the current stage's training reached (for messages)

    def _run_stage(self, stage: int, task: TaskSpec) -> None:
        timings = self.run_dir / "timings" / f"stage-{stage:02d}.json"
        clock = PhaseTimer(timings, "train")
        self._step = None
        try:
            self._stage_work(stage, task, timings, clock)
        except TrainingDiverged as err:
            clock.tick(force=True)
            raise TrainingDiverged(f"stage {stage} ({task.name}): {err}", err.step) from None
        except BaseException:
            clock.tick(force=True)  # the time spent so far counts when the stage resumes
            raise

    def _stage_work(self, stage: int, task: TaskSpec, timings: Path, clock: PhaseTimer) -> None:
        c = self.config
        self.say(f"stage {stage} ({task.name}): training with {self.method.name}")
        names = [t.name for t in self.tasks]
        train = TrainSets(self, self.tasks[: stage + 1])
        # a routed method serves each adapter under its task's name: train it under that name too, so
        # evaluation finds it in memory instead of loading a second copy from disk
        adapter = task.name if self.method.routes else f"s{stage:02d}-{task.name}"
        kept = retain(self.train_set(task), c.retention.fraction, c.retention.min_count, c.retention.seed + stage)
        ctx = StageContext(stage, names, adapter, self.run_dir / "method_state", self._replay(stage), lambda: kept,
                           self.encoder, self.method_settings, self._instruction_features, self.say)
        examples = self.method.training_examples(ctx, train)
        # full-sft overwrites the base itself: after stage 0 there is no untrained base left to score
        base_score = None if (self.method.full_finetune and stage > 0) else self._base_score(task)
        rel = self.adapter_rel(stage)
        start = None if self.method.full_finetune else self.method.start_from(ctx)
        fresh = start is None
        hooks = None  # the stage's training hooks, handed to after_stage (None: it did not train in this process)
        if self.method.full_finetune:
            train_info = self._train_full(stage, task, examples, clock)
        elif (self.run_dir / rel).is_dir():  # trained and published before a crash: never retrain or rewrite it
            self.say(f"stage {stage} ({task.name}): adapter already saved, reusing {rel}")
            self._use_adapter(adapter, rel)
            train_info = {"reused_saved_adapter": True}
            hooks = self.method.training_hooks(ctx)  # with the state training left them in, where they keep one
            if not load_hooks_state(hooks, self.hooks_state_path(rel)):
                hooks = None
        else:
            if not fresh:
                self.say(f"stage {stage} ({task.name}): starting from {self.adapter_rel(start)}")
                model = self._use_adapter(adapter, self.adapter_rel(start), trainable=True)
                self.method.before_training(ctx, model)
            else:
                torch.manual_seed(c.seed + stage)  # a fresh adapter's initial weights depend on the seed and stage only
                model = self._peft = add_adapter(self._peft or self.loaded.model, adapter, c.lora, self.loaded.is_vision)
                self.say(f"stage {stage} ({task.name}): {describe_trainable(model, adapter, c.lora)}")
                self.method.before_training(ctx, model)
            hooks = self.method.training_hooks(ctx)
            train_info = self._train_lora(model, adapter, stage, task, examples, rel, clock, hooks=hooks)
        own_ids = {ex.id for ex in self.train_set(task)}
        solo = fresh and not self.method.full_finetune and {ex.id for ex in examples} == own_ids
        similarity = similarity_to_earlier(ctx) if self.method.uses_similarity else None
        train_info["examples"] = len(examples)
        train_info["example_ids"] = sorted({f"{ex.task}/{ex.id}" for ex in examples}) if self.progress.record_ids \
            else None
        del examples
        train_seconds = clock.stop()

        self.procs.on_main(lambda: write_jsonl(
            self.run_dir / "retained" / f"{task.name}.jsonl",
            [{"task": task.name, "id": ex.id, "instruction": ex.instruction, "input": ex.input, "answer": ex.answer}
             for ex in kept]))
        if self.method.routes and c.switch.reject and c.switch.reject_calibration:
            self.procs.on_main(lambda: self._write_calibration(stage, task, kept))
        method_info = self.method.after_stage(ctx, self._model(), hooks)
        self.procs.on_main(lambda: self.hooks_state_path(rel).unlink(missing_ok=True))  # what it held is in method_state
        self.procs.on_main(lambda: remove_if_empty(self.hooks_state_path(rel).parent))
        if method_info:
            train_info["method"] = method_info
        previous = self.manifest.stages[-1].get("serving") or {} if self.manifest.stages else {}
        serving = self.method.serving(ctx, previous, rel, self.adapter_rel(start) if start is not None else None)
        self._train = None  # the stage's training set is not needed any more
        own_adapters = {self.adapter_rel(i) for i in range(len(self.tasks))}
        artifacts = [rel] + sorted({r for r in serving.values() if r not in own_adapters})  # e.g. eproj's composites
        switch = None
        if self.method.routes and stage > 0:
            switch = self._fit_switch(stage)
            artifacts.append(f"switch/stage-{stage:02d}")

        eval_clock = PhaseTimer(timings, "eval")
        try:
            evaluation = self._evaluate(stage, switch, serving)
            upper, upper_source, upper_rel = self._upper_bound(stage, task, solo, evaluation["scores"], eval_clock,
                                                               serving)
        except BaseException:
            eval_clock.tick(force=True)
            raise
        if upper_rel:
            artifacts.append(upper_rel)
        eval_seconds = eval_clock.stop()
        entry = {
            "stage": stage, "task": task.name, "adapter": rel, "scores": evaluation["scores"], "upper_bound": upper,
            "upper_bound_source": upper_source, "base_score": base_score,
            "switch_accuracy": evaluation["switch_accuracy"], "false_rejection_rate": evaluation["false_rejection"],
            "bad_samples": evaluation["bad"], "extra_metrics": evaluation["extra"], "train": train_info,
            "seconds": {"train": train_seconds, "eval": eval_seconds, "stage": train_seconds + eval_seconds},
            "switch": f"switch/stage-{stage:02d}" if switch else None,
            "serving": serving, "started_from": self.adapter_rel(start) if start is not None else None,
            "task_similarity": similarity,
            # a task file's task as trained: `eval --benchmark <task> --run RUN` finds it without the file's path
            "task_spec": dataclasses.asdict(task) if task.source_file else None,
        }

        def finish():
            self.manifest.record(entry, artifacts)
            self.write_results()
            draw_loss_curves(self.run_dir)
            draw_task_similarity(self.run_dir, self.manifest.stages)

        self.procs.on_main(finish)
        if not self.procs.is_main:
            self.manifest = Manifest(self.run_dir)  # as rank 0 wrote it
        self.say(f"stage {stage} ({task.name}): scores "
                 f"{', '.join(f'{names[j]}={v:.3f}' for j, v in enumerate(evaluation['scores']))}")
        for low in below_base([entry], self.method.routes):
            self.say(f"warning: stage {stage} ({task.name}): its adapter scores {low['score']:.3f} on its own task, no "
                     f"better than the untrained base ({low['base_model']:.3f}); check train.lr, train.epochs and the data")

    # -- results ---------------------------------------------------------------------------
    def write_results(self, diverged: dict | None = None) -> dict:
        return write_results(self.run_dir, self.manifest.stages, self.method, self.config.to_dict(), self.tasks, diverged)

    def results_on_disk(self) -> dict:
        """results.json as rank 0 wrote it (what the other ranks of a multi-process run return)."""
        import json

        return json.loads((self.run_dir / "results.json").read_text(encoding="utf-8"))
