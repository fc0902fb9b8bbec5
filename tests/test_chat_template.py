"""Text models with a chat template (SmolLM2-Instruct's ChatML): the toolkit's prompts and label masks are the
tokenizer's own rendering, checked token by token against transformers' `return_assistant_tokens_mask`."""

from __future__ import annotations

import pytest

from llava_cit.collation import IGNORE_INDEX, Encoder
from llava_cit.data.example import Example
from llava_cit.models.loading import LoadedModel

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
