"""Serve inference from a bare model, a run's fixed adapter, or a run routed by its switch.

Routed serving keeps every task's adapter on one base and answers a mixed-task batch in one
`generate` call with PEFT's per-sample `adapter_names` (never one query at a time).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from peft import PeftModel

from llava_cit.collation import Encoder
from llava_cit.config import load_config
from llava_cit.data.example import Example
from llava_cit.errors import UserError
from llava_cit.generation import BASE, generate_batch
from llava_cit.methods.registry import get_method
from llava_cit.models.loading import LoadedModel, load_model
from llava_cit.pretraining import pretrained_base
from switch import SwitchNetwork

Prediction = tuple[str, str | None, float | None]  # (answer, routed task, switch confidence)


class Server:
    """Answers batches of examples; subclasses choose which adapter serves each one."""

    def __init__(self, loaded: LoadedModel, model, max_length: int = 2048):
        self.loaded, self.model = loaded, model
        self.encoder = Encoder(loaded, max_length=max_length)
        if torch.cuda.is_available() and loaded.model.device.type == "cpu" and not getattr(
                loaded.model, "is_loaded_in_4bit", False):
            self.model.to("cuda")
        self.model.eval()

    def routes(self, examples: list[Example]) -> list[tuple[str | None, float | None]]:
        return [(None, None)] * len(examples)

    def adapter_names(self, routes) -> list[str] | None:
        return None

    def answer(self, examples: list[Example], max_new_tokens: int = 16) -> list[Prediction]:
        routes = self.routes(examples)
        answers = generate_batch(self.model, self.encoder, examples, max_new_tokens, self.adapter_names(routes))
        return [(a, r, c) for a, (r, c) in zip(answers, routes)]


def bare_server(spec: str, dtype: str | None = None, load_in_4bit: bool = False,
                trust_remote_code: bool = False) -> Server:
    loaded = load_model(spec, dtype, load_in_4bit=load_in_4bit, trust_remote_code=trust_remote_code)
    return Server(loaded, loaded.model)


class RunServer(Server):
    """A finished run directory: its base, its adapters, and (switchcit) its switch."""

    def __init__(self, run_dir: str | Path, adapter: str | None = None):
        run_dir = Path(run_dir)
        results_path = run_dir / "results.json"
        if not results_path.is_file():
            raise UserError(f"{run_dir}: not a finished run directory (no results.json)")
        results = json.loads(results_path.read_text(encoding="utf-8"))
        config = load_config(None, base=yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")))
        adapters: dict[str, str] = results["adapters"]
        self.switch, self.method = None, results["method"]
        if get_method(results["method"]).full_finetune:  # full-sft: the last stage's whole model serves
            last = results["tasks"][-1]
            if adapter is not None and adapter != last:
                raise UserError(f"{run_dir} is a full-sft run: it serves the model of its last stage ('{last}'), "
                                f"there is no separate '{adapter}' to choose")
            self.fixed = last
            loaded = load_model(str(run_dir / adapters[self.fixed]), config.dtype, config.device_map)
            super().__init__(loaded, loaded.model, max_length=config.train.max_length)
            return
        loaded = pretrained_base(config) if config.pretrain.task else load_model(
            config.model, config.dtype, config.device_map, config.load_in_4bit, config.trust_remote_code, config.seed)
        if adapter is not None:
            if adapter not in adapters:
                raise UserError(f"{run_dir} has no adapter for task '{adapter}' (it has: {', '.join(adapters)})")
            chosen = {adapter: adapters[adapter]}
            self.fixed = adapter
        elif results["method"] == "switchcit":
            chosen, self.fixed = adapters, None
            if results.get("switch"):
                self.switch = SwitchNetwork.load(run_dir / results["switch"], labels=list(adapters))
            else:
                self.fixed = next(iter(adapters))  # one task learned: no switch needed
        else:  # one adapter carried through the sequence: its final state serves everything
            last = results["tasks"][-1]
            chosen, self.fixed = {last: adapters[last]}, last
        model = None
        for name, rel in chosen.items():
            if model is None:
                model = PeftModel.from_pretrained(loaded.model, run_dir / rel, adapter_name=name)
            else:
                model.load_adapter(run_dir / rel, adapter_name=name)
        if self.fixed is not None:
            model.set_adapter(self.fixed)
        super().__init__(loaded, model, max_length=config.train.max_length)

    def routes(self, examples: list[Example]):
        if self.switch is None:
            return [(self.fixed, None)] * len(examples)
        return self.switch.predict([ex.instruction for ex in examples], [ex.input for ex in examples])

    def adapter_names(self, routes) -> list[str] | None:
        if self.switch is None:
            return None
        return [task or BASE for task, _ in routes]
