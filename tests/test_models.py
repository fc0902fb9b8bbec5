import pytest
import torch
from peft import PeftModel

from llava_cit.config import LoraSettings
from llava_cit.data.collation import IGNORE_INDEX, Encoder, TrainCollator
from llava_cit.data.example import Example
from llava_cit.data.synthetic import generate
from llava_cit.models.loading import load_model
from llava_cit.train.trainer import add_adapter, language_model_target_regex
from llava_cit.util.errors import UserError


def test_tiny_llava_forward_and_generate_through_processor(tiny_llava):
    examples = generate("synth-ocr", 2)
    inputs = tiny_llava.processor(text=["USER: <image>\nWhat is written on the sign? ASSISTANT:"] * 2,
                                  images=[e.image for e in examples], return_tensors="pt", padding=True)
    # the processor expanded <image> into one placeholder per image patch (16 for 32px / 8px patches)
    image_id = tiny_llava.tokenizer.convert_tokens_to_ids("<image>")
    assert int((inputs["input_ids"][0] == image_id).sum()) == 16
    logits = tiny_llava.model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape and logits.shape[2] == len(tiny_llava.tokenizer)
    out = tiny_llava.model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape == (2, inputs["input_ids"].shape[1] + 3)


def test_encoder_matches_processor_token_for_token(tiny_llava):
    example = generate("synth-shapes", 1)[0]
    encoder = Encoder(tiny_llava)
    ours = encoder.encode_prompt(example)
    theirs = tiny_llava.processor(text=f"USER: {example.instruction} ASSISTANT:", images=[example.image],
                                  return_tensors="pt")["input_ids"][0].tolist()
    assert ours == theirs


def test_label_masking_multi_turn(tiny_llava):
    image = generate("synth-ocr", 1)[0].image
    example = Example(id="m", image=image, turns=[("<image>\nWhat is written on the sign?", "cat"),
                                                  ("What color is the shape on the left?", "red")])
    item = Encoder(tiny_llava).encode_train(example)
    tok = tiny_llava.tokenizer
    supervised = [tok.convert_ids_to_tokens(i) for i, lab in zip(item["input_ids"], item["labels"])
                  if lab != IGNORE_INDEX]
    assert supervised == ["cat", "</s>", "red", "</s>"]
    assert all(lab in (IGNORE_INDEX, i) for i, lab in zip(item["input_ids"], item["labels"]))


def test_padding_sides(tiny_llava):
    encoder = Encoder(tiny_llava)
    examples = [Example(id="a", image=generate("synth-ocr", 1)[0].image, turns=[("<image>\nWhat is written on the sign?", "cat")]),
                Example(id="b", image=generate("synth-ocr", 1)[0].image,
                        turns=[("<image>\nWhat is written on the sign? What is the title of this book?", "cat")])]
    train = TrainCollator(tiny_llava.tokenizer.pad_token_id)([encoder.encode_train(e) for e in examples])
    assert train["attention_mask"][0, -1] == 0 and train["attention_mask"][0, 0] == 1  # right padding
    assert (train["labels"][0][train["attention_mask"][0] == 0] == IGNORE_INDEX).all()
    gen = encoder.generation_batch(examples)
    assert gen["attention_mask"][0, 0] == 0 and gen["attention_mask"][0, -1] == 1  # left padding
    assert gen["input_ids"][0, -1] == gen["input_ids"][1, -1]  # both prompts end at "ASSISTANT:"


def test_lora_targets_language_model_only(tiny_llava):
    regex = language_model_target_regex(tiny_llava.model)
    model, _ = load_model("tiny-llava").model, None
    peft = add_adapter(model, "a", LoraSettings(r=4, alpha=8, projector_lr=None), is_vision=True)
    lora_names = [n for n, _ in peft.named_parameters() if "lora_" in n]
    assert lora_names and all("language_model" in n for n in lora_names)
    assert not any("vision_tower" in n for n in lora_names)
    assert "language_model" in regex


def test_adapter_save_load_identical_logits(tmp_path):
    loaded = load_model("tiny-llava")
    peft = add_adapter(loaded.model, "task", LoraSettings(r=4, alpha=8, projector_lr=None), is_vision=True)
    with torch.no_grad():  # make the adapter (and projector copy) non-trivial
        for name, param in peft.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                param.add_(torch.randn_like(param) * 0.05)
    example = generate("synth-shapes", 1)[0]
    batch = Encoder(loaded).generation_batch([example])
    peft.eval()
    before = peft(**batch).logits
    peft.save_pretrained(tmp_path, selected_adapters=["task"])
    folder = next(p.parent for p in tmp_path.rglob("adapter_config.json"))
    assert (folder / "adapter_model.safetensors").is_file()
    fresh = PeftModel.from_pretrained(load_model("tiny-llava").model, folder)
    fresh.eval()
    after = fresh(**batch).logits
    assert torch.equal(before, after)


def test_4bit_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match="4-bit .* needs a CUDA GPU"):
        load_model("tiny-llava", load_in_4bit=True)


def test_unknown_model_spec():
    with pytest.raises(UserError, match="unknown model spec 'no-such-model'"):
        load_model("no-such-model")


def test_4bit_without_bitsandbytes_names_the_extra(monkeypatch):
    import importlib.util

    from llava_cit.models import loading

    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    monkeypatch.setattr(loading.torch.cuda, "is_available", lambda: True)  # as on a GPU machine without the extra
    with pytest.raises(UserError, match=r'needs bitsandbytes: pip install -e "\.\[qlora\]"'):
        loading.quantization_config(True)
