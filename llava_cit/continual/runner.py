"""The continual runner: for each stage, train -> save adapter -> retain -> (re)train switch ->
evaluate every seen task -> update results.json. Resumable; extending the task list trains
only the new stages and never touches finished artifacts."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from peft import PeftModel

from llava_cit.atomic import publish_dir, staging_dir, write_json, write_text
from llava_cit.collation import Encoder
from llava_cit.config import RunConfig
from llava_cit.continual.manifest import Manifest
from llava_cit.continual.metrics import average, backward_transfer, relative_gain
from llava_cit.data.example import Example
from llava_cit.data.sources import load_source
from llava_cit.errors import UserError
from llava_cit.generation import BASE, generate
from llava_cit.methods.registry import get_method
from llava_cit.models.loading import LoadedModel, load_model
from llava_cit.pretraining import pretrained_base
from llava_cit.scoring import check_metric, mean_defined, score_all, score_samples
from llava_cit.tasks.registry import resolve_task
from llava_cit.tasks.spec import TaskSpec
from llava_cit.training import add_adapter, train_adapter, train_full
from switch import SwitchNetwork, retain
from switch.retention import read_jsonl, write_jsonl

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Callbacks the CLI plugs a rich display into; silent by default."""

    message: callable = field(default=lambda text: None)
    show_trainer_bars: bool = False
    trainer_callbacks: list = field(default_factory=list)  # extra transformers TrainerCallbacks
    record_ids: bool = False  # keep each stage's training example ids in the manifest (tests, audits)


