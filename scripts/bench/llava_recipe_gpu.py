"""LLaVA-1.5-7B at the paper's recipe on one GPU: training step time, tokens/s and peak memory (bf16 LoRA r128 and
4-bit QLoRA), batched vs batch-1 generation, a routed mixed-task batch vs a single-task batch, and the measured
peak memory next to `llava-cit plan`'s estimate for the same batch and sequence length.

The model is LLaVA-1.5-7B's published architecture (scripts/bench/llava-1.5-7b/config.json: Vicuna-7B + CLIP
ViT-L/14-336 + the 2-layer projector, 7.06B parameters) with random weights, built directly on the GPU (the hub is
unreachable). The adapter is the toolkit's own (`llava_cit.train.trainer.add_adapter`: LoRA r128 alpha 256 on every
linear layer of the language model, the projector trained through `modules_to_save`, kept in fp32), trained with
the Trainer's recipe pieces: bf16 autocast, gradient checkpointing, AdamW (projector at its own lr). 4-bit: every
linear layer of the language model replaced by bitsandbytes' NF4 `Linear4bit` with double quantisation and bf16
compute, the same settings `llava_cit.models.loading.quantization_config` gives `from_pretrained` (vision tower,
projector and lm_head stay bf16), then `add_adapter`, which runs PEFT's `prepare_model_for_kbit_training`.

Each training sample is `--seq` tokens: 576 image tokens (one 336 px image) and the rest text, the loss on the
last `--answer` tokens. Peak memory is `torch.cuda.max_memory_reserved` (what the allocator took) plus the CUDA
context measured before the model was built; it is compared with the plan's formula at the same batch and length.

    python scripts/bench/llava_recipe_gpu.py --out docs/bench/llava7b_recipe_h200.json
    python scripts/bench/llava_recipe_gpu.py --layers 2 --train-batches 2 --qlora-batches 2   # a smoke run
    python scripts/bench/llava_recipe_gpu.py --skip eval,bf16,qlora --speed-batch 16,8 --out speed.json   # issue 32
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# isort: off
import llava_cit  # noqa: F401  (filters library messages a user cannot act on, before peft is imported)
# isort: on
from transformers import AutoConfig, LlavaForConditionalGeneration

from llava_cit.config import LoraSettings, load_config
from llava_cit.data import synthetic
from llava_cit.data.collation import Encoder
from llava_cit.models.loading import LoadedModel
from llava_cit.models.tiny import llava_from_sizes
from llava_cit.serve.generation import generate_batch
from llava_cit.serve.routing import gathered_for
from llava_cit.train.planning import model_facts, peak_memory_gb
from llava_cit.train.trainer import add_adapter, keep_fp32_master_weights, projector_parameter_groups
from scripts.bench.timing import clock

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "scripts" / "bench" / "llava-1.5-7b"
PAPER_CONFIG = ROOT / "scripts" / "configs" / "llava15_paper_ret0.01pct.yaml"
QLORA_CONFIG = ROOT / "scripts" / "configs" / "llava15_paper_qlora_24gb.yaml"
GB = 1024 ** 3


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def architecture(layers: int | None) -> Path:
    """The published configuration (with fewer layers for a smoke run) in a folder `llava-cit plan` can read."""
    config = json.loads((CONFIG_DIR / "config.json").read_text())
    if layers:
        config["text_config"]["num_hidden_layers"] = layers
        config["vision_config"]["num_hidden_layers"] = max(layers, 2)
    folder = Path(tempfile.mkdtemp(prefix="llava-arch-"))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def build(folder: Path, image_token: int, pad_token: int):
    config = AutoConfig.from_pretrained(folder)
    config.image_token_id = image_token  # the stand-in tokenizer's <image> (random weights: any id in the vocabulary)
    config.pad_token_id = pad_token
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    torch.manual_seed(0)
    with torch.device(device()):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config.pad_token_id = pad_token
    return model


def stand_in_processor():
    """A LlavaProcessor at 336 px / patch 14 (576 image tokens) with the toolkit's word tokenizer."""
    _, processor = llava_from_sizes(vision_hidden=32, vision_layers=1, image_size=336, patch=14, text_hidden=64,
                                    text_layers=1, text_intermediate=64)
    return processor


