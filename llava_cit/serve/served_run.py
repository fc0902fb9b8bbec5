"""The one seam between online serving and a trained run.

Today a run is answered through llava_cit.serve.run_server.RunServer: its switch routes each query (a rejected query
goes to the bare base), its adapters answer a batch together through the gathered LoRA, with the run's own prompt
settings. Serving (the OpenAI-compatible API, the batching queue) and the vLLM export see a run only through
`ServedRun` and `RunFiles` below, so the day a run is one `RoutedModel` object, only this file changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

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
        return list(self.server.adapter_of)

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
        is its `max_tokens`, else (routed runs) its task's own, else DEFAULT_BUDGET, as RunServer.answer counts."""
        from llava_cit.serve.routing import generate_mixed, switch_problem

        server = self.server
        routes: list[tuple[str | None, float | None]] = [(q.task, None) for q in queries]
        free = [i for i, q in enumerate(queries) if q.task is None]
        for i, route in zip(free, server.routes([queries[i].example for i in free])):
            routes[i] = route
        adapters = [server.adapter_of.get(task, task) if task is not None else None for task, _ in routes]
        server.ensure_loaded(set(adapters))
        task_budgets = server.prompt.max_new_tokens if server.switch is not None else {}
        budgets = [q.max_tokens or task_budgets.get(task) or DEFAULT_BUDGET for q, (task, _) in zip(queries, routes)]
        pinned = {id(q.example) for q in queries if q.task is not None}

        def unroutable(example: Example) -> str | None:  # the switch must read what it routes; a pinned query skips it
            return None if server.switch is None or id(example) in pinned else switch_problem(example)

        outcomes = generate_mixed(server.model, server.encoder, [q.example for q in queries], adapters, budgets,
                                  batch_size=max(1, len(queries)), check=unroutable)
        return [Reply(text, task, confidence, error, budget)
                for (text, error), (task, confidence), budget in zip(outcomes, routes, budgets)]


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
        from dataclasses import asdict

        from llava_cit.config import load_config
        from llava_cit.continual.manifest import Manifest, inside_run
        from llava_cit.continual.results import check_against_manifest
        from llava_cit.data.prompt_settings import PromptSettings
        from llava_cit.methods.registry import get_method

        run_dir = Path(run_dir)
        results_path = run_dir / "results.json"
        if not results_path.is_file():
            raise UserError(f"{run_dir}: not a finished run directory (no results.json)")
        inside_run(run_dir, results_path.name, f"{results_path} (a link)")
        results = json.loads(results_path.read_text(encoding="utf-8"))
        config = load_config(None, base=yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")))
        manifest = Manifest(run_dir)
        check_against_manifest(results, manifest.stages, results_path)
        checksums: dict[str, dict] = {}

        def verified(rel: str, what: str) -> Path:
            checksums[rel] = manifest.verify_artifact(rel, f"{what} in {results_path}")
            return inside_run(run_dir, rel, f"{what} in {results_path}")

        plan = results.get("method_plan") or vars(get_method(results["method"]))
        adapters: dict[str, str] = results["adapters"]
        if plan["full_finetune"]:
            raise UserError(f"{run_dir} is a full fine-tune ({results['method']}): it has no LoRA adapters to export; "
                            f"serve its last model ({adapters[results['tasks'][-1]]}) with vLLM directly")
        switch = None
        if plan["routes"]:
            chosen = dict(results.get("serving") or adapters)
            if results.get("switch"):
                switch = verified(results["switch"], "switch path")
        else:  # one adapter carried through the sequence serves every task
            last = results["tasks"][-1]
            chosen = {last: adapters[last]}
        serves: dict[str, str] = {}
        by_path: dict[str, str] = {}
        for task, rel in chosen.items():  # tasks sharing one adapter: it is exported once, under the first's name
            serves[task] = by_path.setdefault(str(inside_run(run_dir, rel, f"adapter path of '{task}'")), task)
        dirs = {task: verified(rel, f"adapter path of '{task}'") for task, rel in chosen.items() if serves[task] == task}
        prompt = PromptSettings.load(run_dir)
        return cls(run_dir, results["method"], list(results["tasks"]), config.model, bool(config.pretrain.task), config,
                   dirs, serves, switch, list(adapters), asdict(prompt) if prompt else {}, checksums)
