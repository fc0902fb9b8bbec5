"""The prompt a run was trained with, stored in the run (`prompt.json`) and used identically by the runner's
evaluation, `llava-cit eval --run` and serving: system prompt, image preprocessing, tokens per task."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llava_cit.data.collation import Encoder
from llava_cit.data.image_preprocessing import resolve_aspect_ratio
from llava_cit.models.family import is_llava_model, resolve_system_prompt
from llava_cit.models.loading import LoadedModel
from llava_cit.util.atomic import write_json
from llava_cit.util.errors import UserError

PROMPT_FILE = "prompt.json"


@dataclass
class PromptSettings:
    system: str | None = None
    image_aspect_ratio: str = "auto"  # auto: pad for LLaVA-1.5 processors, the processor's own otherwise
    max_length: int = 2048
    max_new_tokens: dict[str, int] = field(default_factory=dict)  # each task's generation budget
    prompt_format: str = "auto"  # auto | chat_template | builtin (llava_cit.data.collation.Encoder)

    @classmethod
    def from_config(cls, config, is_vision: bool, budgets: dict[str, int]) -> PromptSettings:
        """The run's prompt, `auto` resolved as stored in prompt.json (a LLaVA's images padded, as they always were;
        another family's left to its processor; a text model keeps the old default)."""
        aspect = config.image_aspect_ratio
        if aspect == "auto":
            aspect = resolve_aspect_ratio(aspect, llava_processor=not is_vision or is_llava_model(config.model))
        return cls(resolve_system_prompt(config.system_prompt, is_vision, config.model), aspect,
                   config.train.max_length, dict(budgets), config.prompt_format)

    def encoder(self, loaded: LoadedModel) -> Encoder:
        return Encoder(loaded, max_length=self.max_length, system=self.system, image_aspect_ratio=self.image_aspect_ratio,
                       prompt_format=self.prompt_format)

    def save(self, run_dir: Path) -> None:
        write_json(run_dir / PROMPT_FILE, asdict(self))

    @classmethod
    def load(cls, run_dir: Path) -> PromptSettings | None:
        path = run_dir / PROMPT_FILE
        if not path.is_file():
            return None
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError) as err:
            raise UserError(f"{path}: unreadable prompt settings ({err})") from None
