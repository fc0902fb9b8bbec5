"""EProj (He et al. 2023, arXiv 2311.16206): model expansion at the projector. Each task gets a new projector (a copy
of the base projector, trained on that task alone); the language model stays the frozen base (the stage's LoRA is
never trained: its B is PEFT's zero init, so it adds nothing). A query is answered with the projector of the task
whose key it matches best: the key of a task is the mean of its retained instructions' features in the switch
extractor's space (standardised), the match their cosine similarity (switch router "key", no classifier).

Where our LLaVA-1.5 setting differs from the paper's, the README's methods table says so (the key reads the
instruction only: the switch never reads the image).
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_cit.methods.base import Method, StageContext, TrainingHooks
from llava_cit.methods.registry import register
from llava_cit.train.lora_targets import in_projector, projector_markers
from llava_cit.util.errors import UserError


def projector_copies(model) -> list:
    """The adapter-owned copies of the model's projector layers (PEFT `modules_to_save` wrappers), found per family."""
    markers = projector_markers(model.get_base_model() if hasattr(model, "get_base_model") else model)
    return [m for n, m in model.named_modules() if in_projector(n + ".", markers)
            and hasattr(m, "modules_to_save") and hasattr(m, "original_module")]


class ProjectorOnly(TrainingHooks):
    """Of the stage's adapter, only its projector copy trains."""

    def __init__(self, markers: list[str]):
        self.markers = markers

    def trainable(self, name: str) -> bool:
        return in_projector(name, self.markers) and "modules_to_save" in name


@dataclass(frozen=True)
class EProj(Method):
    routes: bool = True
    router: str = "key"
    vision_only: bool = True

    def before_training(self, ctx: StageContext, model) -> None:
        if not projector_copies(model):
            raise UserError(f"{self.name} expands the projector: it needs a vision model whose projector is trained "
                            f"fully with the adapter (lora.train_projector: full)")

    def training_hooks(self, ctx: StageContext) -> TrainingHooks:
        model = ctx.encoder.loaded.model
        return ProjectorOnly(projector_markers(model.get_base_model() if hasattr(model, "get_base_model") else model))

    def after_stage(self, ctx: StageContext, model, hooks: TrainingHooks | None = None) -> dict:
        return {"trained": "the task's own projector (language model frozen)"}


register(EProj("eproj", description="a new projector per task on the frozen language model, chosen by the nearest "
                                    "task key",
               paper="He et al. 2023, Continual Instruction Tuning for Large Multimodal Models (arXiv 2311.16206)"))
