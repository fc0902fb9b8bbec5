"""The plan's peak-memory formula (stated in llava_cit/train/planning.py's docstring), shared by `llava-cit plan` and
the trainer's `gradient_checkpointing: auto` decision (llava_cit/train/checkpointing.py)."""

from __future__ import annotations

from dataclasses import dataclass

GB = 1024 ** 3
CHECKPOINTING_MARGIN = 0.10  # auto recomputes when the peak without it plus this margin exceeds the free memory


@dataclass
class ModelFacts:
    base: int
    trainable: int
    quantizable: int  # parameters of the language model's linear layers (what 4-bit quantizes)
    hidden: int
    layers: int
    vocab: int
    image_tokens: int


def peak_memory_gb(facts: ModelFacts, batch_size: int, gpus: int, zero: int, four_bit: bool,
                   tokens_per_sample: int, checkpointing: bool) -> float:
    if four_bit:
        weights = facts.quantizable * 0.5 * 1.04 + (facts.base - facts.quantizable) * 4
    else:
        weights = facts.base * 2
    whole = weights
    if zero == 3:
        weights /= gpus
    t = facts.trainable
    state = {0: 16 * t, 2: 8 * t + 8 * t / gpus, 3: 16 * t / gpus}[zero]
    b, s, h, layers = batch_size, tokens_per_sample, facts.hidden, facts.layers
    wide = 2 if four_bit else 1  # a 4-bit base keeps its activations in fp32 (twice bf16's bytes)
    if checkpointing:
        activations = wide * (b * s * h * 2 * layers + b * s * 34 * h) + b * s * facts.vocab * 4
    else:
        activations = wide * b * s * 34 * h * layers + b * s * facts.vocab * 4
    peak = 1.1 * (weights + state + activations) + 1.5 * GB
    if zero == 3:  # between stages every rank holds the whole model again (evaluation, saving; llava_cit/train/zero3_weights.py)
        peak = max(peak, 1.1 * (whole + 4 * t) + 1.5 * GB)
    return peak / GB
