"""`eval.batch_size: auto`: the largest generation batch that fits, and a step back when it does not.

The estimate: the weights the model holds now, plus per sample its KV cache at the longest prompt + budget
(2 x layers x key/value width x tokens x bytes), the prefill's activations (hidden x tokens x 34 bytes, as the
plan counts a layer) and the last position's fp32 logits; the largest power of two up to 256 whose total stays under
90% of the GPU's free memory. On a CPU, 16. If a batch still runs out of memory, it is split in halves and
each half answered on its own (answers already produced are kept), down to one sample; the smaller size is kept
for the rest of the evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from llava_cit.util.errors import UserError

CPU_DEFAULT = 16
LARGEST = 256
USABLE = 0.90
T = TypeVar("T")
R = TypeVar("R")


def parse_batch_size(text: str) -> int | str:
    """A command line's `--batch-size`: a positive number, or auto."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise UserError(f"--batch-size {text!r}: expected a positive number or auto")
    return size


def per_sample_bytes(model: torch.nn.Module, tokens: int) -> int:
    text = model.config.get_text_config()
    heads = getattr(text, "num_attention_heads", 1)
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    width = next(model.parameters()).element_size()
    kv_cache = 2 * text.num_hidden_layers * kv_heads * head_dim * tokens * width
    prefill = text.hidden_size * tokens * 34
    logits = text.vocab_size * 4
    return kv_cache + prefill + logits


def auto_batch_size(model: torch.nn.Module, tokens: int, free_bytes: int | None = None) -> tuple[int, str]:
    """(batch size, why) for generating `tokens` (prompt + budget) per sample."""
    if free_bytes is None:
        if not torch.cuda.is_available():
            return CPU_DEFAULT, f"auto: {CPU_DEFAULT} on a CPU"
        free_bytes, _ = torch.cuda.mem_get_info()
    each = per_sample_bytes(model, tokens)
    budget = free_bytes * USABLE
    size = 1
    while size * 2 <= LARGEST and size * 2 * each <= budget:
        size *= 2
    return size, (f"auto: {size} ({each / 2**20:.0f} MB a sample at {tokens} tokens; {free_bytes / 2**30:.1f} GB "
                  f"free, {USABLE:.0%} used)")


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


class BackingOff:
    """Answers items in batches of at most `size`, halving a batch that runs out of memory (and every later one)."""

    def __init__(self, size: int, say: Callable[[str], None] = lambda text: None, backs_off: bool = True):
        self.size = size
        self.say = say
        self.backs_off = backs_off  # False: a fixed batch size, whose out-of-memory is the caller's to see

    def run(self, items: Sequence[T], answer: Callable[[Sequence[T]], list[R]]) -> list[R]:
        """`answer(batch)` -> one result per item; `items` must fit in one batch of the current size."""
        try:
            return answer(items)
        except Exception as err:
            if not self.backs_off or not is_out_of_memory(err) or len(items) == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = (len(items) + 1) // 2
            if half < self.size:
                self.size = half
                self.say(f"out of memory at a batch of {len(items)}: going on with batches of {half}")
            return self.run(items[:half], answer) + self.run(items[half:], answer)
