"""eval.batch_size: auto — the estimate picks the largest batch that fits; out of memory halves and keeps answers."""

from __future__ import annotations

import pytest
import torch

from llava_cit.evaluation.batch_size import CPU_DEFAULT, BackingOff, auto_batch_size, per_sample_bytes
from llava_cit.models.tiny import tiny_llava


def test_auto_picks_the_largest_power_of_two_under_the_free_memory(monkeypatch):
    model, _ = tiny_llava(seed=0)
    each = per_sample_bytes(model, 600)
    assert auto_batch_size(model, 600, free_bytes=int(each * 8 / 0.9) + 1)[0] == 8
    assert auto_batch_size(model, 600, free_bytes=int(each * 8 / 0.9) - 1)[0] == 4
    assert auto_batch_size(model, 600, free_bytes=10 ** 15)[0] == 256
    assert per_sample_bytes(model, 1200) > per_sample_bytes(model, 600)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto_batch_size(model, 600) == (CPU_DEFAULT, f"auto: {CPU_DEFAULT} on a CPU")


def test_out_of_memory_halves_the_batch_and_loses_no_answer():
    seen = []

    def answer(batch):
        seen.append(len(batch))
        if len(batch) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in batch]

    messages = []
    backing = BackingOff(8, say=messages.append)
    assert backing.run(list(range(8)), answer) == [x * 10 for x in range(8)]
    assert backing.size == 2 and seen == [8, 4, 2, 2, 4, 2, 2]
    assert len(messages) == 2 and "batches of 4" in messages[0]
    assert backing.run([1, 2], answer) == [10, 20]


def test_other_errors_and_a_single_sample_out_of_memory_are_raised():
    backing = BackingOff(4)
    with pytest.raises(ValueError):
        backing.run([1, 2], lambda batch: (_ for _ in ()).throw(ValueError("bad")))
    with pytest.raises(torch.OutOfMemoryError):
        backing.run([1], lambda batch: (_ for _ in ()).throw(torch.OutOfMemoryError("out of memory")))
