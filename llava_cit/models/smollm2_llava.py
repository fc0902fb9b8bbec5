"""`smollm2-llava`: a small LLaVA whose language model is the pretrained SmolLM2-135M-Instruct (the packaged
model, llava_cit.models.packaged) and whose CLIP vision tower and projector are built from a configuration (random
weights: the demo's caption pre-training trains them, the language model frozen, as LLaVA's stage 1 trains its
projector). The tokenizer is SmolLM2's BPE with an `<image>` token added; prompts go through SmolLM2's own ChatML
chat template, extended with an image slot (`prompt_format: chat_template`).
"""

from __future__ import annotations

import torch

from llava_cit.data.prompts import IMAGE_TOKEN
from llava_cit.models.tiny import IMAGE_SIZE, PATCH

SPEC = "smollm2-llava"
# SmolLM2-135M-Instruct's template (its default system turn, ChatML turns), a user turn's content may be a list of
# {"type": "image"} / {"type": "text"} items (transformers' multimodal messages), and the assistant's content is
# marked with {% generation %} so transformers can return the assistant-token mask the toolkit is checked against.
CHATML_WITH_IMAGE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{% set text = message['content'] %}{% else %}{% set text = namespace(v='') %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}{% set text.v = text.v + '<image>\\n' %}"
    "{% elif item['type'] == 'text' %}{% set text.v = text.v + item['text'] %}{% endif %}{% endfor %}"
    "{% set text = text.v %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ text + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ text + '<|im_end|>' }}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def chatml_llava_processor(tokenizer, image_size: int = IMAGE_SIZE, patch: int = PATCH):
    """A LlavaProcessor around a ChatML tokenizer: `<image>` added as a special token, the chat template above."""
    from tokenizers import AddedToken
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=CHATML_WITH_IMAGE)


def smollm2_llava(seed: int = 0):
    """(model, processor): SmolLM2-135M-Instruct's weights as the language model, a 2-layer CLIP vision tower and the
    2-layer projector from config (seeded)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    from llava_cit.models.packaged import resolve_model_spec

    folder = resolve_model_spec("smollm2-135m")
    language = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    processor = chatml_llava_processor(AutoTokenizer.from_pretrained(folder))
    tokenizer = processor.tokenizer
    vision = CLIPVisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                              image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=128)
    text = language.config
    config = LlavaConfig(vision_config=vision, text_config=text.to_dict(), image_token_index=tokenizer.convert_tokens_to_ids(
        IMAGE_TOKEN), vision_feature_select_strategy="default", vision_feature_layer=-1, projector_hidden_act="gelu",
        tie_word_embeddings=text.tie_word_embeddings)
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(language.model.state_dict())
    model.lm_head.load_state_dict(language.lm_head.state_dict())
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)  # the new <image> row: the mean embedding
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.eval(), processor
