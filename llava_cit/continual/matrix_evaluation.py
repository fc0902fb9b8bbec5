"""Evaluation of the accuracy matrix for the runner: after each stage, every seen task's test set is
answered (routed through the switch and the serving map, or by the continued adapter), scored per sample,
and written to predictions/stage-NN/; plus the untrained base's score and the upper bound."""

from __future__ import annotations

from pathlib import Path

import torch

from llava_cit.continual.stage_clock import PhaseTimer
from llava_cit.data.example import Example
from llava_cit.evaluation.scoring import mean_defined, score_samples
from llava_cit.serve.routing import generate_routed, switch_problem
from llava_cit.tasks.spec import TaskSpec
from llava_cit.train.trainer import add_adapter
from llava_cit.util.errors import UserError
from llava_cit.util.progress_display import ItemProgress
from switch import SwitchNetwork
from switch.retention import write_jsonl


class MatrixEvaluation:
    """Mixed into ContinualRunner."""

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
            path = self.run_dir / "predictions" / f"stage-{stage:02d}" / f"{t.name}.jsonl"
            self.procs.on_main(lambda path=path, rows=rows: write_jsonl(path, rows))
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
        `budget_routes[i]`; generate_routed groups the examples by (adapter, budget). In a multi-process run
        each rank answers its shard and every rank gets all the answers back, in order."""
        mine = self.procs.shard(len(examples))
        console = self.progress.console if self.procs.is_main else None
        with ItemProgress(label, len(mine), console, self.say) as bar:
            answers = generate_routed(self._model(), self.encoder, [examples[i] for i in mine],
                                      [routes[i] for i in mine], [self.budget(budget_routes[i]) for i in mine],
                                      self.config.eval.batch_size, check=check, progress=bar.advance)
        return self.procs.merge(len(examples), answers)

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
            from llava_cit.continual.report import read_results  # checked against that run's manifest

            value = read_results(source).get("upper_bound", {}).get(task.name)
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

