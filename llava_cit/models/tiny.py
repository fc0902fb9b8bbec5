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

from llava_cit.data import synthetic
from switch.tiny import build_word_tokenizer, tiny_opt, words_of

TINY_SPECS = ("tiny-llava", "tiny-bloom", "tiny-opt")
IMAGE_SIZE, PATCH = synthetic.IMAGE_SIZE, 8
PROMPT_WORDS = ["USER: ASSISTANT: Below is an instruction that describes a task . Input Response Instruction ###"]


def default_words() -> list[str]:
    from llava_cit.data import text_synthetic  # local import: text track vocabulary

    return words_of(PROMPT_WORDS + synthetic.vocabulary() + text_synthetic.vocabulary())


def tiny_llava(seed: int = 0):
    tokenizer = build_word_tokenizer(default_words())
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    vision = CLIPVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=64,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
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


def tiny_bloom(seed: int = 0):
    tokenizer = build_word_tokenizer(default_words())
    config = BloomConfig(
        vocab_size=len(tokenizer), hidden_size=128, n_layer=2, n_head=4,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = BloomForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def build_tiny(spec: str, seed: int = 0):
    if spec == "tiny-llava":
        return tiny_llava(seed)
    if spec == "tiny-bloom":
        return tiny_bloom(seed)
    return tiny_opt(default_words(), seed=seed)
