"""The paper's starting point: LLaVA-1.5 at the end of its stage 1 (feature-alignment pre-training), assembled
as a transformers `LlavaForConditionalGeneration` from its three published parts:

    language model   lmsys/vicuna-7b-v1.5
    vision tower     openai/clip-vit-large-patch14-336 (a CLIPModel checkpoint: its vision part)
    projector        liuhaotian/llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5, mm_projector.bin
                     (keys model.mm_projector.0.* -> linear_1, model.mm_projector.2.* -> linear_2)

as LLaVA-1.5 wires them: features of the vision tower's second-to-last layer (vision_feature_layer -2), the
CLS position dropped ("default" selection), a 2-layer GELU MLP projector, `<image>` added to the tokenizer
(and a pad token when it has none). The projector file is read as tensors only (`weights_only=True`: no
arbitrary object is unpickled). The result is saved as safetensors with its processor, loadable wherever a
model id is accepted.

Not `llava-hf/llava-1.5-7b-hf`: that model was already instruction-tuned on the 665K mixture, which contains
GQA and OCR-VQA, so a sequence started there shows neither learning nor forgetting of them.

This assembly is LLaVA-1.5-specific (its three published parts, its wiring, LlavaProcessor) and stays so: the
other image-text-to-text families publish no stage-1 checkpoint and start from their released models, loaded
like any model (llava_cit.models.loading; README, "Other vision-language families").
"""

from __future__ import annotations

from pathlib import Path

import torch

from llava_cit.util.errors import UserError

PROJECTOR_KEYS = {"model.mm_projector.0.": "linear_1.", "model.mm_projector.2.": "linear_2."}


def read_projector(path: Path) -> dict[str, torch.Tensor]:
    """linear_1.* / linear_2.* tensors of LLaVA's mm_projector.bin (or a .safetensors with the same keys)."""
    if not path.is_file():
        raise UserError(f"projector file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw = load_file(str(path))
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise UserError(f"{path}: not a file of plain tensors (refused to unpickle it: {type(err).__name__})") \
                from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of tensor names to tensors")
    tensors = {}
    for key, value in raw.items():
        for prefix, target in PROJECTOR_KEYS.items():
            if key.startswith(prefix):
                tensors[target + key[len(prefix):]] = value
    expected = {"linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias"}
    if set(tensors) != expected:
        raise UserError(f"{path}: expected the keys model.mm_projector.0/2.weight/bias, found {sorted(raw)[:6]}")
    return tensors


def _image_processor(clip: str):
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(clip)
    except ImportError:  # the fast processor needs torchvision: the PIL one does the same work
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil.from_pretrained(clip)


def assemble_stage1(vicuna: str, clip: str, projector: Path, out: Path, dtype: str = "bfloat16") -> Path:
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        CLIPVisionModel,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from llava_cit.util.atomic import publish_dir, staging_dir

    if (out / "config.json").is_file():
        raise UserError(f"{out} already holds a model; choose another --out (finished artifacts are never overwritten)")
    torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    projector_tensors = read_projector(Path(projector))
    tokenizer = AutoTokenizer.from_pretrained(vicuna)
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "<pad>"})
    text_config = AutoConfig.from_pretrained(vicuna)
    clip_config = AutoConfig.from_pretrained(clip)
    vision_config = getattr(clip_config, "vision_config", clip_config)
    config = LlavaConfig(vision_config=vision_config.to_dict() | {"model_type": "clip_vision_model"},
                         text_config=text_config.to_dict(), image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
                         pad_token_id=tokenizer.pad_token_id)
    model = LlavaForConditionalGeneration._from_config(config, dtype=torch_dtype)
    language = AutoModelForCausalLM.from_pretrained(vicuna, dtype=torch_dtype)
    model.model.language_model.load_state_dict(language.model.state_dict())
    model.lm_head.load_state_dict(language.lm_head.state_dict())
    del language
    vision = CLIPVisionModel.from_pretrained(clip, dtype=torch_dtype)
    state = vision.state_dict()
    tower = model.model.vision_tower
    if not any(k.startswith("vision_model.") for k in tower.state_dict()):
        state = {k.removeprefix("vision_model."): v for k, v in state.items()}
    tower.load_state_dict(state)
    del vision
    projector_module = model.model.multi_modal_projector
    if projector_tensors["linear_1.weight"].shape != projector_module.linear_1.weight.shape or \
            projector_tensors["linear_2.weight"].shape != projector_module.linear_2.weight.shape:
        raise UserError(f"{projector}: projector shapes {tuple(projector_tensors['linear_1.weight'].shape)} / "
                        f"{tuple(projector_tensors['linear_2.weight'].shape)} do not fit the vision tower and "
                        f"language model given")
    projector_module.load_state_dict({k: v.to(torch_dtype) for k, v in projector_tensors.items()})
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    processor = LlavaProcessor(image_processor=_image_processor(clip), tokenizer=tokenizer,
                               patch_size=vision_config.patch_size, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1)
    staging = staging_dir(out)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    publish_dir(staging, out)
    return out
