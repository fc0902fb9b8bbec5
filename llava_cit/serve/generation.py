"""Batched greedy generation that never stops on one bad sample.

A sample that cannot be served (an unreadable image, an empty question, a question that tokenizes to
nothing, a prompt longer than the model's positions) gets an error instead of an answer; the rest of
its batch is generated as usual. Generation stops at the end-of-sequence token.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import torch

from llava_cit.data.collation import Encoder
from llava_cit.data.example import Example
from llava_cit.data.images import BadImage

Outcome = tuple[str | None, str | None]  # (answer, error): exactly one is None


def sample_problem(encoder: Encoder, example: Example, max_new_tokens: int) -> str | None:
    """Why `example` cannot be answered (None if it can), checked before it reaches the model."""
    question = example.turns[-1][0].replace("<image>", "").strip()
    if not question:
        return "empty question"
    if not encoder.tokenizer(question, add_special_tokens=False).input_ids:
        return "the question tokenizes to nothing"
    limit = encoder.max_positions
    if limit is not None:
        length = len(encoder.encode_prompt(example))
        if length + max_new_tokens > limit:
            return (f"question too long: a prompt of {length} tokens plus {max_new_tokens} to generate exceeds "
                    f"the model's {limit} positions")
    return None


@torch.inference_mode()
def generate_batch(model, encoder: Encoder, examples: list[Example], max_new_tokens: int | list[int] = 16,
                   adapter_names: list[str] | None = None, gathered=None) -> list[str]:
    """Answers for one batch, decoded and stripped; `adapter_names[i]` serves example i (through PEFT's mixed
    batch, or through `gathered`, a llava_cit.serve.gathered_lora.GatheredLoRA, when given). `max_new_tokens` may
    be one budget per example: the batch generates to the largest and each answer keeps its own budget's
    tokens (greedy decoding: the same tokens as generating that row alone to its budget)."""
    budgets = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(examples)
    batch = encoder.generation_batch(examples)
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    if "pixel_values" in batch:
        batch["pixel_values"] = batch["pixel_values"].to(next(model.parameters()).dtype)
    kwargs = {"adapter_names": adapter_names} if adapter_names is not None and gathered is None else {}
    rows = gathered.rows(adapter_names) if gathered is not None else contextlib.nullcontext()
    with rows:
        output = model.generate(**batch, max_new_tokens=max(budgets), do_sample=False,
                                pad_token_id=encoder.tokenizer.pad_token_id,
                                eos_token_id=encoder.stop_token_ids, synced_gpus=False, **kwargs)
    new_tokens = output[:, batch["input_ids"].shape[1]:]
    return [encoder.tokenizer.decode(row[:budget], skip_special_tokens=True).strip()
            for row, budget in zip(new_tokens, budgets)]


def generate_safely(model, encoder: Encoder, examples: list[Example], batch_size: int = 16,
                    max_new_tokens: int | list[int] = 16, adapter_names: list[str] | None = None,
                    check: Callable[[Example], str | None] | None = None,
                    progress: Callable[[int], None] | None = None, gathered=None) -> list[Outcome]:
    """(answer, error) per example, in order; images are opened batch by batch, never all at once.
    `max_new_tokens`: one budget, or one per example."""
    model.eval()
    budgets = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(examples)
    outcomes: list[Outcome] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        names = adapter_names[start:start + batch_size] if adapter_names is not None else None
        chunk_budgets = budgets[start:start + batch_size]
        results: list[Outcome | None] = [None] * len(chunk)
        ready: list[int] = []
        loaded: list[Example] = []
        for i, example in enumerate(chunk):
            problem = sample_problem(encoder, example, chunk_budgets[i]) or (check(example) if check else None)
            if problem is None and example.has_image:
                try:
                    example = dataclasses.replace(example, image=example.load_image())
                except BadImage as err:
                    problem = str(err)
            if problem is not None:
                results[i] = (None, problem)
            else:
                ready.append(i)
                loaded.append(example)
        if loaded:
            answers = generate_batch(model, encoder, loaded, [chunk_budgets[i] for i in ready],
                                     [names[i] for i in ready] if names is not None else None, gathered)
            for i, answer in zip(ready, answers):
                results[i] = (answer, None)
        outcomes += results
        if progress is not None:
            progress(len(chunk))
    return outcomes