def context_bytes() -> int:
    """What the CUDA context takes before any model (driver, cuBLAS handles), seen as used device memory."""
    if not torch.cuda.is_available():
        return 0
    torch.zeros(1, device="cuda") @ torch.zeros(1, 1, device="cuda")
    free, total = torch.cuda.mem_get_info()
    return total - free - torch.cuda.memory_reserved()


def training_batch(batch: int, seq: int, answer: int, image_token: int, vision_size: int, dtype):
    image_tokens = (vision_size // 14) ** 2
    text = seq - image_tokens
    ids = torch.randint(5, 31000, (batch, seq))
    ids[:, 4:4 + image_tokens] = image_token
    labels = torch.full_like(ids, -100)
    labels[:, seq - answer:] = ids[:, seq - answer:]
    assert text > answer + 4, "the sequence must hold the image tokens, a prompt and the answer"
    pixels = torch.randn(batch, 3, vision_size, vision_size)
    return {"input_ids": ids.to(device()), "attention_mask": torch.ones_like(ids).to(device()),
            "labels": labels.to(device()), "pixel_values": pixels.to(device(), dtype)}


def optimizer_for(model, lr: float, projector_lr: float):
    """AdamW with the parameter groups the toolkit's Trainer uses (the projector at its own learning rate)."""
    return torch.optim.AdamW(projector_parameter_groups(model, projector_lr, weight_decay=0.0), lr=lr)


def measure_training(peft, batch: int, seq: int, answer: int, steps: int, image_token: int, vision_size: int,
                     context: int, losses: list | None = None) -> dict:
    """Median step time of `steps` timed steps (after one untimed) on one fixed random batch; `losses` collects every
    step's loss (the numerical checks)."""
    peft.train()
    optimizer = optimizer_for(peft, 2e-4, 2e-5)
    torch.manual_seed(1)  # the same batch for every setting
    data = training_batch(batch, seq, answer, image_token, vision_size, next(peft.parameters()).dtype)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times, grad_norm = [], None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if torch.cuda.is_available() else torch.autocast(
        "cpu", enabled=False)
    for step in range(steps + 1):  # the first step (allocator warm-up, optimizer states) is not timed
        sync()
        start = time.perf_counter()
        with autocast:
            loss = peft(**data).loss
        loss.backward()
        if losses is not None:
            losses.append(float(loss))
        if step == 0:
            lora = [p.grad.float().norm() for n, p in peft.named_parameters() if "lora_B" in n and p.grad is not None]
            grad_norm = float(torch.stack(lora).norm()) if lora else 0.0
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        if step:
            times.append(time.perf_counter() - start)
    step_s = sorted(times)[len(times) // 2]
    result = {"per_device_batch": batch, "tokens_per_sample": seq, "steps_timed": steps, "step_s_median": step_s,
              "tokens_per_s": batch * seq / step_s, "samples_per_s": batch / step_s,
              "lora_B_grad_norm_first_step": grad_norm, "loss": float(loss)}
    if torch.cuda.is_available():
        result["peak_allocated_gb"] = torch.cuda.max_memory_allocated() / GB
        result["peak_reserved_gb"] = torch.cuda.max_memory_reserved() / GB
        result["peak_device_gb"] = (torch.cuda.max_memory_reserved() + context) / GB
    del optimizer, data
    peft.zero_grad(set_to_none=True)
    gc.collect()
    return result


def plan_estimate(config_path: Path, folder: Path, batch: int, seq: int, four_bit: bool) -> float:
    config = load_config(config_path, [f"model={folder}", f"train.batch_size={batch}", "train.global_batch_size=null"])
    return peak_memory_gb(model_facts(config), batch, gpus=1, zero=0, four_bit=four_bit, tokens_per_sample=seq,
                          checkpointing=True)  # the recipe's (the script measures with gradient checkpointing on)


def quantize_language_model(model) -> int:
    """Every linear layer of the language model as bitsandbytes NF4 (double quantisation, bf16 compute), in place;
    the settings of llava_cit.models.loading.quantization_config. Returns the layers replaced."""
    import bitsandbytes as bnb

    replaced = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if not isinstance(child, torch.nn.Linear) or any(
                    skip in full for skip in ("vision_tower", "multi_modal_projector", "lm_head")):
                continue
            layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
                                      device="meta")
            layer.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, compress_statistics=True,
                                             quant_type="nf4").to(device())
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(module, child_name, layer)
            replaced += 1
    model.is_loaded_in_4bit = True
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return replaced


