"""`llava-cit plan CONFIG`: what a run will cost before it spends GPU-hours.

Per stage: parameters (base, trainable, adapter size on disk), an estimate of the peak memory per GPU
(bf16 or 4-bit base; DDP, ZeRO-2, ZeRO-3), training examples, tokens and optimizer steps, and the
evaluation work; with times when throughputs are given. The model is built from its configuration on the
meta device (no weights are loaded or downloaded beyond config.json).

Image tokens per example follow the family and, for dynamic-resolution families, the images' size
(llava_cit.train.image_tokens; `--image-size`).

The memory estimate is a formula, stated here so it can be checked against a measurement:
    base weights     2 bytes/parameter (bf16); 4-bit: the language model's linear layers at 0.5 bytes
                     + 4% (block scales), everything else fp32 (PEFT's prepare_model_for_kbit_training upcasts
                     the vision tower, embeddings, norms and lm_head); ZeRO-3: divided by the GPUs while a
                     stage trains, but every GPU holds them whole between stages (evaluation, adapter saving),
                     so ZeRO-3's peak is at least the whole weights + the fp32 trainable weights
    trainable        fp32 weight 4 + fp32 gradient 4 + Adam 8 bytes/parameter; ZeRO-2 divides the gradient
                     and Adam states by the GPUs, ZeRO-3 all 16 bytes
    activations      with gradient checkpointing: one hidden state per layer per token, plus one layer
                     recomputed (34 x hidden bytes per token in bf16) and the fp32 logits of the batch; without
                     it, every layer's (34 x hidden bytes per token per layer). A 4-bit base doubles both: its
                     fp32 norms and embeddings keep the residual stream in fp32
    overhead         1.5 GB (CUDA context, allocator) + 10% of the rest
Checked on an H200 against LLaVA-1.5-7B at the paper's recipe (scripts/bench/llava_recipe_gpu.py,
docs/BENCHMARKS.md): within 15% of the measured peak at per-device batches 4, 8 and 16, bf16 and 4-bit.
"""

from __future__ import annotations

import functools
import math

import torch

from llava_cit.config import RunConfig
from llava_cit.train.memory_formula import CHECKPOINTING_MARGIN, GB, ModelFacts, peak_memory_gb  # noqa: F401
from llava_cit.util.errors import UserError


def model_facts(config: RunConfig, image_size: tuple[int, int] | None = None) -> ModelFacts:
    """The model built from its configuration on the meta device; `image_size` (height, width): the images' size,
    for families whose image tokens depend on it (llava_cit.train.image_tokens)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from llava_cit.data.paths import expand_data_root
    from llava_cit.models.loading import MODEL_SPECS
    from llava_cit.models.packaged import resolve_model_spec
    from llava_cit.models.vision_parts import vision_parts
    from llava_cit.train.image_tokens import image_tokens
    from llava_cit.train.trainer import lora_config

    if config.model in MODEL_SPECS:
        model, _ = MODEL_SPECS.get(config.model)(0)
    else:
        spec = resolve_model_spec(expand_data_root(config.model, f"model '{config.model}'"))
        try:
            model_config = AutoConfig.from_pretrained(spec, trust_remote_code=config.trust_remote_code)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read the configuration of model '{config.model}' ({err})") from None
        auto = AutoModelForImageTextToText if hasattr(model_config, "vision_config") else AutoModelForCausalLM
        with torch.device("meta"):
            model = auto.from_config(model_config, trust_remote_code=config.trust_remote_code)
    parts = vision_parts(model)
    is_vision = parts is not None
    text = model.config.get_text_config()
    base = sum(p.numel() for p in model.parameters())
    quantizable = sum(m.weight.numel() for n, m in model.named_modules()
                      if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")
                      and (parts is None or parts.part_of(n) == "language"))
    if config.method in ("full-sft",):
        trainable = sum(p.numel() for n, p in model.named_parameters() if parts is None or parts.part_of(n) != "vision")
    else:
        from peft import get_peft_model

        peft_config = lora_config(model, config.lora, is_vision)
        with torch.device("meta"):
            peft = get_peft_model(model, peft_config)
        trainable = sum(p.numel() for n, p in peft.named_parameters() if "lora_" in n or "modules_to_save" in n)
    return ModelFacts(base, trainable, quantizable, text.hidden_size, text.num_hidden_layers, text.vocab_size,
                      image_tokens(model.config, image_size) if is_vision else 0)


def count_records(source: dict) -> int | None:
    """Records of a task's source without loading it (None when the data is not there)."""
    from pathlib import Path

    from llava_cit.data.paths import expand_data_root

    kind = source.get("type", "llava")
    if kind == "synthetic":
        return int(source.get("count", 200))
    if kind == "llava":
        try:
            path = Path(expand_data_root(source["path"], "the data"))
        except UserError:
            return None
        if not path.is_file():
            return None
        from llava_cit.data_prep.json_stream import iter_json_array

        return sum(1 for _ in iter_json_array(path))
    return None


