"""Built-in tiny model specs (`tiny-llava`, `tiny-bloom`, `tiny-opt`), fully offline.

Architectures are the real Hugging Face classes built from small configs; the
tokenizer is a word-level one built in code over the synthetic tasks' vocabulary.
"""

from __future__ import annotations

import torch
from transformers import (
    BloomConfig,
    BloomForCausalLM,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from llava_cit.data import synthetic, synthetic_sequences, synthetic_text
from switch.tiny import DECIMAL_WORD_PATTERN, build_word_tokenizer, tiny_opt, words_of

TINY_SPECS = ("tiny-llava", "tiny-bloom", "tiny-opt", "tiny-llava-seq")
IMAGE_SIZE, PATCH = synthetic.IMAGE_SIZE, 8
PROMPT_WORDS = ["USER: ASSISTANT: Below is an instruction that describes a task . Input Response Instruction ###"]


def default_words() -> list[str]:
    return words_of(PROMPT_WORDS + synthetic.vocabulary())


def text_words() -> list[str]:
    """The tiny BLOOM's vocabulary: the vision words (first, unchanged) plus the CT0 prompts and text tasks."""
    return words_of(PROMPT_WORDS + synthetic.vocabulary() + synthetic_text.vocabulary())


def sequence_words() -> list[str]:
    """The miniature sequences' LLaVA vocabulary: the vision words (first, unchanged) plus the miniatures' words, a
    decimal number one word (box coordinates)."""
    return words_of(PROMPT_WORDS + synthetic.vocabulary() + synthetic_sequences.vocabulary(), DECIMAL_WORD_PATTERN)


def sequence_tokenizer():
    return build_word_tokenizer(sequence_words(), pattern=DECIMAL_WORD_PATTERN)


def llava_from_sizes(vision_hidden: int = 64, vision_layers: int = 2, image_size: int = IMAGE_SIZE, patch: int = PATCH,
                     text_hidden: int = 128, text_layers: int = 2, text_intermediate: int = 256,
                     vocab_size: int | None = None, seed: int = 0, tokenizer=None):
    """A LLaVA (CLIP vision + Llama text) of the given sizes, random weights, word tokenizer built in code."""
    tokenizer = tokenizer or build_word_tokenizer(default_words())
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden, intermediate_size=2 * vision_hidden if vision_hidden < 128 else 4 * vision_hidden,
        num_hidden_layers=vision_layers, num_attention_heads=max(4, vision_hidden // 64),
        image_size=image_size, patch_size=patch, projection_dim=vision_hidden,
    )
    heads = max(4, text_hidden // 64)
    text = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer), hidden_size=text_hidden, intermediate_size=text_intermediate,
        num_hidden_layers=text_layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=256 if image_size <= 64 else (image_size // patch) ** 2 + 2048,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default", vision_feature_layer=-1, projector_hidden_act="gelu",
    )
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, processor


def tiny_llava(seed: int = 0):
    """`tiny-llava`: image 32 px / patch 8 (16 image tokens), vision 64x2, text 128x2; ~0.45M parameters."""
    return llava_from_sizes(seed=seed)


def tiny_llava_seq(seed: int = 0):
    """`tiny-llava-seq`: `tiny-llava` with the miniature sequences' words (ucit-mini, coin-mini, mllm-dcl-mini)."""
    return llava_from_sizes(seed=seed, tokenizer=sequence_tokenizer())


def tiny_bloom(seed: int = 0, hidden: int = 256, layers: int = 2):
    """`tiny-bloom`: BLOOM 256x2 (ALiBi, as BLOOMZ), word tokenizer over the text tasks' vocabulary."""
    tokenizer = build_word_tokenizer(text_words())
    config = BloomConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, n_layer=layers, n_head=4,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = BloomForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def tiny_tokenizer(spec: str):
    """The word tokenizer of a tiny spec, built without building (or seeding) the model."""
    if spec == "tiny-llava-seq":
        return sequence_tokenizer()
    return build_word_tokenizer(text_words() if spec == "tiny-bloom" else default_words())


def build_tiny(spec: str, seed: int = 0):
    if spec == "tiny-llava":
        return tiny_llava(seed)
    if spec == "tiny-llava-seq":
        return tiny_llava_seq(seed)
    if spec == "tiny-bloom":
        return tiny_bloom(seed)
    return tiny_opt(default_words(), seed=seed)
