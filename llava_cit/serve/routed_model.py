"""One routed model: the only place a query's adapter and generation budget are decided.

A RoutedModel holds the base model, the adapters that serve the tasks (by folder, loaded on first use), the
task -> folder map, the optional switch and the prompt settings. The runner builds one in memory after each stage
(llava_cit.continual), and `RunServer(RUN)` (llava_cit.serve.run_server, a RoutedModel) builds one from a run
directory's manifest (`eval --run`, serving): the runner's accuracy matrix, `eval --run` and a server route the
same query the same way.

    model = RunServer("runs/gqa-ocr")
    model.tasks                       # ['gqa', 'ocrvqa']
    model.route(queries)              # ['gqa', None, 'ocrvqa']  (None: rejected as unlike every task, bare base)
    model.generate(queries)           # answers, mixed adapters in one batch (llava_cit.serve.gathered_lora)
    model.pinned("ocrvqa").answer(queries)   # every query through ocrvqa's adapter

Routing: with a switch, each query goes to the task it predicts; without one, every query goes to `fixed` (the one
task learned, a pinned task, or, for a method without a router, the last task: one model serves everything).

Budget of a query (max_new_tokens): the caller's when given; routed by a switch, the routed task's own; else the
caller's default (a benchmark's); else a routed or pinned model's task's own; else one budget for every query, the
largest of the tasks learned, as one deployed model would generate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from llava_cit.data.example import Example
from llava_cit.data.prompt_settings import PromptSettings
from llava_cit.models.loading import LoadedModel
from llava_cit.serve.loaded_adapters import LoadedAdapters
from llava_cit.serve.routing import generate_mixed, generate_routed, switch_problem
from llava_cit.serve.serving_plan import ServingPlan
from llava_cit.util.errors import UserError
from switch import SwitchNetwork

DEFAULT_BUDGET = 128  # tokens, for a model that knows no task (a bare base) and a caller that gives none


class Route(NamedTuple):
    task: str | None  # None: rejected by the switch (the bare base answers), or a query the switch cannot read
    confidence: float | None


class Prediction(NamedTuple):
    answer: str | None
    task: str | None  # the task the query was routed to
    confidence: float | None
    error: str | None  # why the query could not be answered (then answer is None)


class RoutedModel:
    def __init__(self, loaded: LoadedModel, prompt: PromptSettings, serving: Mapping[str, str | None],
                 adapters: LoadedAdapters | None = None, switch: SwitchNetwork | None = None,
                 fixed: str | None = None, routed: bool = True, tasks: list[str] | None = None):
        """`serving`: task -> the folder of the adapter answering it (None, or no `adapters`: the model as it is);
        `routed`: each task has its own adapter (False: one model answers every task, with one budget)."""
        self.loaded, self.prompt = loaded, prompt
        self.encoder = prompt.encoder(loaded)
        self.serving = dict(serving)
        self.tasks = list(tasks if tasks is not None else self.serving)
        self.adapters, self.switch, self.fixed, self.routed = adapters, switch, fixed, routed
        self.budgets = {t: prompt.max_new_tokens[t] for t in self.tasks if t in prompt.max_new_tokens}

    @classmethod
    def for_plan(cls, plan: ServingPlan, loaded: LoadedModel, prompt: PromptSettings, adapters: LoadedAdapters | None,
                 switch: SwitchNetwork | None) -> RoutedModel:
        """The model a serving plan describes, with its switch (None: `plan.unswitched_task` answers)."""
        return cls(loaded, prompt, plan.serving, adapters, switch, None if switch is not None else plan.unswitched_task,
                   plan.routed, plan.tasks)

    @property
    def model(self):
        """The module that generates (the PEFT model holding the adapters, or the model itself)."""
        return self.adapters.model if self.adapters is not None else self.loaded.model

    @property
    def loaded_adapters(self) -> list[str]:
        return self.adapters.loaded if self.adapters is not None else []

    def pinned(self, task: str) -> RoutedModel:
        """The same model with every query routed to `task` (its adapter, its budget)."""
        if task not in self.serving:
            raise UserError(f"no adapter serves task '{task}' (tasks: {', '.join(self.serving) or 'none'})")
        return RoutedModel(self.loaded, self.prompt, {task: self.serving[task]}, self.adapters, None, task, True, [task])

    # -- routing ---------------------------------------------------------------------------
    def routes(self, queries: list[Example]) -> list[Route]:
        """Each query's task (and the switch's confidence): the switch's prediction, or `fixed` without a switch."""
        if self.switch is None:
            return [Route(self.fixed, None)] * len(queries)
        readable = [i for i, q in enumerate(queries) if not q.meta.get("error") and switch_problem(q) is None]
        predicted = self.switch.predict([queries[i].instruction for i in readable], [queries[i].input for i in readable])
        routes = [Route(None, None)] * len(queries)
        for i, (task, confidence) in zip(readable, predicted):
            routes[i] = Route(task, confidence)
        return routes

    def route(self, queries: list[Example]) -> list[str | None]:
        return [r.task for r in self.routes(queries)]

    def budget(self, task: str | None, max_new_tokens: int | None = None, default: int | None = None) -> int:
        """How many tokens a query routed to `task` may generate (the order is the module's docstring's)."""
        if max_new_tokens:
            return max_new_tokens
        if self.switch is not None and task in self.budgets:
            return self.budgets[task]
        if default:
            return default
        if self.routed and task in self.budgets:
            return self.budgets[task]
        return max(self.budgets.values(), default=DEFAULT_BUDGET)

    # -- generation ------------------------------------------------------------------------
    def _preferred_name(self, folder: str) -> str:
        """The name a folder's adapter is loaded under: the pinned task's, else the first task it serves."""
        if self.fixed is not None and self.serving.get(self.fixed) == folder:
            return self.fixed
        return next(t for t, rel in self.serving.items() if rel == folder)

    def adapter_name(self, task: str | None) -> str | None:
        """The loaded adapter answering `task` (loaded now if needed); None: the model as it is (adapters off)."""
        folder = self.serving.get(task) if task is not None else None
        if folder is None or self.adapters is None:
            return None
        return self.adapters.name_of(folder, self._preferred_name(folder))

    def ensure_loaded(self, tasks) -> None:
        """Load the adapters serving `tasks` that are not loaded yet."""
        for task in sorted(t for t in tasks if t is not None):
            self.adapter_name(task)

    def answer(self, queries: list[Example], max_new_tokens: int | None = None, batch_size: int | str = 16,
               progress: Callable[[int], None] | None = None, default_budget: int | None = None,
               together: bool = False, routes: list[Route] | None = None) -> list[Prediction]:
        """A prediction per query, in order. `routes`: as `routes(queries)` returned them (a caller that routed a
        larger set first); together: each batch of `batch_size` is answered in one generate call (mixed adapters), instead
        of route by route in full batches. `batch_size`: a number or "auto" (llava_cit.serve.generation)."""
        routes = routes if routes is not None else self.routes(queries)
        names = {task: self.adapter_name(task) for task in dict.fromkeys(r.task for r in routes)}
        budgets = [self.budget(r.task, max_new_tokens, default_budget) for r in routes]
        generate = generate_mixed if together else generate_routed
        outcomes = generate(self.model, self.encoder, queries, [names[r.task] for r in routes], budgets, batch_size,
                            check=switch_problem if self.switch is not None else None, progress=progress)
        return [Prediction(answer, route.task, route.confidence, error)
                for (answer, error), route in zip(outcomes, routes)]

    def generate(self, queries: list[Example], max_new_tokens: int | None = None, batch_size: int | str = 16) -> list[str | None]:
        """Answers (None where a query could not be answered), every batch in one call through mixed adapters."""
        return [p.answer for p in self.answer(queries, max_new_tokens, batch_size, together=True)]
