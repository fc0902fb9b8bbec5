"""`llava-cit plan`: the real LLaVA-1.5-7B architecture from its published configuration (meta device, no
weights), the recipe's batch arithmetic, and the evaluation work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llava_cit.cli import app
from llava_cit.config import load_config
from llava_cit.train.planning import plan

CONFIGS = Path(__file__).resolve().parents[1] / "scripts" / "configs"
ROOT = Path(__file__).resolve().parents[1]
LLAVA_15_7B = ROOT / "scripts" / "bench" / "llava-1.5-7b"  # llava-hf/llava-1.5-7b-hf's published config.json
MEASURED = ROOT / "docs" / "bench" / "llava7b_recipe_h200.json"  # scripts/bench/llava_recipe_gpu.py on an H200


def test_plan_of_the_paper_config_on_the_real_architecture():
    config = load_config(CONFIGS / "llava15_paper_ret0.01pct.yaml", [f"model={LLAVA_15_7B}",
                                                                     "train.gradient_checkpointing=true"])
    one = plan(config, gpus=1, gpu_memory=80)
    eight = plan(config, gpus=8, gpu_memory=80)
    assert 7.0e9 < one["parameters"]["base"] < 7.1e9  # LLaVA-1.5-7B: 7.06B
    lora = 32 * 128 * (4 * (4096 + 4096) + 2 * (4096 + 11008) + (11008 + 4096))
    projector = 1024 * 4096 + 4096 + 4096 * 4096 + 4096
    assert one["parameters"]["trainable"] == lora + projector  # r 128 on every LM linear + the projector
    assert one["batch"] == {"per_device": 16, "gradient_accumulation": 8, "global": 128, "tokens_per_sample": 832}
    assert eight["batch"]["gradient_accumulation"] == 1 and eight["batch"]["global"] == 128
    memory = one["peak_memory_gb_per_gpu"]
    assert memory["4-bit (QLoRA)"] < memory["bf16 DDP"]
    assert eight["peak_memory_gb_per_gpu"]["bf16 ZeRO-3"] < eight["peak_memory_gb_per_gpu"]["bf16 ZeRO-2"] < \
        memory["bf16 DDP"]
    assert [s["task"] for s in one["stages"]] == ["gqa", "ocrvqa-ocrbench"]
    assert one["stages"][0]["train_examples"] is None  # the data is not prepared here: said, not guessed


def test_plan_with_auto_checkpointing_recomputes_only_where_the_batch_does_not_fit():
    config = load_config(CONFIGS / "llava15_paper_ret0.01pct.yaml", [f"model={LLAVA_15_7B}"])
    assert config.train.gradient_checkpointing == "auto"
    pinned = {value: plan(load_config(CONFIGS / "llava15_paper_ret0.01pct.yaml", [
        f"model={LLAVA_15_7B}", f"train.gradient_checkpointing={value}"]), gpus=1)["peak_memory_gb_per_gpu"]
        for value in ("true", "false")}
    for gpu_memory in (40, 80, 141):
        result = plan(config, gpus=1, gpu_memory=gpu_memory)
        for label, recompute in result["gradient_checkpointing"].items():
            without = pinned["false"][label]
            assert recompute == (without * 1.1 > gpu_memory), (gpu_memory, label)
            assert result["peak_memory_gb_per_gpu"][label] == pinned["true" if recompute else "false"][label]
    assert not all(plan(config, gpus=1, gpu_memory=141)["gradient_checkpointing"].values())  # an H200 has room


def test_plan_counts_examples_steps_and_evaluation_and_warns_when_nothing_fits():
    runner = CliRunner()
    result = runner.invoke(app, ["plan", str(CONFIGS / "demo_switchcit.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    config = load_config(CONFIGS / "demo_switchcit.yaml")
    stage = data["stages"][0]
    assert stage["train_examples"] == min(1000, config.train_limit or 1000)
    global_batch = config.train.batch_size * config.train.grad_accum
    assert stage["optimizer_steps"] == -(-stage["train_examples"] * int(config.train.epochs) // global_batch)
    limit = config.eval.limit
    assert data["stages"][1]["eval_samples_after_stage"] == 2 * min(limit or 200, 200)
    tight = runner.invoke(app, ["plan", str(CONFIGS / "demo_switchcit.yaml"), "--gpu-memory", "0.5"])
    assert "no set-up fits 0.5 GB" in tight.output


def test_plan_memory_estimate_is_within_15_percent_of_the_h200_measurement():
    """The formula against the peaks measured on an H200 (LLaVA-1.5-7B, random weights, the paper's LoRA recipe,
    832 tokens per sample): bf16 LoRA and 4-bit QLoRA, per-device batches 4, 8 and 16."""
    measured = json.loads(MEASURED.read_text())
    checked = 0
    for section, config_file, four_bit in (("bf16_lora", "llava15_paper_ret0.01pct.yaml", False),
                                           ("qlora", "llava15_paper_qlora_24gb.yaml", True)):
        for run in measured[section]["runs"]:
            config = load_config(CONFIGS / config_file, [f"model={LLAVA_15_7B}",
                                                         f"train.batch_size={run['per_device_batch']}",
                                                         "train.global_batch_size=null",
                                                         "train.gradient_checkpointing=true"])  # as measured
            estimate = plan(config, gpus=1, tokens_per_sample=run["tokens_per_sample"])["peak_memory_gb_per_gpu"]
            label = "4-bit (QLoRA)" if four_bit else "bf16 DDP"
            assert 0.85 <= estimate[label] / run["peak_device_gb"] <= 1.15, (section, run["per_device_batch"])
            checked += 1
    assert checked == 6


BENCH = ROOT / "scripts" / "bench"


@pytest.mark.parametrize("family,billions,size,image_tokens", [
    ("qwen2.5-vl-7b", 8.29, (448, 448), 256),          # 32 x 32 patches of 14 px, 2 x 2 merged
    ("internvl3-8b", 7.94, (448, 448), 256),           # one 448-px tile, pixel-shuffled to 16 x 16
    ("llava-onevision-qwen2-7b", 8.05, (384, 384), 1485),  # base 27 x 27 + grid 27 x 27 + 27 newlines
    ("idefics3-8b", 8.46, (364, 364), 17 * 169),       # up-scaled to 4 x 4 tiles + the whole image, 169 each
    ("gemma-3-12b", 12.19, (480, 640), 256),           # 256 soft tokens, whatever the size
    ("llava-1.5-7b", 7.06, (480, 640), 576),
])
def test_plan_of_each_familys_published_architecture(family, billions, size, image_tokens):
    """Each family's published 7B-class config.json (scripts/bench/<family>/): its parameters (the published totals),
    and image tokens as its processor counts them at the images' size."""
    config = load_config(CONFIGS / "qwen25vl7b_gqa_ocrvqa.yaml", [f"model={BENCH / family}"])
    result = plan(config, gpus=1, gpu_memory=80, image_size=size)
    assert abs(result["parameters"]["base"] / 1e9 - billions) < 0.01
    assert result["image_tokens"] == image_tokens
    assert result["parameters"]["trainable"] > 0 and result["peak_memory_gb_per_gpu"]["bf16 DDP"] > 0
    other = plan(config, gpus=1, image_size=(size[0] * 2, size[1] * 3))["image_tokens"]
    assert (other != image_tokens) == (family not in ("gemma-3-12b", "llava-1.5-7b"))  # dynamic resolution or not
