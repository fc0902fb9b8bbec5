"""Length-grouped training batches (LLaVA's group_by_modality_length): a permutation, one modality per batch, less
padding than random batches."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from llava_cit.data.example import Example
from llava_cit.train.length_grouping import (
    ModalityLengthGroupedSampler,
    modality_grouped_order,
    modality_length,
)


def _lengths(seed: int, n: int = 1000) -> list[int]:
    """Short VQA-like image examples, long conversations, text-only ones of any length (signed as LLaVA does)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.5:
            out.append(rng.randint(8, 30))
        elif kind < 0.8:
            out.append(rng.randint(100, 600))
        else:
            out.append(-rng.randint(20, 1500))
    return out


def _padding(order: list[int], lengths: list[int], batch: int) -> float:
    """The padding fraction of micro-batches in `order` (scripts/bench/padding_fraction.py's, on unsigned lengths)."""
    from scripts.bench.padding_fraction import padding_fraction

    return padding_fraction(order, [abs(length) for length in lengths], batch)


@pytest.mark.parametrize("seed", range(5))
def test_order_is_a_permutation_with_one_modality_per_batch_and_less_padding(seed):
    lengths = _lengths(seed)
    micro_batch, micro_batches = 4, 8  # e.g. 2 processes x 4 accumulation steps
    order = modality_grouped_order(lengths, micro_batch, micro_batches, torch.Generator().manual_seed(seed))
    assert sorted(order) == list(range(len(lengths)))
    mixed = [start for start in range(0, len(order), micro_batch)
             if len({lengths[i] > 0 for i in order[start:start + micro_batch]}) > 1]
    assert len(mixed) <= 2  # only where the two modalities' held-back last megabatches meet (first and last block)
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    assert _padding(order, lengths, micro_batch) < 0.5 * _padding(shuffled, lengths, micro_batch)


def test_text_only_runs_and_modality_sign():
    order = modality_grouped_order([-5, -7, -1, -30, -2], 2, 1, torch.Generator().manual_seed(0))
    assert sorted(order) == [0, 1, 2, 3, 4]
    assert modality_length(Example("a", [("<image>\nWhat colour?", "red")], image_path=Path("x.png"))) == 4  # as LLaVA
    assert modality_length(Example("b", [("Summarize this text please", "ok")], input="two words")) == -7
    with pytest.raises(ValueError):
        modality_grouped_order([3, 0], 1, 1, torch.Generator())


def test_sampler_draws_its_order_from_the_global_generator():
    """As torch's RandomSampler: seeding torch (as the Trainer does, and restores on resume) fixes the order."""
    sampler = ModalityLengthGroupedSampler(_lengths(0, 200), 4, 2)
    torch.manual_seed(3)
    first = list(sampler)
    torch.manual_seed(3)
    assert list(sampler) == first
    assert list(sampler) != first  # the next epoch draws a new order


def test_padding_bench_on_a_llava_format_file(tmp_path):
    """scripts/bench/padding_fraction.py on a small LLaVA-format file: short image Q&A, long conversations, text-only
    chats; grouping pads less than random order and than LLaVA's dealt order."""
    from scripts.bench.padding_fraction import measure, record_lengths

    rng = random.Random(0)
    records = []
    for k in range(600):
        turns = rng.choice([1, 1, 1, 3, 8])
        text_only = rng.random() < 0.15
        conversations = []
        for _ in range(turns):
            conversations += [{"from": "human", "value": "word " * rng.randint(5, 40)},
                              {"from": "gpt", "value": "word " * (rng.randint(1, 3) if turns == 1 else rng.randint(20, 200))}]
        records.append({"id": str(k), "conversations": conversations, **({} if text_only else {"image": f"{k}.jpg"})})
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(records))
    signed, tokens = record_lengths(path, 576, 1.3)
    assert len(tokens) == 600 and sum(s < 0 for s in signed) == sum(not r.get("image") for r in records)
    result = measure(signed, tokens, 16, 8, seed=0)
    assert result["llava_cit_group_by_length"] < result["llava_group_by_modality_length"] <= result["random"] + 0.05
    assert result["tokens_computed_random_over_grouped"] > 1