def with_eval_adapters(model, count: int, r: int):
    settings = LoraSettings(r=r, alpha=2 * r, dropout=0.0, train_projector=True)
    peft = None
    for i in range(count):
        peft = add_adapter(peft if peft is not None else model, f"task{i}", settings, is_vision=True)
        for name, param in peft.named_parameters():  # non-zero B: every adapter changes the output
            if f"lora_B.task{i}." in name:
                torch.nn.init.normal_(param, std=0.01)
    return peft.eval()


def lora_state(peft) -> dict[str, torch.Tensor]:
    """The trainable adapter tensors, copied to the CPU in fp32."""
    return {n: p.detach().float().cpu().clone() for n, p in peft.named_parameters() if p.requires_grad}


def restore(peft, state: dict[str, torch.Tensor]) -> None:
    """The adapter back to `state`, and no gradient left over (a run that ran out of memory may leave some)."""
    peft.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if name in state:
                param.copy_(state[name].to(param.device, param.dtype))


def checkpointing(model, on: bool) -> None:
    from llava_cit.train.checkpointing import turn_off

    turn_off(model)  # also the input-grad hooks an earlier enable left (the trainer does the same)
    if on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def auto_checkpointing(peft, batch: int, seq: int) -> dict:
    """What `train.gradient_checkpointing: auto` decides for this model and batch (the trainer's own rule)."""
    from llava_cit.config import TrainSettings
    from llava_cit.train.checkpointing import choose_for_tokens

    return choose_for_tokens(TrainSettings(batch_size=batch, max_length=seq), peft, seq).record()


def update_difference(start: dict, a: dict, b: dict) -> float:
    """The largest per-tensor ||(b - start) - (a - start)|| / ||a - start|| over the adapter's tensors that moved."""
    worst = 0.0
    for key, before in start.items():
        moved = float((a[key] - before).norm())
        if moved > 0:
            worst = max(worst, float((b[key] - a[key]).norm()) / moved)
    return worst


