"""The one seam between online serving and a trained run.

Today a run is answered through llava_cit.serve.run_server.RunServer: its switch routes each query (a rejected query
goes to the bare base), its adapters answer a batch together through the gathered LoRA, with the run's own prompt
settings. Serving (the OpenAI-compatible API, the batching queue) and the vLLM export see a run only through
`ServedRun` and `RunFiles` below, so the day a run is one `RoutedModel` object, only this file changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llava_cit.data.example import Example
from llava_cit.util.errors import UserError

DEFAULT_BUDGET = 128  # tokens to generate when neither the request nor the routed task names a budget (RunServer's)


@dataclass
class Query:
    """One question to answer: `task` pins that task's adapter (None: the run's switch routes it)."""

    example: Example
    task: str | None = None
    max_tokens: int | None = None


@dataclass
class Reply:
    """The answer (or why there is none) and who gave it: `task` is the adapter's task, None for the bare base."""

    text: str | None
    task: str | None
    confidence: float | None = None
    error: str | None = None
    budget: int = DEFAULT_BUDGET


class ServedRun:
    """A finished run loaded for answering; `answer` takes a mixed batch of routed and pinned queries."""

    engine = "transformers"

    def __init__(self, run_dir: str | Path, trust_remote_code: bool = False, name: str | None = None):
        from llava_cit.serve.run_server import RunServer

        self.run_dir = Path(run_dir)
        self.server = RunServer(self.run_dir, trust_remote_code=trust_remote_code)
        self.name = name or self.run_dir.resolve().name

    @property
    def tasks(self) -> list[str]:
        """The tasks a request may pin (`model: "<run>/<task>"`): each routes to the adapter that serves it."""
        return list(self.server.serving)

    @property
    def routed(self) -> bool:
        return self.server.switch is not None

    @property
    def is_vision(self) -> bool:
        return self.server.loaded.is_vision

    @property
    def multi_turn(self) -> bool:
        """Whether the prompt format reads earlier turns (LLaVA's and chat templates do; the text template reads one)."""
        return self.server.loaded.is_vision or self.server.encoder.chat

    @property
    def method(self) -> str:
        return self.server.method

    def prompt_tokens(self, example: Example) -> int:
        return len(self.server.encoder.encode_prompt(example))

    def count_tokens(self, text: str) -> int:
        return len(self.server.encoder.tokenizer(text, add_special_tokens=False).input_ids)

    def answer(self, queries: list[Query]) -> list[Reply]:
        """Replies in order, all queries in one generate call (every row through its own adapter). A query's budget
        is its `max_tokens`, else the routed model's for its task (llava_cit.serve.routed_model), as RunServer.answer
        counts."""
        from llava_cit.serve.routed_model import Route
        from llava_cit.serve.routing import generate_mixed, switch_problem

        server = self.server
        routes = [Route(q.task, None) for q in queries]
        free = [i for i, q in enumerate(queries) if q.task is None]
        for i, route in zip(free, server.routes([queries[i].example for i in free])):
            routes[i] = route
        adapters = [server.adapter_name(route.task) for route in routes]  # loaded now where needed
        budgets = [server.budget(route.task, q.max_tokens) for q, route in zip(queries, routes)]
        pinned = {id(q.example) for q in queries if q.task is not None}

        def unroutable(example: Example) -> str | None:  # the switch must read what it routes; a pinned query skips it
            return None if server.switch is None or id(example) in pinned else switch_problem(example)

        outcomes = generate_mixed(server.model, server.encoder, [q.example for q in queries], adapters, budgets,
                                  batch_size=max(1, len(queries)), check=unroutable)
        return [Reply(text, route.task, route.confidence, error, budget)
                for (text, error), route, budget in zip(outcomes, routes, budgets)]


@dataclass
class RunFiles:
    """What a finished run serves, read and verified against its manifest without loading any model (the export)."""

    run_dir: Path
    method: str
    tasks: list[str]
    base_model: str
    pretrained_base: bool
    config: object
    adapters: dict[str, Path]  # adapter name -> verified directory
    serves: dict[str, str]  # task a request may pin -> the adapter that serves it
    switch: Path | None
    switch_labels: list[str]  # the switch's outputs, in order
    prompt: dict = field(default_factory=dict)
    checksums: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def read(cls, run_dir: str | Path) -> RunFiles:
        """From the manifest's serving plan (results.json for runs written before it), every path verified."""
        from dataclasses import asdict

        from llava_cit.config import load_config
        from llava_cit.continual.manifest import Manifest, inside_run
        from llava_cit.continual.run_directory import read_run_config
        from llava_cit.data.prompt_settings import PromptSettings
        from llava_cit.serve.run_server import legacy_plan
        from llava_cit.serve.serving_plan import ServingPlan

        run_dir = Path(run_dir)
        manifest = Manifest(run_dir)
        plan = ServingPlan.from_dict(manifest.serving, str(manifest.path)) if manifest.serving is not None \
            else legacy_plan(run_dir, manifest)
        where = manifest.path if manifest.serving is not None else run_dir / "results.json"
        config = load_config(None, base=read_run_config(run_dir / "config.yaml"))
        checksums: dict[str, dict] = {}

        def verified(rel: str, what: str) -> Path:
            checksums[rel] = manifest.verify_artifact(rel, f"{what} in {where}")
            return inside_run(run_dir, rel, f"{what} in {where}")

        if plan.learner == "full":
            last = plan.tasks[-1]
            raise UserError(f"{run_dir} is a full fine-tune ({plan.method}): it has no LoRA adapters to export; "
                            f"serve its last model ({plan.adapters[last]}) with vLLM directly")
        switch = verified(plan.switch, "switch path") if plan.routed and plan.switch else None
        serves: dict[str, str] = {}
        by_path: dict[str, str] = {}
        for task, rel in plan.serving.items():  # tasks sharing one adapter: it is exported once, under the first's name
            serves[task] = by_path.setdefault(str(inside_run(run_dir, rel, f"adapter path of '{task}'")), task)
        dirs = {task: verified(rel, f"adapter path of '{task}'") for task, rel in plan.serving.items()
                if serves[task] == task}
        prompt = PromptSettings.load(run_dir)
        return cls(run_dir, plan.method, list(plan.tasks), config.model, bool(config.pretrain.task), config,
                   dirs, serves, switch, list(plan.tasks), asdict(prompt) if prompt else {}, checksums)
