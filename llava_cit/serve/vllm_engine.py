"""Serve an exported run (llava_cit.serve.vllm_export) with an in-process vLLM engine: the run's switch routes each
query, vLLM answers it with its task's LoRA (a rejected query: no LoRA, the bare base), greedily, with the run's
prompt settings (the prompt text the transformers engine builds; LLaVA images padded to a square as the run trained).

vLLM is imported only here, when this engine starts; where it is missing the engine refuses in one line. Not
exercised on CPU: vLLM needs a CUDA GPU.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from llava_cit.data.example import Example
from llava_cit.serve.served_run import DEFAULT_BUDGET, Query, Reply
from llava_cit.util.errors import UserError


def import_vllm():
    try:
        import vllm
    except ImportError as err:
        raise UserError(f"--engine vllm needs vLLM, which cannot be imported here ({err}); install it on a CUDA "
                        f"machine (pip install vllm) or serve with the default engine (--engine transformers)") from None
    return vllm


class VllmEngine:
    engine = "vllm"

    def __init__(self, export_dir: str | Path, name: str | None = None, gpu_memory_utilization: float = 0.9):
        vllm = import_vllm()
        from transformers import AutoConfig, AutoProcessor, AutoTokenizer

        from llava_cit.data.prompt_settings import PromptSettings
        from llava_cit.models.loading import LoadedModel
        from llava_cit.serve.vllm_export import read_export
        from switch import SwitchNetwork

        self.export_dir = Path(export_dir)
        manifest = read_export(self.export_dir)
        self.manifest = manifest
        self.name = name or manifest["run"]
        base = manifest["base_model"]
        base = str(self.export_dir / base) if base == "base" else base
        config = AutoConfig.from_pretrained(base)
        vision = hasattr(config, "vision_config")
        processor = AutoProcessor.from_pretrained(base) if vision else AutoTokenizer.from_pretrained(base)
        loaded = LoadedModel(SimpleNamespace(config=config), processor, vision, base)  # prompts only: no weights
        self.prompt = PromptSettings(**manifest["prompt"]) if manifest["prompt"] else PromptSettings()
        self.encoder = self.prompt.encoder(loaded)
        self.switch = None
        if manifest["switch"]:
            self.switch = SwitchNetwork.load(self.export_dir / manifest["switch"], labels=manifest["switch_labels"])
        settings = manifest["vllm"]
        options = dict(model=base, enable_lora=True, max_lora_rank=settings["max_lora_rank"],
                       max_loras=settings["max_loras"], gpu_memory_utilization=gpu_memory_utilization)
        if settings["model_impl"] != "auto":
            options["model_impl"] = settings["model_impl"]
        if vision:
            options["limit_mm_per_prompt"] = {"image": 1}
        self.llm = vllm.LLM(**options)
        self._lora_ids = {adapter: k + 1 for k, adapter in enumerate(manifest["adapters"])}

    @property
    def tasks(self) -> list[str]:
        return list(self.manifest["routes"])

    @property
    def routed(self) -> bool:
        return self.switch is not None

    @property
    def is_vision(self) -> bool:
        return self.encoder.loaded.is_vision

    @property
    def multi_turn(self) -> bool:
        return self.is_vision or self.encoder.chat

    def prompt_tokens(self, example: Example) -> int:
        return len(self.encoder.encode_prompt(example))

    def count_tokens(self, text: str) -> int:
        return len(self.encoder.tokenizer(text, add_special_tokens=False).input_ids)

    def _routes(self, queries: list[Query]) -> list[tuple[str | None, float | None, str | None]]:
        """(task, confidence, why it cannot be routed) per query."""
        from llava_cit.serve.routing import switch_problem

        if self.switch is None:
            return [(q.task or self.manifest["fixed"], None, None) for q in queries]
        routes: list[tuple[str | None, float | None, str | None]] = [(q.task, None, None) for q in queries]
        free = []
        for i, q in enumerate(queries):
            if q.task is None:
                problem = switch_problem(q.example)
                routes[i] = (None, None, problem)
                if problem is None:
                    free.append(i)
        predicted = self.switch.predict([queries[i].example.instruction for i in free],
                                        [queries[i].example.input for i in free])
        for i, (task, confidence) in zip(free, predicted):
            routes[i] = (task, confidence, None)
        return routes

    def answer(self, queries: list[Query]) -> list[Reply]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        from llava_cit.data.image_preprocessing import prepare_image

        routes = self._routes(queries)
        budgets = self.prompt.max_new_tokens if self.switch is not None else {}
        replies: list[Reply | None] = [None] * len(queries)
        prompts, params, loras, rows = [], [], [], []
        for i, (query, (task, confidence, problem)) in enumerate(zip(queries, routes)):
            budget = query.max_tokens or budgets.get(task) or DEFAULT_BUDGET
            if problem is not None:
                replies[i] = Reply(None, None, None, problem, budget)
                continue
            prompt: dict = {"prompt": self.encoder.prompt_text(query.example)}
            if query.example.has_image:
                image = prepare_image(query.example.load_image(), self.prompt.image_aspect_ratio,
                                      self.encoder.loaded.processor.image_processor)
                prompt["multi_modal_data"] = {"image": image}
            adapter = self.manifest["routes"].get(task) if task is not None else None
            prompts.append(prompt)
            params.append(SamplingParams(temperature=0.0, max_tokens=budget))
            loras.append(LoRARequest(adapter, self._lora_ids[adapter], str(self.export_dir / "adapters" / adapter))
                         if adapter is not None else None)
            rows.append((i, task, confidence, budget))
        if prompts:
            outputs = self.llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
            for (i, task, confidence, budget), output in zip(rows, outputs):
                replies[i] = Reply(output.outputs[0].text.strip(), task, confidence, None, budget)
        return replies
