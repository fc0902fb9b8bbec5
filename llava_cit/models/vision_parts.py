"""Where an image-text-to-text model keeps its three parts, found from the model itself, the same way for every
family: the language model (transformers' `get_decoder()`), the vision encoder (`get_encoder(modality="image")`) and
the projector between them (what else holds weights beside the two: LLaVA's, Gemma 3's, InternVL's and
LLaVA-OneVision's `multi_modal_projector`, Idefics3/SmolVLM's `connector`), or, where the family puts it inside
the vision encoder, its patch merger (Qwen2-VL, Qwen2.5-VL, Qwen3-VL `visual.merger`).

Names are module paths in `model.named_modules()` of the model as loaded (no PEFT wrapper).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# a projector that a family keeps inside its vision encoder (the Qwen-VL families' patch merger)
PROJECTORS_IN_ENCODER = ("merger", "deepstack_merger_list")
OTHER_ENCODERS = ("audio_tower", "audio_encoder", "video_tower")


@dataclass(frozen=True)
class VisionParts:
    language: str  # the language model, e.g. "model.language_model", "model.text_model"
    vision: str  # the vision encoder, e.g. "model.vision_tower", "model.visual", "model.vision_model"
    projector: tuple[str, ...]  # e.g. ("model.multi_modal_projector",), ("model.visual.merger",), ("model.connector",)

    def part_of(self, name: str) -> str | None:
        """`language`, `projector`, `vision` or None (lm_head, embeddings outside the three) for a module path."""
        if any(_inside(name, p) for p in self.projector):
            return "projector"
        if _inside(name, self.language):
            return "language"
        if _inside(name, self.vision):
            return "vision"
        return None

    @property
    def container(self) -> str:
        """The module that holds the three parts side by side (e.g. "model")."""
        return self.language.rpartition(".")[0]

    def short(self, name: str) -> str:
        """A module path relative to the container (PEFT matches `modules_to_save` by such a suffix)."""
        prefix = self.container + "." if self.container else ""
        return name[len(prefix):] if name.startswith(prefix) else name


def _inside(name: str, part: str) -> bool:
    return name == part or name.startswith(part + ".")


def vision_parts(model: torch.nn.Module) -> VisionParts | None:
    """The parts of a vision-language model; None for a text-only model."""
    if hasattr(model, "get_base_model"):  # a PEFT model: the parts of the model it wraps
        model = model.get_base_model()
    if not hasattr(model.config, "vision_config") or not hasattr(model, "get_encoder"):
        return None
    names = {id(module): name for name, module in model.named_modules(remove_duplicate=False)}
    decoder, encoder = model.get_decoder(), model.get_encoder(modality="image")
    language, vision = names.get(id(decoder)), names.get(id(encoder))
    if not language or not vision or language == vision:
        raise ValueError(f"{type(model).__name__}: cannot find its language model and vision encoder "
                         "(transformers' get_decoder / get_encoder(modality='image'))")
    container = language.rpartition(".")[0]
    parent = model.get_submodule(container) if container else model
    prefix = container + "." if container else ""
    projector = [prefix + child for child, module in parent.named_children()
                 if prefix + child not in (language, vision) and child not in OTHER_ENCODERS
                 and any(True for _ in module.parameters())]
    projector += [f"{vision}.{child}" for child, _ in encoder.named_children() if child in PROJECTORS_IN_ENCODER]
    if not projector:
        raise ValueError(f"{type(model).__name__}: no projector found between its vision encoder and language model")
    return VisionParts(language, vision, tuple(projector))


def projector_modules_to_save(model: torch.nn.Module, parts: VisionParts) -> list[str]:
    """The projector as PEFT `modules_to_save` entries (paths relative to the container): a projector module that
    holds weights of its own (Gemma 3's projection matrix) whole, otherwise its children that hold weights (LLaVA:
    `multi_modal_projector.linear_1`, `.linear_2`, so a LLaVA adapter is saved as it always was)."""
    entries = []
    for path in parts.projector:
        module = model.get_submodule(path)
        module = getattr(module, "original_module", module)  # already wrapped by an earlier adapter
        if any(True for _ in module.parameters(recurse=False)):
            entries.append(parts.short(path))
            continue
        entries += [parts.short(f"{path}.{child}") for child, sub in module.named_children()
                    if any(True for _ in sub.parameters())]
    return entries


def linear_layers(model: torch.nn.Module, part: str, parts: VisionParts) -> list[str]:
    """Paths of the Linear layers (4-bit and 8-bit ones too) in one part of the model, PEFT's wrappers skipped."""
    found = []
    for name, module in model.named_modules():
        if any(piece in name for piece in ("lora_", "base_layer", "modules_to_save", "original_module")):
            continue
        layer = getattr(module, "base_layer", module)
        if isinstance(layer, torch.nn.Linear) or type(layer).__name__ in ("Linear4bit", "Linear8bitLt"):
            if parts.part_of(name) == part:
                found.append(name)
    return found
