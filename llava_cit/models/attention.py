"""Which attention kernel a model loads with: `attn_implementation: auto` (the default) takes FlashAttention-2 where
it can run (a CUDA GPU and the flash-attn package), else PyTorch's SDPA; any other value (sdpa, eager,
flash_attention_2, flash_attention_3, ...) is passed to transformers as given."""

from __future__ import annotations

import importlib.util

import torch

from llava_cit.util.errors import UserError

KNOWN = ("auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


def attention_implementation(requested: str = "auto") -> tuple[str, str]:
    """(the implementation to load with, why)."""
    if requested not in KNOWN:
        raise UserError(f"attn_implementation: '{requested}' is not one of {', '.join(KNOWN)}")
    if requested != "auto":
        if requested.startswith("flash_attention") and not torch.cuda.is_available():
            raise UserError(f"attn_implementation: {requested} needs a CUDA GPU; use sdpa (or auto) on a CPU")
        return requested, f"attn_implementation: {requested} in the config"
    if not torch.cuda.is_available():
        return "sdpa", "auto: sdpa (no GPU)"
    if importlib.util.find_spec("flash_attn") is None:
        return "sdpa", "auto: sdpa (flash-attn is not installed; pip install flash-attn for FlashAttention-2)"
    return "flash_attention_2", "auto: flash_attention_2 (a CUDA GPU and flash-attn are here)"
