"""Training batches of similar length, image and text-only examples apart (LLaVA's `group_by_modality_length`).

A random batch pads every row to its longest; on LLaVA-1.5's mixture (short VQA answers beside long conversations)
most of a random batch's tokens are padding. LLaVA's trainer therefore groups by length within each modality:

    1. each modality's examples are shuffled and cut into megabatches of one optimizer step (per-device batch x
       processes x accumulation); each megabatch is sorted longest first and cut into its micro-batches in that
       order, so a micro-batch holds examples of similar length and the processes of one accumulation step get
       neighbouring micro-batches (similar work). LLaVA instead deals a sorted megabatch out to balance each
       micro-batch's total length, which puts long and short examples together and pads more (compared by
       scripts/bench/padding_fraction.py); transformers' LengthGroupedSampler cuts in order, as here;
    2. the megabatches of both modalities are shuffled together; each modality's last megabatch is held back, and
       the two go together at the end (the first megabatch's worth of them, if they make one, at the start).

Lengths are LLaVA's: the words of every turn, positive for an example with an image, negative for a text-only one.
The order is drawn from one seed taken from torch's global generator when an epoch starts, as the Trainer's
RandomSampler does, so a resumed run sees the same order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from llava_cit.data.example import Example


def modality_length(example: Example) -> int:
    """Words in the whole conversation and its text input (at least 1), negative for an example without an image."""
    words = sum(len(instruction.split()) + len(answer.split()) for instruction, answer in example.turns)
    words = max(1, words + len(example.input.split()))
    return words if example.has_image else -words


def _length_grouped(lengths: Sequence[int], megabatch: int, generator: torch.Generator) -> list[int]:
    order = torch.randperm(len(lengths), generator=generator).tolist()
    return [i for start in range(0, len(order), megabatch)
            for i in sorted(order[start:start + megabatch], key=lambda i: lengths[i], reverse=True)]


def modality_grouped_order(lengths: Sequence[int], micro_batch: int, micro_batches: int,
                           generator: torch.Generator) -> list[int]:
    """Example indices in LLaVA's length-grouped order (see the module's docstring): `micro_batch` examples per
    device and step, `micro_batches` = processes x gradient accumulation per optimizer step."""
    if any(length == 0 for length in lengths):
        raise ValueError("a length of 0: image examples count positive, text-only negative")
    megabatch = micro_batch * micro_batches
    by_modality = []
    for sign in (1, -1):
        members = [i for i, length in enumerate(lengths) if length * sign > 0]
        sizes = [abs(lengths[i]) for i in members]
        ordered = [members[i] for i in _length_grouped(sizes, megabatch, generator)]
        by_modality.append([ordered[k:k + megabatch] for k in range(0, len(ordered), megabatch)])
    image_blocks, text_blocks = by_modality
    leftover = (image_blocks.pop() if image_blocks else []) + (text_blocks.pop() if text_blocks else [])
    blocks = image_blocks + text_blocks
    blocks = [blocks[i] for i in torch.randperm(len(blocks), generator=generator).tolist()]
    if len(leftover) >= megabatch:
        blocks.insert(0, leftover[:megabatch])
        leftover = leftover[megabatch:]
    if leftover:
        blocks.append(leftover)
    return [i for block in blocks for i in block]


class ModalityLengthGroupedSampler(Sampler[int]):
    """The Trainer's sampler when `train.group_by_length` is on."""

    def __init__(self, lengths: Sequence[int], micro_batch: int, micro_batches: int):
        self.lengths = list(lengths)
        self.micro_batch = micro_batch
        self.micro_batches = micro_batches

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        seed = int(torch.empty((), dtype=torch.int64).random_().item())  # one draw, as torch's RandomSampler
        generator = torch.Generator().manual_seed(seed)
        return iter(modality_grouped_order(self.lengths, self.micro_batch, self.micro_batches, generator))
