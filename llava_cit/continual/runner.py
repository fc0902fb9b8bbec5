"""The continual runner: for each stage, train -> save adapter -> retain -> (re)train switch ->
evaluate every seen task -> update results.json. Resumable; extending the task list trains
only the new stages and never touches finished artifacts.

Before anything trains, every stage's data is opened and checked (llava_cit.continual.data_validation).
One process writes a run directory at a time (a lock). A stage killed anywhere resumes with the same
command: from its newest complete Trainer checkpoint, or from its published adapter.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import PeftModel

from llava_cit.atomic import publish_dir, staging_dir
from llava_cit.collation import Encoder
from llava_cit.config import RunConfig
from llava_cit.continual.data_validation import validate_data
from llava_cit.continual.loss_curves import draw_loss_curves
from llava_cit.continual.manifest import Manifest
from llava_cit.continual.results import write_results
from llava_cit.continual.run_directory import open_run_directory
from llava_cit.continual.similarity_plot import draw_task_similarity
from llava_cit.continual.stage_clock import PhaseTimer
from llava_cit.continual.train_log import TRAIN_LOG, TrainLogCallback
from llava_cit.data.example import Example
from llava_cit.data.sources import load_source
from llava_cit.errors import UserError
from llava_cit.methods.base import StageContext
from llava_cit.methods.registry import get_method
from llava_cit.methods.task_similarity import similarity_to_earlier
from llava_cit.models.loading import LoadedModel, load_model
from llava_cit.pretraining import pretrained_base
from llava_cit.progress_display import ItemProgress
from llava_cit.prompt_settings import PromptSettings
from llava_cit.routing import generate_routed, switch_problem
from llava_cit.run_log import RunLog
from llava_cit.scoring import check_metric, mean_defined, score_samples
from llava_cit.tasks.registry import resolve_task
from llava_cit.tasks.spec import TaskSpec
from llava_cit.training import add_adapter, train_adapter, train_full
from switch import SwitchNetwork, retain
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


class ContinualRunner:
    def __init__(self, config: RunConfig, run_dir: str | Path, force: bool = False, progress: Progress | None = None,
                 config_dir: Path | None = None, loaded: LoadedModel | None = None):
        self.config, self.run_dir = config, Path(run_dir)
        self.progress = progress or Progress()
        self.method = get_method(config.method, config_dir)
        self.tasks = [resolve_task(entry, config_dir) for entry in config.tasks]
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise UserError(f"a task appears twice in the sequence: {names}")
        if self.method.full_finetune and config.load_in_4bit:
            raise UserError("full-sft trains every weight: it cannot train a 4-bit model (use a LoRA method for QLoRA)")
        for task in self.tasks:  # a metric that cannot run fails now, not after the first stage's training
            check_metric(task)
        self._lock = open_run_directory(self.run_dir, config.to_dict(), force, self.progress.message)
        self.say = RunLog(self.run_dir / "run.log", echo=self.progress.message)
        self.manifest = Manifest(self.run_dir)
        self._loaded = loaded
        self._peft: PeftModel | None = None
        self._full_stage: int | None = None  # full-sft: the stage whose weights the in-memory model holds
        self._train: tuple[str, list[Example]] | None = None  # the one training set held (the current stage's)
        self._test: dict[str, list[Example]] = {}
        self._prompt: PromptSettings | None = None

    def close(self) -> None:
        """Release the run directory's lock (also released by the OS if the process dies)."""
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
                current.save(self.run_dir)
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

    def _load_full(self, stage: int) -> None:
        """full-sft: continue from the whole model saved by stage `stage` (after a restart)."""
        c = self.config
        self._loaded = load_model(str(self.run_dir / self.adapter_rel(stage)), c.dtype, c.device_map, c.load_in_4bit)
        if c.device_map is None and torch.cuda.is_available():
            self._loaded.model.to("cuda")
        self._full_stage = stage

    def _use_adapter(self, name: str, rel: str, trainable: bool = False) -> PeftModel:
        path = self.run_dir / rel
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self.loaded.model, path, adapter_name=name, is_trainable=trainable)
        elif name not in self._peft.peft_config:
            self._peft.load_adapter(path, adapter_name=name, is_trainable=trainable)
        return self._peft

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
            return self.write_results()
        except (UserError, SwitchError) as err:
            self.say.write(f"error: {err}")
            raise
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

    def _callbacks(self, stage: int, task: TaskSpec, clock: PhaseTimer, kind: str = "adapter") -> list:
        return [TrainLogCallback(self.run_dir / TRAIN_LOG, stage, task.name, self.method.name, clock, kind),
                *self.progress.trainer_callbacks]

    def _train_lora(self, model: PeftModel, adapter: str, stage: int, task: TaskSpec, examples: list[Example],
                    rel: str, clock: PhaseTimer, kind: str = "adapter", hooks=None) -> dict:
        """Train `adapter` on `examples` and publish it at `rel` (atomically; never rewritten)."""
        c = self.config
        checkpoints = self.run_dir / "checkpoints" / Path(rel).name if kind == "adapter" else \
            self.run_dir / "checkpoints" / f"{kind}-{Path(rel).name}"
        info = train_adapter(model, adapter, examples, self.encoder, c.train, c.lora, checkpoints, seed=c.seed,
                             progress=self.progress.show_trainer_bars, callbacks=self._callbacks(stage, task, clock, kind),
                             log_dir=self.run_dir / "logs" / (Path(rel).name if kind == "adapter" else f"{kind}-{Path(rel).name}"),
                             run_name=f"{task.name}-{self.method.name}", hooks=hooks)
        staging = staging_dir(self.run_dir / rel)
        model.save_pretrained(staging, selected_adapters=[adapter])
        publish_dir(next(p.parent for p in staging.rglob("adapter_config.json")), self.run_dir / rel)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(checkpoints, ignore_errors=True)  # Trainer checkpoints (pickled optimizer states) go
        return info

    def _run_stage(self, stage: int, task: TaskSpec) -> None:
        timings = self.run_dir / "timings" / f"stage-{stage:02d}.json"
        clock = PhaseTimer(timings, "train")
        try:
            self._stage_work(stage, task, timings, clock)
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
                           self.encoder, dict(c.method_args), self._instruction_features, self.say)
        examples = self.method.training_examples(ctx, train)
        # full-sft overwrites the base itself: after stage 0 there is no untrained base left to score
        base_score = None if (self.method.full_finetune and stage > 0) else self._base_score(task)
        rel = self.adapter_rel(stage)
        start = None if self.method.full_finetune else self.method.start_from(ctx)
        fresh = start is None
        if self.method.full_finetune:
            train_info = self._train_full(stage, task, examples, clock)
        elif (self.run_dir / rel).is_dir():  # trained and published before a crash: never retrain or rewrite it
            self.say(f"stage {stage} ({task.name}): adapter already saved, reusing {rel}")
            self._use_adapter(adapter, rel)
            train_info = {"reused_saved_adapter": True}
        else:
            if not fresh:
                self.say(f"stage {stage} ({task.name}): starting from {self.adapter_rel(start)}")
                model = self._use_adapter(adapter, self.adapter_rel(start), trainable=True)
                self.method.before_training(ctx, model)
            else:
                torch.manual_seed(c.seed + stage)  # a fresh adapter's initial weights depend on the seed and stage only
                model = self._peft = add_adapter(self._peft or self.loaded.model, adapter, c.lora, self.loaded.is_vision)
                self.method.before_training(ctx, model)
            train_info = self._train_lora(model, adapter, stage, task, examples, rel, clock,
                                          hooks=self.method.training_hooks(ctx))
        own_ids = {ex.id for ex in self.train_set(task)}
        solo = fresh and not self.method.full_finetune and {ex.id for ex in examples} == own_ids
        similarity = similarity_to_earlier(ctx) if self.method.uses_similarity else None
        train_info["examples"] = len(examples)
        train_info["example_ids"] = sorted({f"{ex.task}/{ex.id}" for ex in examples}) if self.progress.record_ids \
            else None
        del examples
        train_seconds = clock.stop()

        write_jsonl(self.run_dir / "retained" / f"{task.name}.jsonl",
                    [{"task": task.name, "id": ex.id, "instruction": ex.instruction, "input": ex.input,
                      "answer": ex.answer} for ex in kept])
        method_info = self.method.after_stage(ctx, self._model())
        if method_info:
            train_info["method"] = method_info
        previous = self.manifest.stages[-1].get("serving") or {} if self.manifest.stages else {}
        serving = self.method.serving(ctx, previous, rel, self.adapter_rel(start) if start is not None else None)
        self._train = None  # the stage's training set is not needed any more
        artifacts = [rel]
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
        }
        self.manifest.record(entry, artifacts)
        self.write_results()
        draw_loss_curves(self.run_dir)
        draw_task_similarity(self.run_dir, self.manifest.stages)
        self.say(f"stage {stage} ({task.name}): scores "
                 f"{', '.join(f'{names[j]}={v:.3f}' for j, v in enumerate(evaluation['scores']))}")

    def _train_full(self, stage: int, task: TaskSpec, examples: list[Example], clock: PhaseTimer) -> dict:
        """full-sft: train every weight on this stage's examples and save the whole model (never rewritten)."""
        rel = self.adapter_rel(stage)
        if (self.run_dir / rel).is_dir():
            self.say(f"stage {stage} ({task.name}): model already saved, reusing {rel}")
            self._load_full(stage)
            return {"reused_saved_model": True}
        if stage > 0 and self._full_stage != stage - 1:
            self._load_full(stage - 1)
        c = self.config
        checkpoints = self.run_dir / "checkpoints" / Path(rel).name
        info = train_full(self.loaded.model, examples, self.encoder, c.train, checkpoints, seed=c.seed,
                          progress=self.progress.show_trainer_bars, callbacks=self._callbacks(stage, task, clock),
                          log_dir=self.run_dir / "logs" / Path(rel).name, run_name=f"{task.name}-{self.method.name}")
        staging = staging_dir(self.run_dir / rel)
        if c.dtype in ("bfloat16", "bf16", "float16", "fp16"):  # saved in the precision the run loads it in
            self.loaded.model.to(torch.bfloat16 if c.dtype.startswith("b") else torch.float16)
        self.loaded.model.save_pretrained(staging)
        self.loaded.processor.save_pretrained(staging)
        publish_dir(staging, self.run_dir / rel)
        shutil.rmtree(checkpoints, ignore_errors=True)
        self._full_stage = stage
        return info

    def _fit_switch(self, stage: int) -> SwitchNetwork:
        s = self.config.switch
        rows = [row for t in self.tasks[: stage + 1] for row in read_jsonl(self.run_dir / "retained" / f"{t.name}.jsonl")]
        switch = SwitchNetwork(s.extractor, hidden=s.hidden, layer=s.layer, pooling=s.pooling, epochs=s.epochs,
                               lr=s.lr, reject=s.reject, seed=self.config.seed, router=self.method.router)
        switch.fit([r["instruction"] for r in rows], [r["task"] for r in rows], [r["input"] for r in rows])
        switch.save(self.run_dir / "switch" / f"stage-{stage:02d}")
        self.say(f"stage {stage}: switch fitted on {len(rows)} retained instructions "
                 f"({switch.parameter_count} parameters, rejection {'on' if s.reject else 'off'})")
        return switch

    def _instruction_features(self, texts: list[str]) -> torch.Tensor:
        """Features of instructions from the switch's extractor (task similarity, for methods that ask)."""
        from switch import FeatureExtractor

        if getattr(self, "_extractor", None) is None:
            s = self.config.switch
            self._extractor = FeatureExtractor(s.extractor, layer=s.layer, pooling=s.pooling, seed=self.config.seed)
        return self._extractor(texts)

    # -- evaluation ------------------------------------------------------------------------
    def _model(self):
        return self._peft if self._peft is not None else self.loaded.model

    def _answer(self, examples: list[Example], routes: list[str | None], budget_task: str, label: str):
        """Answers of one task's examples (with that task's budget) from the adapters `routes`."""
        return self._answer_with_budgets(examples, routes, [budget_task] * len(examples), None, label)

    def _routed_adapters(self, serving: dict[str, str]) -> dict[str, str]:
        """Load every adapter that serves a seen task; {task: the loaded adapter's name}. A stage's own adapter
        is loaded under the name it was trained with (the task's), any other under its path."""
        adapter_of = {}
        own = {self.adapter_rel(i): t.name for i, t in enumerate(self.tasks)}
        for t, rel in serving.items():
            name = own.get(rel) or rel.replace("/", "__").replace(".", "_")
            self._use_adapter(name, rel)
            adapter_of[t] = name
        return adapter_of

    def _evaluate(self, stage: int, switch: SwitchNetwork | None, serving: dict[str, str]) -> dict:
        seen = self.tasks[: stage + 1]
        tests = {t.name: self.test_set(t) for t in seen}
        flat = [(t, ex) for t in seen for ex in tests[t.name]]
        examples = [ex for _, ex in flat]
        confidences: list[float | None] = [None] * len(flat)
        check = None
        if self.method.routes:
            adapter_of = self._routed_adapters(serving)
            if switch is None:
                routes = [seen[0].name] * len(flat)
            else:
                check = switch_problem
                routable = [i for i, ex in enumerate(examples) if not ex.meta.get("error") and check(ex) is None]
                predicted = switch.predict([examples[i].instruction for i in routable], [examples[i].input for i in routable])
                routes = [None] * len(flat)
                for i, (route, confidence) in zip(routable, predicted):
                    routes[i], confidences[i] = route, confidence
            served = [adapter_of.get(r) if r is not None else None for r in routes]
        else:
            if not self.method.full_finetune:  # full-sft: the trained model itself answers
                name = f"s{stage:02d}-{self.tasks[stage].name}"
                self._use_adapter(name, self.adapter_rel(stage))
                self._peft.set_adapter(name)
            routes = [self._peft.active_adapter if self._peft is not None else None] * len(flat)
            served = routes
        # a non-routed model answers each test set with that task's own budget; a routed one, the routed task's
        budget_routes = routes if self.method.routes else [t.name for t, _ in flat]
        outcomes = self._answer_with_budgets(examples, served, budget_routes, check, f"stage {stage} evaluation")
        scores, extra, bad, rejected, correct_routes = [], {}, {}, {}, 0
        for t in seen:
            indices = [i for i, (u, _) in enumerate(flat) if u is t]
            values = self._per_sample(t, [examples[i] for i in indices], [outcomes[i] for i in indices])
            rows = []
            for i, value in zip(indices, values):
                ex = examples[i]
                error = ex.meta.get("error") or outcomes[i][1]
                rows.append({"id": ex.id, "question": ex.turns[-1][0], "prediction": outcomes[i][0], "gold": ex.answer,
                             **value, "error": error, "routed_task": routes[i] if self.method.routes else None,
                             "confidence": confidences[i]})
                correct_routes += self.method.routes and routes[i] == t.name
            write_jsonl(self.run_dir / "predictions" / f"stage-{stage:02d}" / f"{t.name}.jsonl", rows)
            scores.append(sum(r["score"] for r in rows) / len(rows))
            bad[t.name] = sum(r["error"] is not None for r in rows)
            if t.extra_metrics:
                extra[t.name] = {m: mean_defined([r.get(m) for r in rows]) for m in t.extra_metrics}
            if switch is not None and switch.reject:
                rejected[t.name] = sum(routes[i] is None and outcomes[i][1] is None for i in indices) / len(indices)
        return {
            "scores": scores, "extra": extra, "bad": bad,
            "switch_accuracy": correct_routes / len(flat) if (self.method.routes and switch is not None) else None,
            "false_rejection": rejected or None,
        }

    def _answer_with_budgets(self, examples, routes, budget_routes, check, label):
        """Generate with `routes` (the adapters that answer), each example with the budget of the task
        `budget_routes[i]`; generate_routed groups the examples by (adapter, budget)."""
        with ItemProgress(label, len(examples), self.progress.console, self.say) as bar:
            return generate_routed(self._model(), self.encoder, examples, routes,
                                   [self.budget(r) for r in budget_routes], self.config.eval.batch_size, check=check,
                                   progress=bar.advance)

    @staticmethod
    def _per_sample(task: TaskSpec, examples: list[Example], outcomes) -> list[dict]:
        """Each example's scores; a sample that could not be served scores 0 (scored as wrong)."""
        answered = [i for i, (_, error) in enumerate(outcomes) if error is None and not examples[i].meta.get("error")]
        values = dict(zip(answered, score_samples(task, [outcomes[i][0] for i in answered],
                                                  [examples[i] for i in answered])))
        return [values.get(i, {"score": 0.0}) for i in range(len(examples))]

    def _score(self, task: TaskSpec, examples: list[Example], outcomes) -> float:
        return sum(v["score"] for v in self._per_sample(task, examples, outcomes)) / len(examples)

    def _upper_bound(self, stage: int, task: TaskSpec, solo: bool, row: list[float], clock: PhaseTimer,
                     serving: dict[str, str]):
        """UB: the score of the task's own adapter trained on it alone, the same denominator for every method.
        Returns (value, where it comes from, an artifact to checksum or None)."""
        source = self.config.eval.upper_bound_from
        if source:
            path = Path(source) / "results.json"
            if not path.is_file():
                raise UserError(f"eval.upper_bound_from: {path} not found")
            value = json.loads(path.read_text(encoding="utf-8")).get("upper_bound", {}).get(task.name)
            if value is None:
                raise UserError(f"eval.upper_bound_from: {path} has no upper bound for task '{task.name}'")
            return value, f"{source} (upper_bound of '{task.name}')", None
        tests = self.test_set(task)
        if self.method.routes:  # the task's own adapter with every query routed to it (oracle routing)
            if stage == 0:
                return row[stage], "own adapter (oracle routing)", None
            own = self._routed_adapters(serving)[task.name]
            return self._score(task, tests, self._answer(tests, [own] * len(tests), task.name, "upper bound")), \
                "own adapter (oracle routing)", None
        if solo:
            return row[stage], "this stage's adapter (trained on the task alone)", None
        if self.method.full_finetune:
            return None, "not available: full-sft keeps no untouched base after stage 0 (set eval.upper_bound_from)", None
        rel = f"upper_bound/{stage:02d}-{task.name}"
        name = f"solo-{task.name}"
        if (self.run_dir / rel).is_dir():
            self._use_adapter(name, rel)
        else:
            self.say(f"stage {stage} ({task.name}): training the task's own adapter alone (the upper bound)")
            torch.manual_seed(self.config.seed + stage)
            model = add_adapter(self._peft or self.loaded.model, name, self.config.lora, self.loaded.is_vision)
            self._peft = model
            self._train_lora(model, name, stage, task, self.train_set(task), rel, clock, kind="upper_bound")
            self._train = None
        value = self._score(task, tests, self._answer(tests, [name] * len(tests), task.name, "upper bound"))
        self._peft.delete_adapter(name)
        return value, f"{rel} (a fresh adapter trained on the task alone)", rel

    def _base_score(self, task: TaskSpec) -> float:
        """The bare base model's score on a task before any adapter learns it (the 'untrained' reference)."""
        tests = self.test_set(task)
        return self._score(task, tests, self._answer(tests, [None] * len(tests), task.name, f"{task.name}: untrained base"))

    # -- results ---------------------------------------------------------------------------
    def write_results(self) -> dict:
        return write_results(self.run_dir, self.manifest.stages, self.method, self.config.to_dict(), self.tasks)