def plan(config: RunConfig, gpus: int = 1, gpu_memory: float | None = None, tokens_per_second: float | None = None,
         eval_samples_per_second: float | None = None, tokens_per_sample: int | None = None,
         config_dir=None, image_size: tuple[int, int] | None = None) -> dict:
    """`config_dir`: the config file's folder, where its task files' relative paths start (as for `train`);
    `image_size` (height, width): the images' size where a family's image tokens depend on it."""
    from llava_cit.methods.registry import get_method
    from llava_cit.tasks.registry import resolve_task
    from llava_cit.train.trainer import gradient_accumulation

    facts = model_facts(config, image_size)
    method = get_method(config.method)
    tasks = [resolve_task(entry, config_dir) for entry in config.tasks]
    per_sample = tokens_per_sample or min(config.train.max_length, 256 + facts.image_tokens)
    accumulation = gradient_accumulation(config.train, gpus)
    global_batch = config.train.batch_size * accumulation * gpus
    memory, recompute = {}, {}
    setting = config.train.gradient_checkpointing
    for label, zero, four_bit in (("bf16 DDP", 0, False), ("bf16 ZeRO-2", 2, False), ("bf16 ZeRO-3", 3, False),
                                  ("4-bit (QLoRA)", 0, True)):
        if four_bit and method.full_finetune:
            continue
        peak = functools.partial(peak_memory_gb, facts, config.train.batch_size, gpus, zero, four_bit, per_sample)
        if setting == "auto":  # as the trainer decides (llava_cit/train/checkpointing.py): off when it fits
            recompute[label] = gpu_memory is not None and peak(False) * (1 + CHECKPOINTING_MARGIN) > gpu_memory
        else:
            recompute[label] = bool(setting)
        memory[label] = peak(recompute[label])
    stages, eval_samples, train_seconds = [], 0, 0.0
    tests = []  # each task's test examples (eval.limit applied), counted once: a LLaVA file is streamed to count
    for task in tasks:
        test = count_records(task.test)
        tests.append(min(test, config.eval.limit) if (test is not None and config.eval.limit) else test)
    for i, task in enumerate(tasks):
        records = count_records(task.train)
        if records is not None and config.train_limit:
            records = min(records, config.train_limit)
        test = tests[i]
        steps = math.ceil(records * config.train.epochs / global_batch) if records else None
        tokens = records * per_sample * config.train.epochs if records else None
        seen_tests = tests[: i + 1]
        stage_eval = sum(seen_tests) if all(n is not None for n in seen_tests) else None
        if stage_eval is not None:
            eval_samples += stage_eval
        seconds = tokens / (tokens_per_second * gpus) if (tokens and tokens_per_second) else None
        if seconds:
            train_seconds += seconds
        stages.append({"stage": i, "task": task.name, "train_examples": records, "train_tokens": tokens,
                       "optimizer_steps": steps, "test_examples": test, "eval_samples_after_stage": stage_eval,
                       "train_seconds": seconds})
    fits = {label: gb <= gpu_memory for label, gb in memory.items()} if gpu_memory else {}
    return {
        "model": config.model, "method": config.method, "gpus": gpus,
        "parameters": {"base": facts.base, "trainable": facts.trainable,
                       "adapter_bytes_per_stage": facts.trainable * 4 if not method.full_finetune else facts.base * 2,
                       "saved_per_stage": "the whole model" if method.full_finetune else "one adapter"},
        "batch": {"per_device": config.train.batch_size, "gradient_accumulation": accumulation,
                  "global": global_batch, "tokens_per_sample": per_sample},
        "image_tokens": facts.image_tokens,
        "peak_memory_gb_per_gpu": memory, "gradient_checkpointing": recompute, "fits": fits, "stages": stages,
        "evaluation": {"samples_generated": eval_samples or None,
                       "seconds": eval_samples / eval_samples_per_second if (eval_samples and eval_samples_per_second)
                       else None},
        "train_seconds": train_seconds or None,
    }
