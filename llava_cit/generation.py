"""Batched greedy generation, optionally with a different adapter per sample (PEFT `adapter_names`)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from llava_cit.collation import Encoder
from llava_cit.data.example import Example

BASE = "__base__"  # PEFT's name for "no adapter" in adapter_names


def batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@torch.inference_mode()
def generate_batch(model, encoder: Encoder, examples: list[Example], max_new_tokens: int = 16,
                   adapter_names: list[str] | None = None) -> list[str]:
    """Answers for one batch, decoded and stripped; `adapter_names[i]` serves example i."""
    batch = encoder.generation_batch(examples)
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    if "pixel_values" in batch:
        batch["pixel_values"] = batch["pixel_values"].to(next(model.parameters()).dtype)
    kwargs = {"adapter_names": adapter_names} if adapter_names is not None else {}
    output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                            pad_token_id=encoder.tokenizer.pad_token_id, **kwargs)
    new_tokens = output[:, batch["input_ids"].shape[1]:]
    return [text.strip() for text in encoder.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def generate(model, encoder: Encoder, examples: list[Example], batch_size: int = 16, max_new_tokens: int = 16,
             adapter_names: list[str] | None = None, progress=None) -> list[str]:
    model.eval()
    answers: list[str] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        names = adapter_names[start:start + batch_size] if adapter_names is not None else None
        answers += generate_batch(model, encoder, chunk, max_new_tokens, names)
        if progress is not None:
            progress(len(chunk))
    return answers
