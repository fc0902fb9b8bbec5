"""Tiny image-text-to-text models of current families, built offline from each family's own config and processor
classes (random weights): what the toolkit is tested on, and what `llava-cit demo --model tiny-<family>` runs.

Each is the family's real architecture at toy size (language model 64 wide, 2 layers; vision encoder 32 wide,
1-2 layers; 32-pixel images give a handful of image tokens), with the family's image processor (its PIL variant),
a word-level tokenizer built in code (the synthetic tasks' words, the template's words and the family's special
tokens) and the chat template the family publishes (source named per family below). A family whose processor
takes videos is built without its video part (llava_cit.models.image_text_processors.image_only): videos need
torchvision, images do not.

    tiny-qwen2.5-vl        Qwen2_5_VLForConditionalGeneration    dynamic resolution, image_grid_thw, M-RoPE
    tiny-smolvlm           Idefics3ForConditionalGeneration      image splitting into tiles (SmolVLM-Instruct)
    tiny-internvl          InternVLForConditionalGeneration      tiles (crop_to_patches), pixel shuffle
    tiny-llava-onevision   LlavaOnevisionForConditionalGeneration anyres grid, unpadding, image_newline
    tiny-gemma3            Gemma3ForConditionalGeneration        fixed 4 soft tokens per image, token_type_ids
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from llava_cit.models.image_text_processors import image_only
from llava_cit.models.tiny import PROMPT_WORDS
from switch.tiny import words_of

IMAGE = 32  # the synthetic tasks' image size
PATCH = 8
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=1024)

# published chat templates (sources: the model repositories' chat_template, as transformers' own tests copy them)
QWEN2_VL_TEMPLATE = (  # Qwen/Qwen2.5-VL-7B-Instruct (the same as Qwen2-VL's)
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}")
SMOLVLM_TEMPLATE = (  # HuggingFaceTB/SmolVLM-Instruct (transformers tests/models/idefics3/test_processing_idefics3.py)
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == "
    "'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}"
    "{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
INTERNVL_TEMPLATE = (  # OpenGVLab/InternVL3-*-hf (transformers models/internvl/convert_internvl_weights_to_hf.py)
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "{{ '<IMG_CONTEXT>\n' }}{% elif content['type'] == 'video' %}{{ '<video>\n' }}{% elif content['type'] == 'text' %}"
    "{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{'<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt"
    " %}{{'<|im_start|>assistant\n' }}{% endif %}")
ONEVISION_TEMPLATE = (  # llava-hf/llava-onevision-qwen2-7b-ov-hf (transformers tests/models/llava_onevision); it marks
    # the assistant's text with {% generation %}
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}{# Render all images first #}{% for "
    "content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}{# Render "
    "all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}"
    "{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content']"
    " | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}{% endfor %}{% else %}{% for content in "
    "message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ '\n' + content['text'] }}"
    "{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}")
GEMMA3_TEMPLATE = (  # google/gemma-3-*-it (transformers tests/models/gemma3/test_processing_gemma3.py)
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- set first_user_prefix = messages[0]['content']"
    "[0]['text'] + '\n\n' -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set "
    "first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in "
    "loop_messages -%}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n        {{ "
    "raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n        "
    "{%- set role = message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\n' + "
    "(first_user_prefix if loop.first else \"\") }}\n    {%- if message['content'] is string -%}\n        {{ "
    "message['content'] | trim }}\n    {%- elif message['content'] is iterable -%}\n        {%- for item in "
    "message['content'] -%}\n            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n            {%- endif "
    "-%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception(\"Invalid content type\") }}\n    {%- "
    "endif -%}\n    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>"
    "model\n'}}\n{%- endif -%}\n")


def family_tokenizer(template_words: str, specials: list[str], named: dict[str, str], bos: str | None, eos: str,
                     pad: str) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the synthetic tasks' words and a template's words, with a family's special tokens
    (`named`: the ones its processor finds by attribute, e.g. image_token)."""
    from llava_cit.data import synthetic

    words = words_of(PROMPT_WORDS + synthetic.vocabulary() + [template_words])
    vocab = {"<unk>": 0}
    for word in words:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"\w+|[^\w\s]"), behavior="isolated")])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", model_max_length=4096,
                                        extra_special_tokens=named)
    tokenizer.add_special_tokens({"additional_special_tokens": list(dict.fromkeys([*specials, *named.values()]))})
    tokenizer.add_special_tokens({k: v for k, v in (("bos_token", bos), ("eos_token", eos), ("pad_token", pad)) if v})
    return tokenizer


@dataclass(frozen=True)
class TinyFamily:
    spec: str
    model_class: str  # the transformers class
    build: Callable[[int], tuple]


def _finish(model, tokenizer, stops: list[str]):
    stop_ids = [tokenizer.convert_tokens_to_ids(t) for t in stops]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = stop_ids if len(stop_ids) > 1 else stop_ids[0]
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    return model


def tiny_qwen25_vl(seed: int = 0):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLImageProcessorPil

    named = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}
    tokenizer = family_tokenizer("system You are a helpful assistant. user assistant Picture Video :",
                                 ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|endoftext|>"],
                                 named, None, "<|im_end|>", "<|endoftext|>")
    image_processor = Qwen2VLImageProcessorPil(patch_size=PATCH, merge_size=2, temporal_patch_size=2,
                                               min_pixels=(2 * PATCH) ** 2, max_pixels=(4 * IMAGE) ** 2)
    processor = image_only(Qwen2_5_VLProcessor)(image_processor=image_processor, tokenizer=tokenizer,
                                                chat_template=QWEN2_VL_TEMPLATE)
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config=dict(TEXT, vocab_size=len(tokenizer), bos_token_id=None, eos_token_id=ids("<|im_end|>"),
                         pad_token_id=tokenizer.pad_token_id,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=PATCH, spatial_merge_size=2, temporal_patch_size=2, window_size=2 * PATCH,
                           fullatt_block_indexes=[1]),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        bos_token_id=None, eos_token_id=ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    return _finish(model, tokenizer, ["<|im_end|>", "<|endoftext|>"]), processor


