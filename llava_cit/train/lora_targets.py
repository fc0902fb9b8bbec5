"""What an adapter trains, per model family: LoRA on the linear layers of the parts `lora.targets` names, and the
projector (merger, connector) trained fully, as LoRA, or frozen (`lora.train_projector`).

    lora.targets          language (default)     every linear layer of the language model
                          language+projector     ... and the projector's linear layers (train_projector lora)
                          all                    ... and the vision encoder's (the projector as train_projector says)
    lora.train_projector  auto (default)         lora with language+projector, full otherwise
                          full                   a copy of the projector per adapter, trained and saved with it
                                                 (PEFT modules_to_save: LLaVA-1.5's recipe, at lora.projector_lr)
                          lora | false           LoRA on its linear layers | frozen

The parts are found from the model (llava_cit.models.vision_parts), the same way for every family. The language
part's regex is the one LLaVA adapters always had (`.*language_model.*\\.(q_proj|...)$`), so a LLaVA run trains and
saves exactly what it did.
"""

from __future__ import annotations

import re

import torch
from peft import LoraConfig

from llava_cit.config import LoraSettings
from llava_cit.models.vision_parts import VisionParts, linear_layers, projector_modules_to_save, vision_parts
from llava_cit.util.errors import UserError

TARGETS = {"language": ("language",), "language+projector": ("language", "projector"),
           "all": ("language", "projector", "vision")}


def projector_mode(settings: LoraSettings) -> str:
    """full, lora or false, from lora.train_projector and lora.targets (one line naming a contradiction)."""
    value = settings.train_projector
    mode = {True: "full", False: "false"}.get(value, value) if isinstance(value, bool) else value
    if mode == "auto":
        return "lora" if settings.targets == "language+projector" else "full"
    if settings.targets == "language+projector" and mode != "lora":
        raise UserError(f"lora.targets language+projector puts LoRA on the projector, but lora.train_projector is "
                        f"{mode}: set train_projector lora (or auto), or targets language")
    return mode


def _leaf_names(names: list[str]) -> list[str]:
    return sorted({name.split(".")[-1] for name in names})


def language_model_target_regex(model: torch.nn.Module) -> str:
    """A PEFT `target_modules` regex naming every linear layer of the language model."""
    parts = vision_parts(model)
    if parts is None:
        names = [n for n, m in model.named_modules() if _is_linear(m) and not n.endswith("lm_head")
                 and not any(p in n for p in ("lora_", "base_layer", "modules_to_save", "original_module"))]
        prefix = r".*\."
    else:
        names = linear_layers(model, "language", parts)
        prefix = rf".*{re.escape(parts.language.split('.')[-1])}.*\."
    if not names:
        raise ValueError("no linear layers found in the language model")
    return prefix + "(" + "|".join(_leaf_names(names)) + ")$"


def _is_linear(module: torch.nn.Module) -> bool:
    layer = getattr(module, "base_layer", module)
    return isinstance(layer, torch.nn.Linear) or type(layer).__name__ in ("Linear4bit", "Linear8bitLt")


def target_regex(model: torch.nn.Module, settings: LoraSettings) -> str:
    """The PEFT regex for `settings.targets` (and the projector, under train_projector lora)."""
    language = language_model_target_regex(model)
    parts = vision_parts(model)
    if parts is None:
        return language
    alternatives = [language]
    if projector_mode(settings) == "lora":
        layers = linear_layers(model, "projector", parts)
        if not layers:
            raise UserError(f"lora.train_projector lora: {type(model).__name__}'s projector "
                            f"({', '.join(parts.projector)}) has no linear layer for LoRA: use full or false")
        alternatives.append(_path_patterns(model, layers))
    if "vision" in TARGETS[settings.targets]:
        alternatives.append(_vision_regex(model, parts))
    return alternatives[0] if len(alternatives) == 1 else "|".join(f"(?:{a})" for a in alternatives)


def _vision_regex(model: torch.nn.Module, parts: VisionParts) -> str:
    layers = linear_layers(model, "vision", parts)
    if not layers:
        raise UserError(f"lora.targets all: {type(model).__name__}'s vision encoder has no linear layer for LoRA")
    return _path_patterns(model, layers)


def _path_patterns(model: torch.nn.Module, names: list[str]) -> str:
    """Module paths as one regex, layer numbers generalised (`blocks.0.attn.qkv` -> `blocks\\.\\d+\\.attn\\.qkv`) where
    the generalised path names only these layers (never a Sequential's activation, nor a patch embedding's Conv)."""
    wanted, every = set(names), [n for n, _ in model.named_modules()]
    patterns: dict[str, None] = {}
    for name in names:
        general = r"\.".join(r"\d+" if piece.isdigit() else re.escape(piece) for piece in name.split("."))
        compiled = re.compile(general)
        exact = all(n in wanted for n in every if compiled.fullmatch(n))
        patterns.setdefault(general if exact else re.escape(name), None)
    return "|".join(patterns)


def lora_config(model: torch.nn.Module, settings: LoraSettings, is_vision: bool) -> LoraConfig:
    target = settings.target_modules
    if target == "auto":
        target = target_regex(model, settings)
    parts = vision_parts(model) if is_vision else None
    full = parts is not None and projector_mode(settings) == "full"
    return LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, bias=settings.bias,
        target_modules=target, task_type="CAUSAL_LM",
        modules_to_save=projector_modules_to_save(model, parts) if full else None,
    )


def projector_markers(model: torch.nn.Module) -> list[str]:
    """Dotted pieces naming the projector in parameter names (e.g. `.multi_modal_projector.`, `.visual.merger.`)."""
    parts = vision_parts(model)
    return [f".{parts.short(p)}." for p in parts.projector] if parts is not None else []


def in_projector(name: str, markers: list[str]) -> bool:
    return any(marker in f".{name}" for marker in markers)


def describe_trainable(model: torch.nn.Module, adapter: str, settings: LoraSettings) -> str:
    """One line: what adapter `adapter` trains, by part, and how many parameters."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    parts = vision_parts(base)
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        if f".{adapter}." not in name or not ("lora_" in name or "modules_to_save" in name):
            continue
        kind = "full copy" if "modules_to_save" in name else "LoRA"
        where = "language model"
        if parts is not None:
            clean = re.sub(rf"\.(lora_[AB]|modules_to_save)\.{re.escape(adapter)}\.", ".", name)
            clean = clean.removeprefix("base_model.model.")
            where = {"projector": "projector", "vision": "vision encoder"}.get(parts.part_of(clean), "language model")
        key = f"{where} ({kind})"
        counts[key] = counts.get(key, 0) + param.numel()
    total = sum(counts.values())
    detail = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    projector = f"; projector {projector_mode(settings)}" if parts is not None else ""
    return (f"adapter '{adapter}' trains {total:,} parameters: {detail} (LoRA r={settings.r} on "
            f"lora.targets {settings.targets}{projector})")
