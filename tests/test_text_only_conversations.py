"""A text-only conversation in a LLaVA batch (as llava_v1_5_mix665k.json has ~40k of): it gets no image slot and
no pixel values, and the images of the other rows stay paired with their own slots."""

import torch

from llava_cit.data import synthetic
from llava_cit.data.collation import Encoder, TrainCollator
from llava_cit.data.example import Example


def _rows(tiny_llava):
    encoder = Encoder(tiny_llava, max_length=256)
    shapes = synthetic.generate("synth-shapes", 2, seed=0)
    chat = Example(id="chat-1", turns=[("What is two plus two?", "four"), ("And three plus three?", "six")])
    return encoder, [shapes[0], chat, shapes[1]]


def test_a_mixed_training_batch_gives_each_row_what_it_gets_alone(tiny_llava):
    encoder, examples = _rows(tiny_llava)
    collate = TrainCollator(tiny_llava.tokenizer.pad_token_id)
    items = [encoder.encode_train(ex) for ex in examples]
    assert "pixel_values" not in items[1] and all("pixel_values" in items[i] for i in (0, 2))
    model = tiny_llava.model.eval()
    with torch.no_grad():
        mixed = model(**{k: v for k, v in collate(items).items() if k != "labels"}).logits
        for row, item in enumerate(items):
            alone_batch = collate([item])
            assert ("pixel_values" in alone_batch) == (row != 1)
            alone = model(**{k: v for k, v in alone_batch.items() if k != "labels"}).logits[0]
            torch.testing.assert_close(mixed[row, :len(item["input_ids"])], alone, rtol=1e-4, atol=1e-4)
    batch = collate(items)
    assert batch["pixel_values"].shape[0] == 2  # one per image slot, not one per row
    loss = tiny_llava.model(**batch).loss
    assert torch.isfinite(loss)


def test_a_text_only_row_generates_as_it_does_alone(tiny_llava):
    encoder, examples = _rows(tiny_llava)
    model = tiny_llava.model.eval()
    batch = encoder.generation_batch(examples)
    assert batch["pixel_values"].shape[0] == 2
    text_only = encoder.generation_batch([examples[1]])
    assert "pixel_values" not in text_only
    with torch.no_grad():
        together = model.generate(**batch, max_new_tokens=4, do_sample=False)[:, batch["input_ids"].shape[1]:]
        alone = model.generate(**text_only, max_new_tokens=4, do_sample=False)[:, text_only["input_ids"].shape[1]:]
    assert together[1].tolist() == alone[0].tolist()