class ContinualRunner:
    def __init__(self, config: RunConfig, run_dir: str | Path, force: bool = False, progress: Progress | None = None,
                 config_dir: Path | None = None, loaded: LoadedModel | None = None):
        self.config, self.run_dir = config, Path(run_dir)
        self.progress = progress or Progress()
        self.method = get_method(config.method)
        self.tasks = [resolve_task(entry, config_dir) for entry in config.tasks]
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise UserError(f"a task appears twice in the sequence: {names}")
        if self.method.full_finetune and config.load_in_4bit:
            raise UserError("full-sft trains every weight: it cannot train a 4-bit model (use a LoRA method for QLoRA)")
        for task in self.tasks:  # a metric that cannot run fails now, not after the first stage's training
            check_metric(task)
        self._prepare_dir(force)
        self.manifest = Manifest(self.run_dir)
        self._loaded = loaded
        self._peft: PeftModel | None = None
        self._full_stage: int | None = None  # full-sft: the stage whose weights the in-memory model holds
        self._train: dict[str, list[Example]] = {}
        self._test: dict[str, list[Example]] = {}

    # -- run directory ---------------------------------------------------------------------
    def _identity(self, data: dict) -> dict:
        data = json.loads(json.dumps(data))
        data.pop("tasks", None)
        data.pop("eval", None)
        return data

    def _prepare_dir(self, force: bool) -> None:
        config_path = self.run_dir / "config.yaml"
        current = self.config.to_dict()
        if config_path.is_file():
            previous = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
            old_tasks, new_tasks = previous.get("tasks", []), current["tasks"]
            same = self._identity(previous) == self._identity(current) and new_tasks[: len(old_tasks)] == old_tasks
            if not same:
                if not force:
                    raise UserError(f"{self.run_dir} holds a run of a different config; use another --out, "
                                    f"or --force to move the old run aside and start over")
                aside = self.run_dir.with_name(f"{self.run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
                self.run_dir.rename(aside)
                self.progress.message(f"moved the previous run to {aside}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(config_path, yaml.safe_dump(current, sort_keys=False))

    # -- model and data --------------------------------------------------------------------
    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            c = self.config
            if c.pretrain.task:
                self._loaded = pretrained_base(c, self.progress.message)
            else:
                self._loaded = load_model(c.model, c.dtype, c.device_map, c.load_in_4bit, c.trust_remote_code, c.seed)
            if c.device_map is None and not c.load_in_4bit and torch.cuda.is_available():
                self._loaded.model.to("cuda")
        return self._loaded

    @property
    def encoder(self) -> Encoder:
        return Encoder(self.loaded, max_length=self.config.train.max_length, system=self.config.system_prompt)

    def train_set(self, task: TaskSpec) -> list[Example]:
        if task.name not in self._train:
            self._train[task.name] = load_source(task.train, task.name, "train", self.config.train_limit,
                                                 self.config.seed, task.suffix)
        return self._train[task.name]

    def test_set(self, task: TaskSpec) -> list[Example]:
        if task.name not in self._test:
            self._test[task.name] = load_source(task.test, task.name, "test", self.config.eval.limit,
                                                self.config.seed, task.suffix)
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

    def _train_full(self, stage: int, task: TaskSpec, examples: list[Example], checkpoints: Path) -> dict:
        """full-sft: train every weight on this stage's examples and save the whole model (never rewritten)."""
        rel = self.adapter_rel(stage)
        if (self.run_dir / rel).is_dir():
            self.progress.message(f"stage {stage} ({task.name}): model already saved, reusing {rel}")
            self._load_full(stage)
            return {"reused_saved_model": True}
        if stage > 0 and self._full_stage != stage - 1:
            self._load_full(stage - 1)
        c = self.config
        info = train_full(self.loaded.model, examples, self.encoder, c.train, checkpoints, seed=c.seed,
                          progress=self.progress.show_trainer_bars, callbacks=self.progress.trainer_callbacks)
        staging = staging_dir(self.run_dir / rel)
        self.loaded.model.save_pretrained(staging)
        self.loaded.processor.save_pretrained(staging)
        publish_dir(staging, self.run_dir / rel)
        self._full_stage = stage
        return info

    def _use_adapter(self, name: str, rel: str, trainable: bool = False) -> PeftModel:
        path = self.run_dir / rel
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self.loaded.model, path, adapter_name=name, is_trainable=trainable)
        elif name not in self._peft.peft_config:
            self._peft.load_adapter(path, adapter_name=name, is_trainable=trainable)
        return self._peft

    # -- the stages ------------------------------------------------------------------------
    def run(self) -> dict:
        for stage, task in enumerate(self.tasks):
            if self.manifest.done(stage):
                self.manifest.verify(stage)
                if self.manifest.stages[stage]["task"] != task.name:
                    raise UserError(f"stage {stage} of {self.run_dir} learned '{self.manifest.stages[stage]['task']}',"
                                    f" the config says '{task.name}'")
                self.progress.message(f"stage {stage} ({task.name}): finished earlier, skipped")
                continue
            self._run_stage(stage, task)
        return self.write_results()

    def _replay(self, stage: int) -> dict[str, list[Example]]:
        replay = {}
        for task in self.tasks[:stage]:
            ids = {row["id"] for row in read_jsonl(self.run_dir / "retained" / f"{task.name}.jsonl")}
            replay[task.name] = [ex for ex in self.train_set(task) if ex.id in ids]
        return replay

    def _run_stage(self, stage: int, task: TaskSpec) -> None:
        c, say = self.config, self.progress.message
        started = time.perf_counter()
        say(f"stage {stage} ({task.name}): training with {self.method.name}")
        names = [t.name for t in self.tasks]
        train = {t.name: self.train_set(t) for t in self.tasks[: stage + 1]}
        examples = self.method.training_examples(stage, names, train, self._replay(stage))
        # full-sft overwrites the base itself: after stage 0 there is no untrained base left to score
        base_score = None if (self.method.full_finetune and stage > 0) else self._base_score(task)
        # a routed method serves each adapter under its task's name: train it under that name too, so
        # evaluation finds it in memory instead of loading a second copy from disk
        adapter = task.name if self.method.routes else f"s{stage:02d}-{task.name}"
        rel = self.adapter_rel(stage)
        checkpoints = self.run_dir / "checkpoints" / f"{stage:02d}-{task.name}"
        if self.method.full_finetune:
            train_info = self._train_full(stage, task, examples, checkpoints)
        elif (self.run_dir / rel).is_dir():  # trained and published before a crash: never retrain or rewrite it
            say(f"stage {stage} ({task.name}): adapter already saved, reusing {rel}")
            self._use_adapter(adapter, rel)
            train_info = {"reused_saved_adapter": True}
        else:
            if self.method.continues and stage > 0:
                model = self._use_adapter(adapter, self.adapter_rel(stage - 1), trainable=True)
            else:
                model = self._peft = add_adapter(self._peft or self.loaded.model, adapter, c.lora,
                                                 self.loaded.is_vision)
            train_info = train_adapter(model, adapter, examples, self.encoder, c.train, c.lora, checkpoints,
                                       seed=c.seed, progress=self.progress.show_trainer_bars,
                                       callbacks=self.progress.trainer_callbacks)
            staging = staging_dir(self.run_dir / rel)
            model.save_pretrained(staging, selected_adapters=[adapter])
            publish_dir(next(p.parent for p in staging.rglob("adapter_config.json")), self.run_dir / rel)
            shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(checkpoints, ignore_errors=True)
        train_info["examples"] = len(examples)
        train_info["example_ids"] = sorted({f"{ex.task}/{ex.id}" for ex in examples}) if self.progress.record_ids \
            else None
        train_seconds = time.perf_counter() - started

        kept = retain(self.train_set(task), c.retention.fraction, c.retention.min_count, c.retention.seed + stage)
        write_jsonl(self.run_dir / "retained" / f"{task.name}.jsonl",
                    [{"task": task.name, "id": ex.id, "instruction": ex.instruction, "input": ex.input,
                      "answer": ex.answer} for ex in kept])
        artifacts = [rel]
        switch = None
        if self.method.routes and stage > 0:
            switch = self._fit_switch(stage)
            artifacts.append(f"switch/stage-{stage:02d}")

        eval_started = time.perf_counter()
        row, switch_accuracy, upper, extra = self._evaluate(stage, switch)
        entry = {
            "stage": stage, "task": task.name, "adapter": rel, "scores": row, "upper_bound": upper,
            "base_score": base_score,
            "switch_accuracy": switch_accuracy, "extra_metrics": extra, "train": train_info,
            "seconds": {"train": train_seconds, "eval": time.perf_counter() - eval_started,
                        "stage": time.perf_counter() - started},
            "switch": f"switch/stage-{stage:02d}" if switch else None,
        }
        self.manifest.record(entry, artifacts)
        self.write_results()
        say(f"stage {stage} ({task.name}): scores {', '.join(f'{names[j]}={v:.3f}' for j, v in enumerate(row))}")

    def _fit_switch(self, stage: int) -> SwitchNetwork:
        s = self.config.switch
        rows = [row for t in self.tasks[: stage + 1] for row in read_jsonl(self.run_dir / "retained" / f"{t.name}.jsonl")]
        switch = SwitchNetwork(s.extractor, hidden=s.hidden, layer=s.layer, pooling=s.pooling, epochs=s.epochs,
                               lr=s.lr, reject=s.reject, seed=self.config.seed)
        switch.fit([r["instruction"] for r in rows], [r["task"] for r in rows], [r["input"] for r in rows])
        switch.save(self.run_dir / "switch" / f"stage-{stage:02d}")
        self.progress.message(f"stage {stage}: switch fitted on {len(rows)} retained instructions "
                              f"({switch.parameter_count} parameters, threshold {switch.threshold})")
        return switch

    # -- evaluation ------------------------------------------------------------------------
    def _evaluate(self, stage: int, switch: SwitchNetwork | None):
        seen = self.tasks[: stage + 1]
        tests = {t.name: self.test_set(t) for t in seen}
        routed: dict[str, list[tuple[str | None, float]]] = {}
        if self.method.routes:
            for t in seen:
                self._use_adapter(t.name, self.adapter_rel(self.tasks.index(t)))
            for t in seen:
                if switch is None:
                    routed[t.name] = [(seen[0].name, 1.0)] * len(tests[t.name])
                else:
                    routed[t.name] = switch.predict([ex.instruction for ex in tests[t.name]],
                                                    [ex.input for ex in tests[t.name]])
            flat = [(t, ex, route) for t in seen for ex, route in zip(tests[t.name], routed[t.name])]
            answers = self._generate([ex for _, ex, _ in flat], [r[0] or BASE for _, _, r in flat])
        else:
            if not self.method.full_finetune:  # full-sft: the trained model itself answers
                name = f"s{stage:02d}-{self.tasks[stage].name}"
                self._use_adapter(name, self.adapter_rel(stage))
                self._peft.set_adapter(name)
            flat = [(t, ex, (None, None)) for t in seen for ex in tests[t.name]]
            answers = self._generate([ex for _, ex, _ in flat], None)
        row, correct_routes, rows_by_task, extra = [], 0, {t.name: [] for t in seen}, {}
        scores = {t.name: iter(score_samples(t, [a for (u, _, _), a in zip(flat, answers) if u is t],
                                             [ex for u, ex, _ in flat if u is t])) for t in seen}
        for (t, ex, (route, confidence)), answer in zip(flat, answers):
            rows_by_task[t.name].append({"id": ex.id, "question": ex.instruction, "prediction": answer,
                                         "gold": ex.answer, **next(scores[t.name]),
                                         "routed_task": route, "confidence": confidence})
            correct_routes += route == t.name
        for t in seen:
            rows = rows_by_task[t.name]
            write_jsonl(self.run_dir / "predictions" / f"stage-{stage:02d}" / f"{t.name}.jsonl", rows)
            row.append(sum(r["score"] for r in rows) / len(rows))
            if t.extra_metrics:
                extra[t.name] = {m: mean_defined([r[m] for r in rows]) for m in t.extra_metrics}
        switch_accuracy = correct_routes / len(flat) if (self.method.routes and switch is not None) else None
        upper = row[stage]
        if self.method.routes and switch is not None:  # oracle routing for the new task's upper bound
            task = self.tasks[stage]
            oracle = self._generate(tests[task.name], [task.name] * len(tests[task.name]))
            upper = sum(score_all(task, oracle, tests[task.name])) / len(oracle)
        return row, switch_accuracy, upper, extra

    def _base_score(self, task: TaskSpec) -> float:
        """The bare base model's score on a task before any adapter learns it (the 'untrained' reference)."""
        tests = self.test_set(task)
        if self._peft is None:
            answers = generate(self.loaded.model, self.encoder, tests, self.config.eval.batch_size,
                               min(task.max_new_tokens, self.config.eval.max_new_tokens))
        else:
            answers = self._generate(tests, [BASE] * len(tests))
        return sum(score_all(task, answers, tests)) / len(tests)

    def _generate(self, examples: list[Example], adapter_names: list[str] | None) -> list[str]:
        c = self.config
        budget = max([t.max_new_tokens for t in self.tasks] + [1])
        model = self._peft if self._peft is not None else self.loaded.model
        return generate(model, self.encoder, examples, c.eval.batch_size, min(budget, c.eval.max_new_tokens),
                        adapter_names)

    # -- results ---------------------------------------------------------------------------
    def write_results(self) -> dict:
        stages = self.manifest.stages
        names = [s["task"] for s in stages]
        matrix = [s["scores"] + [None] * (len(names) - len(s["scores"])) for s in stages]
        upper = [s["upper_bound"] for s in stages]
        train_seconds = sum(s["seconds"]["train"] for s in stages)
        results = {
            "method": self.method.name,
            "model": self.config.model,
            "tasks": names,
            "metric": {t.name: t.metric + {"exact_match": f" ({t.normalizer})", "sari": " (/100)"}.get(t.metric, "")
                       for t in self.tasks if t.name in names},
            "matrix": matrix,
            "upper_bound": dict(zip(names, upper)),
            "base_model": dict(zip(names, [s.get("base_score") for s in stages])),
            "final": dict(zip(names, matrix[-1])) if matrix else {},
            "average": average(matrix),
            "bwt": backward_transfer(matrix),
            "relative_gain": relative_gain(matrix, upper),
            "switch_accuracy": [s["switch_accuracy"] for s in stages],
            "extra_metrics": [s.get("extra_metrics", {}) for s in stages],
            "adapters": {s["task"]: s["adapter"] for s in stages},
            "switch": stages[-1]["switch"] if stages else None,
            "timings": {
                "train_seconds": train_seconds,
                "eval_seconds": sum(s["seconds"]["eval"] for s in stages),
                "per_stage": [s["seconds"] for s in stages],
                "train_samples_per_second": [s["train"].get("samples_per_second") for s in stages],
            },
            "config_sha256": hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode()).hexdigest(),
        }
        write_json(self.run_dir / "results.json", results)
        return results
