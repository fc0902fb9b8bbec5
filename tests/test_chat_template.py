"""Text models with a chat template (SmolLM2-Instruct's ChatML): the toolkit's prompts and label masks are the
tokenizer's own rendering, checked token by token against transformers' `return_assistant_tokens_mask`."""

from __future__ import annotations

import pytest
import torch

from llava_cit.data.collation import IGNORE_INDEX, Encoder
from llava_cit.data.example import Example
from llava_cit.models.loading import LoadedModel
from llava_cit.util.errors import UserError

SMOLLM2_TEMPLATE = (  # SmolLM2-135M-Instruct's chat template, as its tokenizer ships it
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>'"
    " + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt"
    " %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# the same template with the assistant's content marked for transformers' assistant-token mask
MARKED_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>'"
    " + message['role'] + '\\n'}}{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + "
    "'<|im_end|>' }}{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

EXAMPLES = [
    Example(id="single", turns=[("Simplify this sentence .", "the cat sat .")], input="the big cat sat on a mat ."),
    Example(id="multi", turns=[("What sat on the mat ?", "a cat ."), ("Was it big ?", "yes , a big cat .")]),
]


def chatml_tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    words = ("<unk> system You are a helpful AI assistant named SmolLM , trained by Hugging Face user Simplify this "
             "sentence . the big cat sat on mat What Was it ? yes").split()
    core = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"], "eos_token": "<|im_end|>"})
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.chat_template = SMOLLM2_TEMPLATE
    return tokenizer


class _Config:
    max_position_embeddings = 2048


class _Model:
    config = _Config()


def check_masks_against_the_library(tokenizer, system=None):
    loaded = LoadedModel(_Model(), tokenizer, False, "chat")
    encoder = Encoder(loaded, system=system)
    assert encoder.chat
    for example in EXAMPLES:
        messages = encoder.messages(example)
        # the marked template renders exactly the shipped one
        assert tokenizer.apply_chat_template(messages, tokenize=False, chat_template=MARKED_TEMPLATE) == \
            tokenizer.apply_chat_template(messages, tokenize=False)
        reference = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, chat_template=MARKED_TEMPLATE,
                                                  return_assistant_tokens_mask=True)
        item = encoder.encode_train(example)
        ids, labels = item["input_ids"], item["labels"]
        assert ids == list(reference["input_ids"])[: len(ids)]  # the library's tokens (its trailing newline aside)
        assert [label != IGNORE_INDEX for label in labels] == [bool(m) for m in reference["assistant_masks"][: len(ids)]]
        assert all(label in (IGNORE_INDEX, token) for label, token in zip(labels, ids))
        assert ids[-1] == tokenizer.eos_token_id and labels[-1] == tokenizer.eos_token_id
        # the generation prompt is the library's, and it is a prefix of the training sequence
        prompt = encoder.encode_prompt(example)
        library = tokenizer.apply_chat_template(encoder.messages(example, with_answer=False), tokenize=True,
                                                add_generation_prompt=True, return_dict=True)["input_ids"]
        assert prompt == list(library) and ids[: len(prompt)] == prompt
        assert encoder.prompt_text(example).endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("system", [None, "You are a helpful AI assistant ."])
def test_chat_template_masks_equal_transformers_assistant_mask(system):
    check_masks_against_the_library(chatml_tokenizer(), system)


def test_models_without_a_chat_template_keep_the_instruction_template():
    tokenizer = chatml_tokenizer()
    tokenizer.chat_template = None
    encoder = Encoder(LoadedModel(_Model(), tokenizer, False, "plain"))
    assert not encoder.chat and "### Response:" in encoder.prompt_text(EXAMPLES[0])


# -- a LLaVA on a chat LM (smollm2-llava): the processor's chat template, with an image slot ------------------------

VISION_EXAMPLES = [
    Example(id="one-turn", turns=[("What color is the shape ?", "red .")], image="synthetic"),
    Example(id="multi-turn", turns=[("<image>\nWhat sat on the mat ?", "a cat ."), ("Was it big ?", "yes , a big cat .")],
            image="synthetic"),
]


class _VisionConfig:
    max_position_embeddings = 2048


class _VisionModel:
    class config:  # noqa: N801 - a stand-in for a model's config
        text_config = _VisionConfig()


def vision_loaded(tokenizer):
    from llava_cit.models.smollm2_llava import chatml_llava_processor

    return LoadedModel(_VisionModel(), chatml_llava_processor(tokenizer), True, "chat-llava")


def check_vision_masks_against_the_processor(loaded, examples=VISION_EXAMPLES):
    from PIL import Image

    processor = loaded.processor
    encoder = Encoder(loaded, prompt_format="chat_template")
    assert encoder.chat
    image = Image.new("RGB", (40, 30), (200, 30, 30))
    for example in examples:
        example.load_image = lambda image=image: image  # the stand-in examples' image
        messages = encoder.messages(example)
        with_image = [dict(m, content=[dict(c, image=image) if c.get("type") == "image" else c for c in m["content"]])
                      if isinstance(m["content"], list) else m for m in messages]
        reference = processor.apply_chat_template(with_image, tokenize=True, return_dict=True,
                                                  return_assistant_tokens_mask=True)
        item = encoder.encode_train(example)
        ids, labels = item["input_ids"], item["labels"]
        library_ids = [int(t) for t in reference["input_ids"][0]]
        mask = [bool(m) for m in reference["assistant_masks"][0]]
        assert library_ids.count(processor.tokenizer.convert_tokens_to_ids("<image>")) == \
            ids.count(processor.tokenizer.convert_tokens_to_ids("<image>")) > 1  # the image expanded the same way
        assert ids == library_ids[: len(ids)]  # the processor's tokens (its trailing newline aside)
        assert [label != IGNORE_INDEX for label in labels] == mask[: len(ids)]
        assert sum(mask[len(ids):]) == 0 and ids[-1] == labels[-1] == processor.tokenizer.eos_token_id
        cropped = Encoder(loaded, prompt_format="chat_template", image_aspect_ratio="crop").encode_train(example)
        assert torch.allclose(cropped["pixel_values"], torch.as_tensor(reference["pixel_values"][0]))
        prompt = encoder.encode_prompt(example)
        library_prompt = processor.apply_chat_template(
            [m for m in with_image[:-1]], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"][0]
        assert prompt == [int(t) for t in library_prompt] and ids[: len(prompt)] == prompt


def test_vision_chat_template_masks_equal_the_processors_assistant_mask():
    tokenizer = chatml_tokenizer()
    tokenizer.add_tokens("red color shape cat a mat".split())
    check_vision_masks_against_the_processor(vision_loaded(tokenizer))


def test_vision_models_keep_llava_conversation_unless_asked():
    loaded = vision_loaded(chatml_tokenizer())
    assert not Encoder(loaded).chat  # auto: LLaVA-1.5's conversation for vision models
    with pytest.raises(UserError, match="has no chat template"):
        loaded.processor.chat_template = None
        Encoder(loaded, prompt_format="chat_template")
