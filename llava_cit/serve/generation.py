"""Batched greedy generation that never stops on one bad sample.

A sample that cannot be served (an unreadable image, an empty question, a question that tokenizes to
nothing, a prompt longer than the model's positions) gets an error instead of an answer; the rest of
its batch is generated as usual. Generation stops at the end-of-sequence token.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable

import torch

from llava_cit.data.collation import Encoder
from llava_cit.data.example import Example
from llava_cit.data.images import BadImage
from llava_cit.evaluation.batch_size import BackingOff, auto_batch_size

logger = logging.getLogger(__name__)

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


def prompt_length(encoder: Encoder, example: Example) -> int:
    """The prompt's tokens before image expansion: what orders evaluation batches (similar lengths together). A
    sample whose prompt cannot be built counts 0 (it is answered with its error)."""
    try:
        return len(encoder.tokenizer(encoder.prompt_text(example), add_special_tokens=False).input_ids)
    except Exception:  # noqa: BLE001 - sample_problem names what is wrong with it
        return 0


def resolved_batch_size(model, encoder: Encoder, longest: Example, budgets: list[int],
                        batch_size: int | str) -> BackingOff:
    """`batch_size` as given, or for "auto" the largest that fits (llava_cit.evaluation.batch_size) for the `longest`
    prompt plus the largest budget, capped where an earlier batch on this model ran out of memory."""
    if batch_size != "auto":
        return BackingOff(int(batch_size), backs_off=False)
    try:
        tokens = len(encoder.encode_prompt(longest)) + max(budgets)  # the prompt with its image expanded
    except Exception:  # noqa: BLE001 - a sample that cannot be encoded is answered with its error later
        tokens = prompt_length(encoder, longest) + max(budgets)
    size, why = auto_batch_size(model, tokens)
    cap = getattr(model, "_llava_cit_batch_cap", None)
    if cap is not None and cap < size:
        size, why = cap, f"{why}; {cap} after an earlier out-of-memory"
    logger.info("eval.batch_size %s", why)
    return BackingOff(size, say=logger.warning)


def generate_safely(model, encoder: Encoder, examples: list[Example], batch_size: int | str = 16,
                    max_new_tokens: int | list[int] = 16, adapter_names: list[str] | None = None,
                    check: Callable[[Example], str | None] | None = None,
                    progress: Callable[[int], None] | None = None, gathered=None) -> list[Outcome]:
    """(answer, error) per example, in input order; images are opened batch by batch, never all at once.
    `max_new_tokens`: one budget, or one per example. Batches are cut from the examples ordered by prompt length,
    longest first (less padding; an out-of-memory shows at the first batch). `batch_size`: a number, or "auto"
    (the largest that fits, halved where a batch runs out of memory: no answered sample is lost)."""
    model.eval()
    if not examples:
        return []
    budgets = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(examples)
    lengths = [prompt_length(encoder, example) for example in examples]
    order = sorted(range(len(examples)), key=lambda i: -lengths[i])  # stable: ties keep their order
    sizing = resolved_batch_size(model, encoder, examples[order[0]], budgets, batch_size)
    first_size = sizing.size
    outcomes: list[Outcome | None] = [None] * len(examples)
    start = 0
    while start < len(order):
        chunk = order[start:start + sizing.size]
        start += len(chunk)
        ready: list[int] = []
        loaded: list[Example] = []
        for i in chunk:
            example = examples[i]
            problem = sample_problem(encoder, example, budgets[i]) or (check(example) if check else None)
            if problem is None and example.has_image:
                try:
                    example = dataclasses.replace(example, image=example.load_image())
                except BadImage as err:
                    problem = str(err)
            if problem is not None:
                outcomes[i] = (None, problem)
            else:
                ready.append(i)
                loaded.append(example)
        if loaded:
            answers = sizing.run(list(zip(ready, loaded)), lambda part: generate_batch(
                model, encoder, [ex for _, ex in part], [budgets[i] for i, _ in part],
                [adapter_names[i] for i, _ in part] if adapter_names is not None else None, gathered))
            for i, text in zip(ready, answers):
                outcomes[i] = (text, None)
        if progress is not None:
            progress(len(chunk))
    if sizing.size < first_size:  # backed off: the next call on this model starts where this one ended
        model._llava_cit_batch_cap = sizing.size
    return outcomes
