"""One entry point for every model: a Hugging Face id, a local path, or a built-in tiny spec."""

from __future__ import annotations

import functools
import importlib.util
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoTokenizer,
    BitsAndBytesConfig,
)

from benchmarks.registry import Registry
from llava_cit.data.paths import expand_data_root
from llava_cit.models.attention import attention_implementation
from llava_cit.models.image_text_processors import load_processor
from llava_cit.models.packaged import PACKAGED, resolve_model_spec
from llava_cit.models.smollm2_llava import SPEC as SMOLLM2_LLAVA
from llava_cit.models.smollm2_llava import smollm2_llava
from llava_cit.models.tiny import TINY_SPECS, build_tiny
from llava_cit.models.tiny_vlm import TINY_FAMILIES
from llava_cit.util.errors import UserError

# model specs built in code (name -> seed -> (model, processor)): the tiny specs, the tiny image-text-to-text
# families and the LLaVA on the packaged SmolLM2
MODEL_SPECS: Registry[Callable[[int], tuple[Any, Any]]] = Registry("model spec")
for _name in TINY_SPECS:
    MODEL_SPECS.add(_name, functools.partial(build_tiny, _name))
for _name, _family in TINY_FAMILIES.items():
    MODEL_SPECS.add(_name, _family.build)
MODEL_SPECS.add(SMOLLM2_LLAVA, smollm2_llava)
DTYPES = {"auto": "auto", "float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass
class LoadedModel:
    model: Any
    processor: Any  # the family's processor for vision models (AutoProcessor), a tokenizer for causal LMs
    is_vision: bool
    spec: str

    @property
    def tokenizer(self):
        return self.processor.tokenizer if self.is_vision else self.processor


def quantization_config(load_in_4bit: bool) -> BitsAndBytesConfig | None:
    if not load_in_4bit:
        return None
    if not torch.cuda.is_available():
        raise UserError("4-bit (QLoRA) loading needs a CUDA GPU: bitsandbytes LoRA gets no gradients on CPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError("4-bit (QLoRA) loading needs bitsandbytes: pip install -e \".[qlora]\" (see README, GPU install)")
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        # QLoRA quantises the language model only: the vision tower, the (trainable) projector and
        # the output head stay in higher precision, as in LLaVA's own 4-bit recipe.
        llm_int8_skip_modules=["vision_tower", "multi_modal_projector", ".*vision_tower", ".*multi_modal_projector",
                               "lm_head"],
    )


def _resolve_dtype(dtype: str | None):
    if dtype is None:
        return None
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype '{dtype}' (known: {', '.join(DTYPES)})")
    return DTYPES[dtype]


def load_model(
    spec: str,
    dtype: str | None = None,
    device_map: str | dict | None = None,
    load_in_4bit: bool = False,
    trust_remote_code: bool = False,
    seed: int = 0,
    attn_implementation: str = "auto",
) -> LoadedModel:
    """Load `spec`: `tiny-llava`/`tiny-bloom`/`tiny-opt`, a tiny image-text-to-text family (`tiny-qwen2.5-vl`, ...),
    a packaged model (`smollm2-135m`), `smollm2-llava` (a small LLaVA on the packaged SmolLM2), a `.gguf` file, a
    local directory, or a Hub id. A model whose configuration has a vision part loads as an image-text-to-text model
    (AutoModelForImageTextToText, its AutoProcessor), any other as a causal LM. Loaded weights use
    `attn_implementation` (auto: FlashAttention-2 where it can run, else SDPA; llava_cit.models.attention)."""
    quant = quantization_config(load_in_4bit)
    torch_dtype = _resolve_dtype(dtype)
    if spec in MODEL_SPECS:
        model, processor = MODEL_SPECS.get(spec)(seed)
        is_vision = hasattr(model.config, "vision_config")
        if quant is None and device_map is None:
            if torch_dtype not in (None, "auto"):
                model = model.to(torch_dtype)
            return LoadedModel(model, processor, is_vision, spec)
        # Quantisation and device maps go through from_pretrained: round-trip the built model.
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
            return load_model(tmp, dtype, device_map, load_in_4bit, trust_remote_code)
    named, spec = spec, resolve_model_spec(expand_data_root(spec, f"model '{spec}'"))
    try:
        config = AutoConfig.from_pretrained(spec, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        kind = "local directory" if Path(spec).exists() else "model spec"
        raise UserError(
            f"unknown {kind} '{named}': not a built-in tiny spec ({', '.join([*TINY_SPECS, *TINY_FAMILIES])}), a packaged model "
            f"({', '.join(PACKAGED)}, {SMOLLM2_LLAVA}), a .gguf file, a model directory, or a reachable Hugging Face id "
            f"({str(err).splitlines()[0][:120]})"
        ) from None
    if quant is not None and device_map is None:
        device_map = {"": torch.cuda.current_device()}
    kwargs = dict(trust_remote_code=trust_remote_code, quantization_config=quant, device_map=device_map)
    attention = attention_implementation(attn_implementation)[0]
    if attention is not None:
        kwargs["attn_implementation"] = attention
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    is_vision = hasattr(config, "vision_config")

    def from_pretrained(kwargs: dict):
        return _image_text_to_text(spec, named, config, kwargs) if is_vision else \
            AutoModelForCausalLM.from_pretrained(spec, **kwargs)

    try:
        model = from_pretrained(kwargs)
    except ValueError as err:  # auto chose FlashAttention-2 for a model class without it: transformers' default
        if attn_implementation != "auto" or "attention" not in str(err).lower() or "attn_implementation" not in kwargs:
            raise
        model = from_pretrained({k: v for k, v in kwargs.items() if k != "attn_implementation"})
    if is_vision:
        processor = load_processor(spec, trust_remote_code)
    else:
        processor = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
    tokenizer = processor.tokenizer if is_vision else processor
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model, processor, is_vision, named)


def _image_text_to_text(spec: str, named: str, config, kwargs: dict):
    try:
        return AutoModelForImageTextToText.from_pretrained(spec, **kwargs)
    except ValueError as err:
        if "Unrecognized configuration class" not in str(err):
            raise
        import transformers

        raise UserError(f"model '{named}' ({config.model_type}) has a vision part but no image-text-to-text class in "
                        f"transformers {transformers.__version__} (AutoModelForImageTextToText); set "
                        "trust_remote_code: true if the model ships its own code") from None