def speed_section(model, args, image_token: int, vision_size: int, context: int, result: dict, save) -> None:
    """Issue 32 point 6: the recipe's tokens/s and peak before and after each change, side by side in this process
    (same model, same fixed batch, each setting from the same adapter initialisation and a fresh optimizer), per
    batch in --speed-batch: gradient checkpointing on (the old recipe) vs what `auto` picks; FlashAttention-2 vs SDPA
    where flash-attn is installed. At the first batch, Liger's kernels where liger-kernel is installed, after its
    numerical check: 20 steps without Liger twice (the noise floor: the attention and scatter backwards are not
    deterministic) and once with, comparing losses and each tensor's update. Liger's patches stay on the model, so
    this section runs in a process of its own (gpu_session.sh)."""
    from llava_cit.evaluation.batch_size import is_out_of_memory

    lora = LoraSettings(r=128, alpha=256, dropout=0.0, train_projector=True)
    torch.manual_seed(0)
    peft = add_adapter(model, "task0", lora, is_vision=True)
    keep_fp32_master_weights(peft)
    start_state = lora_state(peft)
    speed = result["speed"] = {"tokens_per_sample": args.seq, "by_batch": {}, "notes": []}
    batches = [int(b) for b in str(args.speed_batch).split(",") if b]

    def run(section: dict, name: str, batch: int, on: bool, steps: int = args.steps,
            losses: list | None = None) -> dict | None:
        restore(peft, start_state)
        checkpointing(model, on)
        try:
            measured = measure_training(peft, batch, args.seq, args.answer, steps, image_token, vision_size, context,
                                        losses)
        except Exception as err:  # noqa: BLE001 - an out-of-memory is a result; anything else is raised
            if not is_out_of_memory(err):
                raise
            section["notes"].append(f"{name}: out of memory at batch {batch}")
            restore(peft, start_state)
            torch.cuda.empty_cache()
            return None
        measured["gradient_checkpointing"] = on
        section["runs"][name] = measured
        save()
        return measured

    for index, batch in enumerate(batches):
        section = speed["by_batch"][str(batch)] = {"runs": {}, "notes": []}
        auto = section["auto_checkpointing"] = auto_checkpointing(peft, batch, args.seq)
        base = run(section, "checkpointing on, sdpa (the recipe before)", batch, True)
        chosen = run(section, f"checkpointing {'on' if auto['on'] else 'off'} (auto), sdpa", batch, auto["on"])
        on = auto["on"] if chosen else True  # auto's choice ran out of memory: the later runs recompute
        final, attention = chosen or base, "sdpa"
        if importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available():
            try:
                model.set_attn_implementation("flash_attention_2")
                flash = run(section, f"checkpointing {'on' if on else 'off'}, flash_attention_2", batch, on)
                if flash and (final is None or flash["tokens_per_s"] > final["tokens_per_s"]):
                    final, attention = flash, "flash_attention_2"
            except Exception as err:  # noqa: BLE001 - reported, the others still run
                section["notes"].append(f"flash_attention_2: {err}")
            if attention != "flash_attention_2":
                model.set_attn_implementation("sdpa")
        else:
            section["notes"].append("flash-attn not installed: SDPA only")
        if index == 0 and importlib.util.find_spec("liger_kernel") is not None and torch.cuda.is_available():
            try:
                from llava_cit.train.liger import apply_liger

                states, losses = [], [[], [], []]
                for i, label in enumerate(("without Liger", "without Liger, again", "with Liger")):
                    if i == 2:
                        section["liger_applied"] = apply_liger(peft)
                    if run(section, f"numerics: 20 steps {label}", batch, on, steps=19, losses=losses[i]) is None:
                        raise RuntimeError(f"the numerical check ran out of memory ({label})")
                    states.append(lora_state(peft))
                section["liger_check"] = {
                    "steps": len(losses[0]),
                    "max_loss_difference_liger": max(abs(a - b) for a, b in zip(losses[0], losses[2])),
                    "max_loss_difference_noise": max(abs(a - b) for a, b in zip(losses[0], losses[1])),
                    "max_update_difference_liger": update_difference(start_state, states[0], states[2]),
                    "max_update_difference_noise": update_difference(start_state, states[0], states[1]),
                    "losses": losses}
                liger = run(section, f"checkpointing {'on' if on else 'off'}, {attention}, Liger", batch, on)
                if liger and (final is None or liger["tokens_per_s"] > final["tokens_per_s"]):
                    final = liger
            except Exception:  # noqa: BLE001 - reported, the others still run
                section["notes"].append("liger: " + traceback.format_exc()[-1500:])
        elif index == 0:
            section["notes"].append("liger-kernel not installed: no Liger run")
        if base and final:
            section["tokens_per_s_after_over_before"] = final["tokens_per_s"] / base["tokens_per_s"]
        save()
    checkpointing(model, True)
    peft.unload()
    save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=None, help="fewer layers (a smoke run; default: the published 32/24)")
    parser.add_argument("--seq", type=int, default=832, help="tokens per training sample (576 of them the image's)")
    parser.add_argument("--answer", type=int, default=32, help="answer tokens per sample (the loss)")
    parser.add_argument("--train-batches", default="16,8", help="per-device batches for bf16 LoRA")
    parser.add_argument("--qlora-batches", default="4,8", help="per-device batches for 4-bit QLoRA")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting (after one untimed)")
    parser.add_argument("--eval-batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--speed-batch", default="16,8", help="the speed section's per-device batches")
    parser.add_argument("--skip", default="speed", help="comma list of sections to skip: eval,bf16,speed,qlora "
                        "(default: speed, which leaves Liger's patches on the model: run it alone, --skip eval,bf16,qlora)")
    parser.add_argument("--out", default=None, help="JSON written after every section")
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    batches = [int(b) for b in args.train_batches.split(",") if b]
    qbatches = [int(b) for b in args.qlora_batches.split(",") if b]
    result = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
              "torch": torch.__version__, "command": " ".join(["python"] + sys.argv), "errors": {}}

    def save():
        print(json.dumps(result, indent=2), flush=True)
        if args.out:
            path = Path(args.out)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(result, indent=2) + "\n")
            os.replace(tmp, path)

    context = context_bytes()
    result["cuda_context_gb"] = context / GB
    processor = stand_in_processor()
    tokenizer = processor.tokenizer
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    folder = architecture(args.layers)
    start = time.perf_counter()
    model = build(folder, image_token, tokenizer.pad_token_id)
    sync()
    result["build_s"] = time.perf_counter() - start
    result["parameters_b"] = sum(p.numel() for p in model.parameters()) / 1e9
    result["layers"] = {"text": model.config.text_config.num_hidden_layers,
                        "vision": model.config.vision_config.num_hidden_layers}
    vision_size = model.config.vision_config.image_size
    save()

    if "eval" not in skip:
        try:
            peft = with_eval_adapters(model, 2, 128)
            loaded = LoadedModel(model, processor, True, "llava-1.5-7b-random")
            encoder = Encoder(loaded)
            n, kwargs = args.eval_batch, {"max_new_tokens": args.new_tokens}
            shapes = synthetic.generate("synth-shapes", n, split="test")
            ocr = synthetic.generate("synth-ocr", n, split="test")
            mixed = [shapes[i // 2] if i % 2 == 0 else ocr[i // 2] for i in range(n)]
            routes = [f"task{i % 2}" for i in range(n)]
            model.generation_config.eos_token_id = None
            peft.set_adapter("task0")
            with torch.inference_mode():
                batched = clock(lambda: generate_batch(peft, encoder, shapes, **kwargs), 3, warmup=True)
                one = clock(lambda: [generate_batch(peft, encoder, [ex], **kwargs) for ex in shapes], 1, warmup=True)
                gathered = gathered_for(peft)
                mixed_gathered = clock(lambda: generate_batch(peft, encoder, mixed, gathered=gathered,
                                                              adapter_names=routes, **kwargs), 3, warmup=True)
                mixed_peft = clock(lambda: generate_batch(peft, encoder, mixed, adapter_names=routes, **kwargs), 3,
                                   warmup=True)
            result["eval"] = {
                "adapters": "2 x LoRA r128 on every language-model linear + projector copies", "batch": n,
                "new_tokens": args.new_tokens, "prompt_tokens": int(encoder.generation_batch(shapes)["input_ids"].shape[1]),
                "batched_s": batched, "batch1_s": one, "batched_speedup": one / batched,
                "batched_samples_per_s": n / batched, "batch1_samples_per_s": n / one,
                "single_task_batch_s": batched, "mixed_gathered_s": mixed_gathered, "mixed_peft_s": mixed_peft,
                "gathered_mixed_over_single_throughput": batched / mixed_gathered,
                "peft_mixed_over_single_throughput": batched / mixed_peft}
            # eval.batch_size auto: the batch it picks here, and its samples/s beside batch n's
            from llava_cit.evaluation.batch_size import auto_batch_size

            try:
                size, why = auto_batch_size(peft, result["eval"]["prompt_tokens"] + args.new_tokens)
                many = synthetic.generate("synth-shapes", size, split="test")
                with torch.inference_mode():
                    at_auto = clock(lambda: generate_batch(peft, encoder, many, **kwargs), 3, warmup=True)
                result["eval"].update({"auto_batch": size, "auto_why": why, "auto_batch_s": at_auto,
                                       "auto_samples_per_s": size / at_auto,
                                       "auto_over_batch_n_samples_per_s": (size / at_auto) / (n / batched)})
            except Exception:  # noqa: BLE001 - reported; the adapters are still unloaded below
                result["eval"]["auto_error"] = traceback.format_exc()[-1500:]
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            model = peft.unload()
            del peft, gathered
        except Exception as err:  # a section that fails is reported, the others still run
            result["errors"]["eval"] = traceback.format_exc()[-2000:]
            print(err, file=sys.stderr)
        gc.collect()
        save()

    lora = LoraSettings(r=128, alpha=256, dropout=0.05, train_projector=True)
    if "bf16" not in skip:
        try:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            peft = add_adapter(model, "task0", lora, is_vision=True)
            upcast = keep_fp32_master_weights(peft)
            result["bf16_lora"] = {"trainable_m": sum(p.numel() for p in peft.parameters() if p.requires_grad) / 1e6,
                                   "fp32_modules": upcast, "runs": []}
            for batch in batches:
                run = measure_training(peft, batch, args.seq, args.answer, args.steps, image_token, vision_size,
                                       context)
                run["plan_estimate_gb"] = plan_estimate(PAPER_CONFIG, folder, batch, args.seq, four_bit=False)
                if "peak_device_gb" in run:
                    run["plan_over_measured"] = run["plan_estimate_gb"] / run["peak_device_gb"]
                result["bf16_lora"]["runs"].append(run)
                save()
            model = peft.unload()  # the fp32 projector copy goes with the adapter; the base stays as built
            del peft
        except Exception as err:
            result["errors"]["bf16"] = traceback.format_exc()[-2000:]
            print(err, file=sys.stderr)
        gc.collect()
        save()

    if "speed" not in skip:
        try:
            speed_section(model, args, image_token, vision_size, context, result, save)
        except Exception as err:
            result["errors"]["speed"] = traceback.format_exc()[-2000:]
            print(err, file=sys.stderr)
        gc.collect()
        save()

    if "qlora" not in skip:
        try:
            if not torch.cuda.is_available():
                raise RuntimeError("4-bit QLoRA needs a CUDA GPU")
            model = model.to(torch.bfloat16)
            start = time.perf_counter()
            result["qlora"] = {"layers_quantized": quantize_language_model(model),
                               "quantize_s": time.perf_counter() - start, "runs": []}
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            peft = add_adapter(model, "task0", lora, is_vision=True)
            result["qlora"]["fp32_modules"] = keep_fp32_master_weights(peft)
            result["qlora"]["weights_gb"] = torch.cuda.memory_allocated() / GB
            for batch in qbatches:
                run = measure_training(peft, batch, args.seq, args.answer, args.steps, image_token, vision_size,
                                       context)
                run["plan_estimate_gb"] = plan_estimate(QLORA_CONFIG, folder, batch, args.seq, four_bit=True)
                run["plan_over_measured"] = run["plan_estimate_gb"] / run["peak_device_gb"]
                result["qlora"]["runs"].append(run)
                save()
        except Exception as err:
            result["errors"]["qlora"] = traceback.format_exc()[-2000:]
            print(err, file=sys.stderr)
        save()


if __name__ == "__main__":
    main()
