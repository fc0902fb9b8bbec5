"""Current image-text-to-text families through the whole toolkit, each as a tiny random model built from its own
config and processor classes (llava_cit.models.tiny_vlm): label masks against the processor's own chat-template
output, a two-stage run that trains, routes, evaluates and resumes after a kill, and mixed-adapter batches through
the gathered LoRA equal to each row answered alone."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_run_config
from PIL import Image
from test_runner import CrashAt

from llava_cit.config import LoraSettings, load_config
from llava_cit.continual.runner import ContinualRunner, Progress
from llava_cit.data import synthetic
from llava_cit.data.collation import IGNORE_INDEX, Encoder
from llava_cit.data.example import Example
from llava_cit.models.loading import load_model
from llava_cit.models.tiny_vlm import QWEN2_VL_TEMPLATE, TINY_FAMILIES
from llava_cit.serve.gathered_lora import GatheredLoRA
from llava_cit.serve.generation import generate_batch
from llava_cit.train.trainer import add_adapter

FAMILIES = list(TINY_FAMILIES)
WIDE = Image.new("RGB", (60, 30), (20, 90, 200))  # not square: dynamic resolution, tiles, anyres grids
EXAMPLES = [
    Example(id="one-turn", turns=[("What colour is the shape ?", "blue")], image=WIDE),
    Example(id="two-turns", turns=[("What colour is the shape ?", "blue"), ("What shape is it ?", "circle")],
            image=synthetic.generate("synth-shapes", 1)[0].image),
    Example(id="text-only", turns=[("What colour is red ?", "red")]),
]
# Qwen2.5-VL's template with the assistant's answer and end of turn marked for transformers' assistant-token mask
QWEN_MARKED = QWEN2_VL_TEMPLATE.replace(
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}",
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'][0]['text'] }}<|im_end|>"
    "{% endgeneration %}{{ '\\n' }}{% elif message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}")


def with_images(messages: list[dict], image) -> list[dict]:
    return [dict(m, content=[dict(c, image=image) if c["type"] == "image" else c for c in m["content"]])
            for m in messages]


def library_labels(processor, messages: list[dict], image, stops: set[int]) -> tuple[list[int], list[int]]:
    """Labels as transformers' processor renders the conversation: per answer, the tokens the full rendering adds to
    the prompt's rendering (both with the image, tokenized by the processor), up to the first stop token."""
    full = processor.apply_chat_template(with_images(messages, image), tokenize=True, return_dict=True)
    ids = [int(t) for t in full["input_ids"][0]]
    labels = [IGNORE_INDEX] * len(ids)
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = processor.apply_chat_template(with_images(messages[:k], image), tokenize=True, return_dict=True,
                                               add_generation_prompt=True)["input_ids"][0]
        upto = processor.apply_chat_template(with_images(messages[: k + 1], image), tokenize=True,
                                             return_dict=True)["input_ids"][0]
        assert [int(t) for t in upto[: len(prompt)]] == [int(t) for t in prompt]
        for i in range(len(prompt), len(upto)):
            labels[i] = ids[i]
            if ids[i] in stops:
                break
    return ids, labels


@pytest.mark.parametrize("spec", FAMILIES)
def test_labels_are_the_chat_templates_token_by_token(spec):
    loaded = load_model(spec)
    encoder = Encoder(loaded)
    processor, stops = loaded.processor, set(encoder.stop_token_ids)
    assert encoder.chat and encoder.image_aspect_ratio == "crop"  # the family's own prompt and preprocessing
    for example in EXAMPLES:
        messages = encoder.messages(example)
        image = example.load_image()
        item = encoder.encode_train(example)
        ids, labels = item["input_ids"], item["labels"]
        reference_ids, reference = library_labels(processor, messages, image, stops)
        assert ids == reference_ids[: len(ids)] and labels == reference[: len(ids)]
        assert all(label == IGNORE_INDEX for label in reference[len(ids):])  # only what follows the last answer is cut
        assert labels[-1] in stops  # every answer ends at the model's end of turn
        if encoder.vision_chat.marked:  # the published template marks generations: the library's mask, + end of turn
            marked = processor.apply_chat_template(with_images(messages, image), tokenize=True, return_dict=True,
                                                   return_assistant_tokens_mask=True)
            mask = [bool(m) for m in marked["assistant_masks"][0]][: len(ids)]
            assert [lab != IGNORE_INDEX and not (lab in stops and not mask[i]) for i, lab in enumerate(labels)] == mask
        prompt = encoder.encode_prompt(example)
        library_prompt = processor.apply_chat_template(with_images(encoder.messages(example, with_answer=False), image),
                                                       tokenize=True, return_dict=True, add_generation_prompt=True)
        assert prompt == [int(t) for t in library_prompt["input_ids"][0]]
        if example.has_image:  # the processor's own pixels and image inputs
            for key, value in library_prompt.items():
                if key not in ("input_ids", "attention_mask") and torch.is_tensor(value) and key in item:
                    torch.testing.assert_close(item[key], value)


def test_marked_template_masks_equal_transformers_assistant_mask():
    """A template that marks generations (Qwen2.5-VL's, marked): the labels are transformers' assistant-token mask."""
    loaded = load_model("tiny-qwen2.5-vl")
    plain = Encoder(loaded)
    items = [plain.encode_train(example) for example in EXAMPLES]
    loaded.processor.chat_template = QWEN_MARKED
    encoder = Encoder(loaded)
    assert encoder.vision_chat.marked
    for example, item_plain in zip(EXAMPLES, items):
        image = example.load_image()
        messages = encoder.messages(example)
        assert encoder.vision_chat.render(messages, False) == plain.vision_chat.render(messages, False)
        marked = loaded.processor.apply_chat_template(with_images(messages, image), tokenize=True, return_dict=True,
                                                      return_assistant_tokens_mask=True)
        item = encoder.encode_train(example)
        mask = [bool(m) for m in marked["assistant_masks"][0]]
        assert [label != IGNORE_INDEX for label in item["labels"]] == mask[: len(item["labels"])]
        assert item["labels"] == item_plain["labels"] and sum(mask[len(item["labels"]):]) == 0