def tiny_smolvlm(seed: int = 0):
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil, Idefics3Processor

    tiles = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    tokenizer = family_tokenizer("User Assistant :", ["<|im_start|>", "<fake_token_around_image>", "<image>",
                                                      "<end_of_utterance>", "<global-img>", "<|endoftext|>", *tiles],
                                 {"image_token": "<image>"}, "<|im_start|>", "<end_of_utterance>", "<|endoftext|>")
    # images up to 2 x 2 tiles of 32 px (+ the whole image): the processor's splitting at toy size
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 2 * IMAGE}, max_image_size={"longest_edge": IMAGE},
                                                do_image_splitting=True)
    scale = 2
    image_seq_len = (IMAGE // PATCH) ** 2 // scale ** 2
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len,
                                  chat_template=SMOLVLM_TEMPLATE)
    config = Idefics3Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=IMAGE, patch_size=PATCH),
        text_config=dict(TEXT, model_type="llama", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id),
        scale_factor=scale, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    return _finish(model, tokenizer, ["<end_of_utterance>", "<|endoftext|>"]), processor


def tiny_internvl(seed: int = 0):
    from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor

    named = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
             "video_token": "<video>"}
    tokenizer = family_tokenizer("system user assistant", ["<|im_start|>", "<|im_end|>", "<|endoftext|>"], named,
                                 None, "<|im_end|>", "<|endoftext|>")
    image_processor = GotOcr2ImageProcessorPil(size={"height": IMAGE, "width": IMAGE}, crop_to_patches=True,
                                               min_patches=1, max_patches=4)
    image_seq_length = (IMAGE // PATCH) ** 2 // 4  # pixel shuffle at downsample_ratio 0.5
    processor = image_only(InternVLProcessor)(image_processor=image_processor, tokenizer=tokenizer,
                                              image_seq_length=image_seq_length, chat_template=INTERNVL_TEMPLATE)
    config = InternVLConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=[IMAGE, IMAGE], patch_size=[PATCH, PATCH]),
        text_config=dict(TEXT, model_type="qwen2", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=image_seq_length,
        downsample_ratio=0.5, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config)
    return _finish(model, tokenizer, ["<|im_end|>", "<|endoftext|>"]), processor


def tiny_llava_onevision(seed: int = 0):
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
        LlavaOnevisionProcessor,
    )

    named = {"image_token": "<image>", "video_token": "<video>"}
    tokenizer = family_tokenizer("user assistant", ["<|im_start|>", "<|im_end|>", "<|endoftext|>"], named, None,
                                 "<|im_end|>", "<|endoftext|>")
    pinpoints = [[IMAGE, IMAGE], [IMAGE, 2 * IMAGE], [2 * IMAGE, IMAGE], [2 * IMAGE, 2 * IMAGE]]
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": IMAGE, "width": IMAGE},
                                                      image_grid_pinpoints=pinpoints)
    processor = image_only(LlavaOnevisionProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=(IMAGE // PATCH) ** 2,
        vision_feature_select_strategy="full", chat_template=ONEVISION_TEMPLATE)
    config = LlavaOnevisionConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, image_size=IMAGE, patch_size=PATCH),
        text_config=dict(TEXT, model_type="qwen2", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"), image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full", vision_feature_layer=-1)
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config)
    return _finish(model, tokenizer, ["<|im_end|>", "<|endoftext|>"]), processor


def tiny_gemma3(seed: int = 0):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil, Gemma3Processor

    named = {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"}
    tokenizer = family_tokenizer("user model", ["<start_of_turn>", "<end_of_turn>"], named, "<bos>", "<eos>", "<pad>")
    tokens_per_image = 4
    image_processor = Gemma3ImageProcessorPil(size={"height": IMAGE, "width": IMAGE}, do_pan_and_scan=False)
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, chat_template=GEMMA3_TEMPLATE,
                                image_seq_length=tokens_per_image)
    ids = tokenizer.convert_tokens_to_ids
    config = Gemma3Config(
        text_config=dict(TEXT, vocab_size=len(tokenizer), head_dim=16, query_pre_attn_scalar=16, sliding_window=64,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, image_size=IMAGE, patch_size=PATCH),
        mm_tokens_per_image=tokens_per_image, boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"), image_token_index=ids("<image_soft_token>"))
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config)
    return _finish(model, tokenizer, ["<end_of_turn>", "<eos>"]), processor


TINY_FAMILIES = {f.spec: f for f in (
    TinyFamily("tiny-qwen2.5-vl", "Qwen2_5_VLForConditionalGeneration", tiny_qwen25_vl),
    TinyFamily("tiny-smolvlm", "Idefics3ForConditionalGeneration", tiny_smolvlm),
    TinyFamily("tiny-internvl", "InternVLForConditionalGeneration", tiny_internvl),
    TinyFamily("tiny-llava-onevision", "LlavaOnevisionForConditionalGeneration", tiny_llava_onevision),
    TinyFamily("tiny-gemma3", "Gemma3ForConditionalGeneration", tiny_gemma3),
)}
