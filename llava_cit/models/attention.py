"""Which attention kernel a model loads with: `attn_implementation: auto` (the default) takes FlashAttention-2 where
it can run (a CUDA GPU and the flash-attn package; a model class without it falls back, llava_cit.models.loading),
else transformers' own default (PyTorch's SDPA where the model supports it, eager otherwise: BLOOM); any other value
(sdpa, eager, flash_attention_2, flash_attention_3, ...) is passed to transformers as given."""

from __future__ import annotations

import importlib.util

import torch

from llava_cit.util.errors import UserError

KNOWN = ("auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


def attention_implementation(requested: str = "auto") -> tuple[str | None, str]:
    """(the implementation to load with, None: transformers' default; why)."""
    if requested not in KNOWN:
        raise UserError(f"attn_implementation: '{requested}' is not one of {', '.join(KNOWN)}")
    if requested != "auto":
        if requested.startswith("flash_attention") and not torch.cuda.is_available():
            raise UserError(f"attn_implementation: {requested} needs a CUDA GPU; use sdpa (or auto) on a CPU")
        return requested, f"attn_implementation: {requested} in the config"
    if not torch.cuda.is_available():
        return None, "auto: transformers' default (sdpa where the model has it; no GPU)"
    if importlib.util.find_spec("flash_attn") is None:
        return None, ("auto: transformers' default (sdpa where the model has it; pip install flash-attn for "
                      "FlashAttention-2)")
    return "flash_attention_2", "auto: flash_attention_2 (a CUDA GPU and flash-attn are here)"
