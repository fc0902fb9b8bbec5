"""`llava-cit plan`: the real LLaVA-1.5-7B architecture from its published configuration (meta device, no
weights), the recipe's batch arithmetic, and the evaluation work."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from llava_cit.cli import app
from llava_cit.config import load_config
from llava_cit.planning import plan

CONFIGS = Path(__file__).resolve().parents[1] / "scripts" / "configs"
LLAVA_15_7B = {  # llava-hf/llava-1.5-7b-hf's config.json (text model: Llama defaults = Vicuna-7B's sizes)
    "architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_token_index": 32000,
    "model_type": "llava", "pad_token_id": 32001, "projector_hidden_act": "gelu",
    "text_config": {"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 4096, "model_type": "llama",
                    "rms_norm_eps": 1e-05, "vocab_size": 32064},
    "tie_word_embeddings": False,
    "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                      "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
                      "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
    "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": 32064,
}


def test_plan_of_the_paper_config_on_the_real_architecture(tmp_path):
    (tmp_path / "llava7b").mkdir()
    (tmp_path / "llava7b" / "config.json").write_text(json.dumps(LLAVA_15_7B))
    config = load_config(CONFIGS / "llava15_paper_ret0.01pct.yaml", [f"model={tmp_path / 'llava7b'}"])
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