def test_a_saved_family_loads_from_its_folder_for_images_without_torchvision(tmp_path):
    """The real loading path (AutoModelForImageTextToText, the processor from the folder) on a local copy; where the
    family's video processor needs torchvision, the same processor class comes back without it."""
    built = load_model("tiny-qwen2.5-vl")
    built.model.save_pretrained(tmp_path)
    built.processor.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert loaded.is_vision and type(loaded.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(loaded.processor).__name__ == "Qwen2_5_VLProcessor"
    example = EXAMPLES[1]
    assert Encoder(loaded).encode_train(example)["input_ids"] == Encoder(built).encode_train(example)["input_ids"]
    assert getattr(loaded.processor, "video_processor", None) is None


def family_config(spec: str) -> dict:
    return tiny_run_config(model=spec, train_limit=16, seed=0,
                           lora={"r": 4, "alpha": 8, "dropout": 0.0, "projector_lr": None},
                           train={"epochs": 1, "lr": 1e-3, "batch_size": 8, "max_length": 160, "save_steps": 1},
                           eval={"limit": 6, "batch_size": 6, "max_new_tokens": 3})


@pytest.mark.parametrize("spec", FAMILIES)
def test_a_family_trains_routes_evaluates_resumes_and_serves_mixed_batches(spec, tmp_path):
    run = tmp_path / "run"
    config = load_config(None, base=family_config(spec))
    with pytest.raises(RuntimeError, match="simulated crash"):
        ContinualRunner(config, run, progress=Progress(trainer_callbacks=[CrashAt(1, 2)])).run()
    runner = ContinualRunner(config, run)
    results = runner.run()
    assert runner.manifest.stages[1]["train"]["resumed_from"] == "checkpoint-1"
    assert results["tasks"] == ["synth-shapes", "synth-ocr"] and len(results["matrix"]) == 2
    assert all(score is not None for score in results["matrix"][1])
    assert results["switch_accuracy"][1] is not None  # the switch routed the stage's queries

    # the run's adapters (its portable PEFT folders) in one mixed batch = each query answered by its own adapter
    from peft import PeftModel

    folders = [run / runner.manifest.stages[i]["adapter"] for i in range(2)]
    loaded = load_model(spec)
    peft = PeftModel.from_pretrained(loaded.model, folders[0], adapter_name="a")
    peft.load_adapter(folders[1], adapter_name="b")
    peft.eval()
    encoder = Encoder(loaded)
    queries = [x for pair in zip(synthetic.generate("synth-shapes", 3, split="test"),
                                 synthetic.generate("synth-ocr", 3, split="test")) for x in pair]
    routes = ["a", "b", None, "b", "a", None]
    alone = []
    for query, route in zip(queries, routes):
        if route is None:
            with peft.disable_adapter():
                alone += generate_batch(peft, encoder, [query], 3)
        else:
            peft.set_adapter(route)
            alone += generate_batch(peft, encoder, [query], 3)
    with GatheredLoRA(peft).rows(routes):
        together = generate_batch(peft, encoder, queries, 3)
    assert together == alone


@pytest.mark.parametrize("spec", FAMILIES)
@pytest.mark.parametrize("settings", [dict(targets="all"), dict(targets="language+projector"),
                                      dict(train_projector=False)])
def test_gathered_logits_equal_each_row_alone_whatever_the_adapter_trains(spec, settings):
    """Projector copies, projector LoRA and vision-encoder LoRA: each image's features come from its row's adapter."""
    loaded = load_model(spec)
    peft = loaded.model
    try:
        for name in ("a", "b"):
            peft = add_adapter(peft, name, LoraSettings(r=4, alpha=8, dropout=0.0, **settings), True)
    except Exception as err:  # a family that cannot take a setting says why in one line
        assert "no linear layer for LoRA" in str(err), err
        return
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name or "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.3)
    peft.eval()
    encoder = Encoder(loaded)
    queries = [*synthetic.generate("synth-shapes", 2, split="test"), EXAMPLES[0], EXAMPLES[2]]
    routes = ["a", "b", "b", None]
    with torch.no_grad():
        alone = []
        for query, route in zip(queries, routes):
            batch = encoder.generation_batch([query])
            if route is None:
                with peft.disable_adapter():
                    alone.append(peft(**batch).logits[0, -1])
            else:
                peft.set_adapter(route)
                alone.append(peft(**batch).logits[0, -1])
        with GatheredLoRA(peft).rows(routes):
            mixed = peft(**encoder.generation_batch(queries)).logits[:, -1]
    assert not torch.allclose(alone[0], alone[1], atol=1e-3)  # the adapters really differ
    for row, logits in enumerate(alone):
        torch.testing.assert_close(mixed[row], logits, rtol=1e-4, atol=1e-5)


def test_what_trains_is_said_per_part():
    from llava_cit.train.lora_targets import describe_trainable

    loaded = load_model("tiny-qwen2.5-vl")
    settings = LoraSettings(r=4, alpha=8, targets="all")
    line = describe_trainable(add_adapter(loaded.model, "a", settings, True), "a", settings)
    assert "language model (LoRA)" in line and "vision encoder (LoRA)" in line and "projector (full copy)" in line
    assert "\n" not in line and "(LoRA r=4 on lora.targets all; projector full)" in line
