"""Serve inference from a bare model, a run's fixed adapter, or a run routed by its switch.

Routed serving routes every query of a batch first, then generates route by route with one active
adapter (llava_cit.serve.routing, the same path as the runner's evaluation); `answer(..., together=True)` answers
each batch in one generate call instead, every row through its own adapter (the gathered LoRA product), for
callers whose queries must leave together. Adapters can be loaded lazily, on a route's first use. The prompt (system prompt,
image preprocessing, each task's token budget) is the one the run stored when it trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from llava_cit.config import load_config
from llava_cit.continual.manifest import Manifest, inside_run
from llava_cit.continual.results import check_against_manifest
from llava_cit.data.example import Example
from llava_cit.data.prompt_settings import PromptSettings
from llava_cit.methods.adapter_loading import load_adapter
from llava_cit.methods.registry import get_method
from llava_cit.models.loading import LoadedModel, load_model
from llava_cit.serve.routing import generate_mixed, generate_routed, switch_problem
from llava_cit.train.pretraining import pretrained_base
from llava_cit.util.errors import UserError
from switch import SwitchNetwork

Prediction = tuple[str | None, str | None, float | None, str | None]  # (answer, routed task, confidence, error)


class Server:
    """Answers batches of examples; subclasses choose which adapter serves each one."""

    switch: SwitchNetwork | None = None
    fixed: str | None = None
    adapter_of: dict = {}  # routed task -> the name of the loaded adapter that serves it (shared adapters)

    def __init__(self, loaded: LoadedModel, model, prompt: PromptSettings):
        self.loaded, self.model, self.prompt = loaded, model, prompt
        self.encoder = prompt.encoder(loaded)
        if torch.cuda.is_available() and loaded.model.device.type == "cpu" and not getattr(
                loaded.model, "is_loaded_in_4bit", False):
            self.model.to("cuda")
        self.model.eval()

    def _switch_problem(self, example: Example) -> str | None:
        return switch_problem(example) if self.switch is not None else None

    def routes(self, examples: list[Example]) -> list[tuple[str | None, float | None]]:
        if self.switch is None:
            return [(self.fixed, None)] * len(examples)
        routable = [i for i, ex in enumerate(examples) if self._switch_problem(ex) is None]
        predicted = self.switch.predict([examples[i].instruction for i in routable], [examples[i].input for i in routable])
        routes: list[tuple[str | None, float | None]] = [(None, None)] * len(examples)
        for i, route in zip(routable, predicted):
            routes[i] = route
        return routes

    def ensure_loaded(self, routes) -> None:
        """Load the adapters `routes` need that are not loaded yet (RunServer with lazy adapters)."""

    def answer(self, examples: list[Example], max_new_tokens: int | None = None, batch_size: int = 16,
               progress=None, default_budget: int = 128, together: bool = False) -> list[Prediction]:
        """Answers in input order. Budget: `max_new_tokens` if given; else, routed, each routed task's own (as
        the run trained it); else `default_budget` (the benchmark's). together: each batch of `batch_size`
        in input order is answered in one generate call (mixed adapters), instead of route by route."""
        routes = self.routes(examples)
        adapters = [self.adapter_of.get(r, r) if r is not None else None for r, _ in routes]
        self.ensure_loaded(set(adapters))
        budgets = self.prompt.max_new_tokens if self.switch is not None else {}

        def budget(route):
            return max_new_tokens or budgets.get(route) or default_budget

        generate = generate_mixed if together else generate_routed
        outcomes = generate(self.model, self.encoder, examples, adapters, [budget(r) for r, _ in routes], batch_size,
                            check=self._switch_problem, progress=progress)
        return [(answer, route, confidence, error) for (answer, error), (route, confidence) in zip(outcomes, routes)]


def bare_server(spec: str, dtype: str | None = None, load_in_4bit: bool = False, trust_remote_code: bool = False,
                system_prompt: str | None = "auto", image_aspect_ratio: str = "pad") -> Server:
    from llava_cit.data.prompts import resolve_system_prompt

    loaded = load_model(spec, dtype, load_in_4bit=load_in_4bit, trust_remote_code=trust_remote_code)
    prompt = PromptSettings(resolve_system_prompt(system_prompt, loaded.is_vision, spec), image_aspect_ratio)
    return Server(loaded, loaded.model, prompt)


def _file_states(path: Path) -> dict[str, tuple[int, int, int]]:
    """(size, mtime, inode) of every file under `path`: a file rewritten or replaced since changes them."""
    states = {}
    for file in (p for p in sorted(path.rglob("*")) if p.is_file()):
        stat = file.stat()
        states[str(file)] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    return states


class RunServer(Server):
    """A finished run directory: its base, its adapters, and (routed methods) its switch.

    Every path read from the run's files must stay inside the run directory, and every artifact served has the
    checksums manifest.json recorded for it (`checksums`: those computed as it was loaded); the run's own
    `trust_remote_code` is honoured only when the caller passes `trust_remote_code=True`.
    """

    def __init__(self, run_dir: str | Path, adapter: str | None = None, trust_remote_code: bool = False,
                 lazy_adapters: bool = False):
        run_dir = Path(run_dir)
        results_path = run_dir / "results.json"
        if not results_path.is_file():
            raise UserError(f"{run_dir}: not a finished run directory (no results.json)")
        inside_run(run_dir, results_path.name, f"{results_path} (a link)")
        results = json.loads(results_path.read_text(encoding="utf-8"))
        config = load_config(None, base=yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")))
        config.trust_remote_code = bool(config.trust_remote_code and trust_remote_code)
        adapters: dict[str, str] = results["adapters"]
        for name, rel in adapters.items():
            inside_run(run_dir, rel, f"adapter path of '{name}' in {results_path}")
        manifest = Manifest(run_dir)
        check_against_manifest(results, manifest.stages, results_path)  # so every path served is one the manifest lists
        self.run_dir, self.method = run_dir, results["method"]
        self.checksums: dict[str, dict] = {}  # artifact -> {file: sha256} of the files served, hashed as loaded

        def verified(rel: str, what: str) -> Path:  # checked against the manifest before anything loads it
            what = f"{what} in {results_path}"
            self.checksums[rel] = manifest.verify_artifact(rel, what)
            return inside_run(run_dir, rel, what)

        prompt = PromptSettings.load(run_dir)
        plan = results.get("method_plan") or vars(get_method(results["method"]))  # runs written before "method_plan"
        if plan["full_finetune"]:  # full-sft: the last stage's whole model serves
            last = results["tasks"][-1]
            if adapter is not None and adapter != last:
                raise UserError(f"{run_dir} is a full-sft run: it serves the model of its last stage ('{last}'), "
                                f"there is no separate '{adapter}' to choose")
            self.fixed = last
            loaded = load_model(str(verified(adapters[last], f"model path of '{last}'")), config.dtype, config.device_map)
            super().__init__(loaded, loaded.model, prompt or PromptSettings.from_config(config, loaded.is_vision, {}))
            return
        loaded = pretrained_base(config) if config.pretrain.task else load_model(
            config.model, config.dtype, config.device_map, config.load_in_4bit, config.trust_remote_code, config.seed)
        if adapter is not None:
            if adapter not in adapters:
                raise UserError(f"{run_dir} has no adapter for task '{adapter}' (it has: {', '.join(adapters)})")
            chosen = {adapter: adapters[adapter]}
            self.fixed = adapter
        elif plan["routes"]:
            chosen = dict(results.get("serving") or adapters)  # a task's route leads to the adapter serving it
            self.fixed = None
            if results.get("switch"):
                switch_dir = verified(results["switch"], "switch path")
                self.switch = SwitchNetwork.load(switch_dir, labels=list(adapters), verify_checksums=False)
            else:
                self.fixed = next(iter(adapters))  # one task learned: no switch needed
        else:  # one adapter carried through the sequence: its final state serves everything
            last = results["tasks"][-1]
            chosen, self.fixed = {last: adapters[last]}, last
        # a task's route leads to the adapter that serves it; tasks sharing one adapter load it once, under
        # the first such task's name
        self.adapter_of = {}
        by_path: dict[str, str] = {}
        for name, rel in chosen.items():
            self.adapter_of[name] = by_path.setdefault(str(inside_run(run_dir, rel, f"adapter path of '{name}'")), name)
        chosen = {name: verified(rel, f"adapter path of '{name}'") for name, rel in chosen.items()
                  if self.adapter_of[name] == name}
        self._verified_states = {name: _file_states(path) for name, path in chosen.items()}
        self._pending = dict(chosen)  # adapters not loaded yet: name -> path
        first = self.adapter_of.get(self.fixed, self.fixed) or next(iter(chosen))
        model = load_adapter(loaded.model, self._pending.pop(first), first)
        self.model = model
        if not lazy_adapters:
            self.ensure_loaded(set(self._pending))
        if self.fixed is not None:
            model.set_adapter(first)
        super().__init__(loaded, model, prompt or PromptSettings.from_config(config, loaded.is_vision, {}))

    _pending: dict = {}

    def ensure_loaded(self, routes) -> None:
        for name in sorted(r for r in routes if r in self._pending):
            path = self._pending.pop(name)
            if _file_states(path) != self._verified_states[name]:  # a lazy adapter loads long after it was verified
                raise UserError(f"{path} changed after it was verified against {self.run_dir / 'manifest.json'}: "
                                f"rerun to verify it again")
            load_adapter(self.model, path, name)
        self.model.eval()

    @property
    def loaded_adapters(self) -> list[str]:
        return list(self.model.peft_config)
