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


def varied_questions(count: int = 10) -> list:
    """Text questions of very different lengths, in an order that mixes them."""
    from llava_cit.data.example import Example

    words = "what colour is the square on the left of the large circle in the picture".split()
    return [Example(id=str(i), turns=[(" ".join(words[: 1 + (i * 7) % len(words)]) + "?", "x")]) for i in range(count)]


def test_batches_are_cut_by_prompt_length_and_answers_come_back_in_input_order(monkeypatch, tiny_llava):
    from llava_cit.data.prompt_settings import PromptSettings
    from llava_cit.serve import generation

    encoder = PromptSettings().encoder(tiny_llava)
    questions = varied_questions()
    alone = [generation.generate_batch(tiny_llava.model, encoder, [q], 3)[0] for q in questions]
    batches, real = [], generation.generate_batch

    def spy(model, encoder, examples, *args, **kwargs):
        batches.append([ex.id for ex in examples])
        return real(model, encoder, examples, *args, **kwargs)

    monkeypatch.setattr(generation, "generate_batch", spy)
    outcomes = generation.generate_safely(tiny_llava.model, encoder, questions, batch_size=4, max_new_tokens=3)
    assert [answer for answer, _ in outcomes] == alone  # in input order, as each question answered alone
    lengths = {q.id: generation.prompt_length(encoder, q) for q in questions}
    cut = [lengths[i] for batch in batches for i in batch]
    assert cut == sorted(cut, reverse=True) and [len(b) for b in batches] == [4, 4, 2]

    def padding(order):  # padded prompt tokens of batches of 4 taken in this order
        groups = [order[k:k + 4] for k in range(0, len(order), 4)]
        return sum(max(lengths[i] for i in g) * len(g) - sum(lengths[i] for i in g) for g in groups)

    assert padding([i for b in batches for i in b]) < padding([q.id for q in questions])


def test_auto_batch_size_backs_off_on_out_of_memory_and_keeps_every_answer(monkeypatch, tiny_llava):
    from llava_cit.data.prompt_settings import PromptSettings
    from llava_cit.serve import generation

    encoder = PromptSettings().encoder(tiny_llava)
    questions = varied_questions(12)
    fixed = generation.generate_safely(tiny_llava.model, encoder, questions, batch_size=16, max_new_tokens=3)
    real, sizes = generation.generate_batch, []

    def small_gpu(model, encoder, examples, *args, **kwargs):
        sizes.append(len(examples))
        if len(examples) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real(model, encoder, examples, *args, **kwargs)

    monkeypatch.setattr(generation, "generate_batch", small_gpu)
    monkeypatch.setattr(generation, "auto_batch_size", lambda model, tokens: (8, "auto: 8 (test)"))
    model = tiny_llava.model
    monkeypatch.delattr(model, "_llava_cit_batch_cap", raising=False)
    assert generation.generate_safely(model, encoder, questions, batch_size="auto", max_new_tokens=3) == fixed
    assert sizes[0] == 8 and max(sizes[1:]) <= 4 and model._llava_cit_batch_cap == 2
    sizes.clear()  # the next evaluation on this model starts at the size that fitted
    assert generation.generate_safely(model, encoder, questions[:4], batch_size="auto", max_new_tokens=3) == fixed[:4]
    assert sizes == [2, 2]
    with pytest.raises(torch.OutOfMemoryError):  # a batch size the user fixed is not silently changed
        generation.generate_safely(model, encoder, questions, batch_size=8, max_new_tokens=3)
    del model._llava_cit_batch_cap


def test_eval_batch_size_auto_in_the_config_and_on_the_command_line():
    from llava_cit.config import load_config
    from llava_cit.evaluation.batch_size import parse_batch_size
    from llava_cit.util.errors import UserError

    assert load_config(None, ["tasks=[synth-shapes]", "eval.batch_size=auto"]).eval.batch_size == "auto"
    assert load_config(None, ["tasks=[synth-shapes]", "eval.batch_size=32"]).eval.batch_size == 32
    with pytest.raises(UserError, match="eval.batch_size"):
        load_config(None, ["tasks=[synth-shapes]", "eval.batch_size=big"])
    assert parse_batch_size("auto") == "auto" and parse_batch_size("8") == 8
    with pytest.raises(UserError, match="--batch-size"):
        parse_batch_size("0")
