"""`train.gradient_checkpointing: auto`: recompute activations only when the batch would not fit without it.

Recomputing every layer's activations in the backward pass costs about a third more compute per step; it is
worth it only when the activations of the run's batch do not fit. With `auto` (the default) the trainer asks the
plan's memory formula (llava_cit/train/planning.py, checked within 15% of measured peaks) for the peak of this
model, batch and sequence length without checkpointing, and turns checkpointing on only when that peak plus a
10% margin exceeds the GPU's free memory. The decision and its reason are printed and stored with the stage's
training record (`gradient_checkpointing` in the manifest). `true`/`false` are taken as given; on a CPU, `auto`
is off (nothing to fit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from llava_cit.config import TrainSettings
from llava_cit.data.collation import Encoder
from llava_cit.data.example import Example
from llava_cit.train.memory_formula import CHECKPOINTING_MARGIN as MARGIN
from llava_cit.train.memory_formula import GB, ModelFacts, peak_memory_gb


@dataclass
class CheckpointingChoice:
    on: bool
    reason: str

    def record(self) -> dict:
        return {"on": self.on, "reason": self.reason}


def longest_sample(examples: list[Example], encoder: Encoder, max_length: int, probe: int = 512) -> int:
    """Tokens of the longest of the first `probe` examples (image tokens included), at most `max_length`."""
    longest = max(len(encoder.encode_train(ex, pixels=False)["input_ids"]) for ex in examples[:probe])
    return min(longest, max_length)


def zero_stage() -> int:
    """The DeepSpeed ZeRO stage of this launch (0 without DeepSpeed), as accelerate's launcher exports it."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() not in ("1", "true"):
        return 0
    return int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2") or 2)


def estimated_peak_gb(model: torch.nn.Module, settings: TrainSettings, tokens: int, checkpointing: bool,
                      processes: int = 1) -> float:
    """The plan's peak-memory formula for this in-memory model (its trainable parameters as they are now)."""
    text = model.config.get_text_config()
    quantizable = sum(m.weight.numel() for n, m in model.named_modules()
                      if isinstance(m, torch.nn.Linear) and "lm_head" not in n and "vision" not in n
                      and "projector" not in n and "lora_" not in n)
    facts = ModelFacts(base=sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n),
                       trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                       quantizable=quantizable, hidden=text.hidden_size, layers=text.num_hidden_layers,
                       vocab=text.vocab_size, image_tokens=0)
    four_bit = bool(getattr(model, "is_loaded_in_4bit", False))
    return peak_memory_gb(facts, settings.batch_size, processes, zero_stage(), four_bit, tokens, checkpointing)


def choose(settings: TrainSettings, model: torch.nn.Module, examples: list[Example], encoder: Encoder,
           free_bytes: int | None = None, processes: int = 1) -> CheckpointingChoice:
    """Whether to recompute activations in this stage, and why (`choose_for_tokens` at the stage's longest sample)."""
    setting = settings.gradient_checkpointing
    if setting is True or setting is False:
        return CheckpointingChoice(setting, f"train.gradient_checkpointing: {str(setting).lower()} in the config")
    if free_bytes is None and not torch.cuda.is_available():
        return CheckpointingChoice(False, "auto: off on a CPU (no GPU memory to fit)")
    tokens = longest_sample(examples, encoder, settings.max_length)
    return choose_for_tokens(settings, model, tokens, free_bytes, processes)


def choose_for_tokens(settings: TrainSettings, model: torch.nn.Module, tokens: int, free_bytes: int | None = None,
                      processes: int = 1) -> CheckpointingChoice:
    """auto's decision for samples of `tokens`. `free_bytes`: the GPU memory this process can use (None: read from
    CUDA, the device's free memory plus what this process already holds, since the estimate counts the weights
    already loaded; no GPU: off)."""
    if free_bytes is None:
        if not torch.cuda.is_available():
            return CheckpointingChoice(False, "auto: off on a CPU (no GPU memory to fit)")
        free_bytes = torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved()
    without = estimated_peak_gb(model, settings, tokens, checkpointing=False, processes=processes)
    free = free_bytes / GB
    if without * (1 + MARGIN) <= free:
        return CheckpointingChoice(False, f"auto: off (the plan's peak without it, {without:.1f} GB at batch "
                                          f"{settings.batch_size} x {tokens} tokens, fits {free:.1f} GB available with a "
                                          f"{MARGIN:.0%} margin)")
    with_it = estimated_peak_gb(model, settings, tokens, checkpointing=True, processes=processes)
    return CheckpointingChoice(True, f"auto: on (the plan's peak without it, {without:.1f} GB at batch "
                                     f"{settings.batch_size} x {tokens} tokens, does not fit {free:.1f} GB available with a "
                                     f"{MARGIN:.0%} margin; with it {with_it:.1f} GB)")


def turn_off(model: torch.nn.Module) -> None:
    """Checkpointing off, with the input-grad hooks its enabling added: transformers removes those only for models it
    wrapped itself, so on a get_peft_model model they would keep the frozen vision tower in the backward pass."""
    if getattr(model, "is_gradient_checkpointing", False):
        model.gradient_checkpointing_disable()
    if hasattr(model, "disable_input_require_grads"):
        model.disable_input_require_grads()
