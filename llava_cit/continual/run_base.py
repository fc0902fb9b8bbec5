"""A run's base model, loaded when first needed, and the prompt it is trained, evaluated and served with.

The prompt (system prompt, image preprocessing, each task's generation budget) is stored in prompt.json when the
run starts and used as stored from then on; a task appended later adds its budget.
"""

from __future__ import annotations

import torch

from llava_cit.config import RunConfig
from llava_cit.data.collation import Encoder
from llava_cit.data.prompt_settings import PromptSettings
from llava_cit.models.loading import LoadedModel, load_model
from llava_cit.tasks.spec import TaskSpec
from llava_cit.train.distributed import Processes
from llava_cit.train.pretraining import pretrained_base


def task_budget(task: TaskSpec, config: RunConfig) -> int:
    """A task's own generation budget, capped by eval.max_new_tokens when set."""
    cap = config.eval.max_new_tokens
    return min(task.max_new_tokens, cap) if cap else task.max_new_tokens


class RunBase:
    def __init__(self, config: RunConfig, run_dir, tasks: list[TaskSpec], procs: Processes, say,
                 loaded: LoadedModel | None = None):
        self.config, self.run_dir, self.procs, self.say = config, run_dir, procs, say
        self.budgets = {t.name: task_budget(t, config) for t in tasks}
        self._loaded, self._prompt = loaded, None

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            c = self.config
            if c.pretrain.task:
                self._loaded = pretrained_base(c, self.say)
            else:
                self._loaded = load_model(c.model, c.dtype, c.device_map, c.load_in_4bit, c.trust_remote_code, c.seed,
                                          c.attn_implementation)
            if c.device_map is None and not c.load_in_4bit and torch.cuda.is_available():
                self._loaded.model.to("cuda")
        return self._loaded

    def replace(self, loaded: LoadedModel) -> None:
        """Full fine-tuning: the model a stage saved is the one trained on from now on."""
        self._loaded = loaded

    @property
    def prompt(self) -> PromptSettings:
        if self._prompt is None:
            stored = PromptSettings.load(self.run_dir)
            current = PromptSettings.from_config(self.config, self.loaded.is_vision, self.budgets)
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
