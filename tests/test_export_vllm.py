"""`llava-cit export --format vllm`: the files vLLM's LoRA loader reads, checked against what that loader accepts
(vllm/lora/peft_helper.py, lora_model.py, vllm/config/lora.py), and loaded back with PEFT. vLLM itself needs CUDA:
serving the export (answers vs the transformers engine, throughput) is not exercised here."""

import importlib.util
import json

import pytest
import torch
from conftest import tiny_run_config
from peft import PeftModel
from safetensors import safe_open
from test_cli import cli

from llava_cit.config import load_config
from llava_cit.continual.runner import ContinualRunner
from llava_cit.data import synthetic
from llava_cit.models.loading import load_model
from llava_cit.serve.run_server import RunServer
from llava_cit.serve.vllm_export import (
    FAMILIES,
    MANIFEST,
    VLLM_MAX_LORA_RANKS,
    export_vllm,
    family_of,
    max_lora_rank,
    read_export,
    vllm_module,
)
from llava_cit.util.errors import UserError
from switch import SwitchNetwork

FROZEN_PROJECTOR = {"r": 4, "alpha": 8, "dropout": 0.0, "projector_lr": None, "train_projector": False}


def _train(root, cache, name, **extra):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLAVA_CIT_CACHE", str(cache))
        ContinualRunner(load_config(None, base=tiny_run_config(**extra)), root / name).run()
    return root / name


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    run = _train(root, root / "cache", "run", lora=FROZEN_PROJECTOR)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLAVA_CIT_CACHE", str(root / "cache"))
        export_vllm(run, root / "out")
    return run, root / "out"


def test_the_export_holds_what_vllm_loads(exported):
    run, out = exported
    manifest = read_export(out)  # checksums of every exported file verified
    assert manifest["tasks"] == ["synth-shapes", "synth-ocr"] and manifest["routes"] == {
        "synth-shapes": "synth-shapes", "synth-ocr": "synth-ocr"}
    assert manifest["architecture"] == "LlavaForConditionalGeneration" and manifest["base_model"] == "base"
    settings = manifest["vllm"]
    assert settings["max_lora_rank"] in VLLM_MAX_LORA_RANKS and settings["max_loras"] == 2
    family = FAMILIES[manifest["architecture"]]
    for name, rel in manifest["adapters"].items():
        config = json.loads((out / rel / "adapter_config.json").read_text())
        # PEFTHelper: r, lora_alpha, target_modules required; no modules_to_save, no DoRA; rank within max_lora_rank
        assert {"r", "lora_alpha", "target_modules"} <= set(config) and config["peft_type"] == "LORA"
        assert not config["modules_to_save"] and not config["use_dora"] and config["bias"] == "none"
        assert config["r"] <= settings["max_lora_rank"] and config["base_model_name_or_path"] == "base"
        with safe_open(str(out / rel / "adapter_model.safetensors"), framework="pt") as f:
            keys = list(f.keys())
            modules = {vllm_module(key, family) for key in keys}  # raises for anything but a LoRA A/B weight
            assert all(f.get_tensor(k).shape[0 if ".lora_A." in k else 1] == config["r"] for k in keys)
        assert {part for _, part in modules} == {"lora_A", "lora_B"}
        assert all(m.startswith("language_model.model.layers.") and m.rsplit(".", 1)[1] in family.lora_modules
                   for m, _ in modules), name  # vLLM's names for LLaVA's language model, none on the tower
    switch = SwitchNetwork.load(out / manifest["switch"], labels=manifest["switch_labels"])
    served = RunServer(run, lazy_adapters=True).switch
    questions = [x.instruction for x in synthetic.generate("synth-ocr", 3, split="test")] + ["tell me a joke"]
    assert switch.predict(questions) == served.predict(questions)


def test_the_exported_adapter_and_base_give_the_runs_logits(exported):
    run, out = exported
    reference = RunServer(run, adapter="synth-ocr")
    batch = reference.encoder.generation_batch(synthetic.generate("synth-ocr", 2, split="test"))
    with torch.inference_mode():
        expected = reference.model(**batch).logits
    base = load_model(str(out / "base"))
    model = PeftModel.from_pretrained(base.model, str(out / "adapters" / "synth-ocr")).eval()
    with torch.inference_mode():
        got = model(**batch).logits
    torch.testing.assert_close(got, expected)


def test_a_changed_export_is_refused(exported, tmp_path):
    import shutil

    _, out = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    config = copy / "adapters" / "synth-ocr" / "adapter_config.json"
    config.write_text(config.read_text().replace('"r": 4', '"r": 8'))
    with pytest.raises(UserError, match="changed since it was written"):
        read_export(copy)


def test_a_run_with_per_task_projector_copies_is_refused(tmp_path):
    run = _train(tmp_path, tmp_path / "cache", "run")  # lora.train_projector: true (the default)
    with pytest.raises(UserError, match=r"modules_to_save.*lora\.train_projector: false"):
        export_vllm(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_run_with_its_projector_trained_as_lora_is_refused_naming_the_setting(tmp_path):
    run = _train(tmp_path, tmp_path / "cache", "run", lora={**FROZEN_PROJECTOR, "train_projector": "lora"})
    with pytest.raises(UserError, match=r"LoRA on 'multi_modal_projector\.linear_1'.*lora\.train_projector: false"):
        export_vllm(run, tmp_path / "out")  # vLLM's LoRA covers the language model only


def test_families_and_ranks_vllm_takes():
    with pytest.raises(UserError, match="BloomForCausalLM implements no LoRA support"):
        family_of("BloomForCausalLM")
    with pytest.raises(UserError, match="with a mistral language model"):
        family_of("LlavaForConditionalGeneration", "mistral")
    assert family_of("LlamaForCausalLM").model_impl == "auto"
    assert [max_lora_rank([r]) for r in (1, 4, 8, 9, 128, 300, 512)] == [1, 8, 8, 16, 128, 320, 512]
    with pytest.raises(UserError, match="over vLLM's largest max_lora_rank"):
        max_lora_rank([4, 1024])
    llama = FAMILIES["LlamaForCausalLM"]
    assert vllm_module("base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight", llama) == (
        "model.layers.3.self_attn.q_proj", "lora_B")
    with pytest.raises(ValueError):
        vllm_module("base_model.model.model.multi_modal_projector.linear_1.weight", llama)


def test_export_command_and_vllm_engine_without_vllm(exported, tmp_path):
    from typer.testing import CliRunner

    from llava_cit.cli import app
    from llava_cit.serve.vllm_engine import import_vllm

    run, _ = exported
    result = cli("export", str(run), "--format", "vllm", "--out", str(tmp_path / "e"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "e" / MANIFEST).is_file() and "max_lora_rank=8" in result.stdout
    with pytest.raises(UserError, match="exists: choose a new folder, or --force"):
        export_vllm(run, tmp_path / "e")
    refused = CliRunner().invoke(app, ["export", str(run), "--format", "gguf", "--out", str(tmp_path / "g")])
    assert isinstance(refused.exception, UserError) and str(refused.exception) == "--format must be vllm, got 'gguf'"
    if importlib.util.find_spec("vllm") is None:  # here: the vLLM engine refuses before any export or model load
        refused = CliRunner().invoke(app, ["serve", str(run), "--engine", "vllm"])
        assert isinstance(refused.exception, UserError) and "--engine vllm needs vLLM" in str(refused.exception)
        with pytest.raises(UserError, match="pip install vllm"):
            import_vllm()


def test_a_llama_text_run_exports_for_vllms_own_llama(tmp_path):
    """The text track on a Llama (SmolLM2's architecture): a tiny random Llama with the tiny word tokenizer, saved
    as a model directory, which the export names instead of copying."""
    from test_text_runner import TEXT_TRAIN, write_task
    from transformers import LlamaConfig, LlamaForCausalLM

    from llava_cit.models.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer("tiny-bloom")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny-llama")
    tokenizer.save_pretrained(tmp_path / "tiny-llama")
    words = ["red", "blue", "green", "yellow"]
    tasks = [write_task(tmp_path, "colour", "What color is the shape on the left?",
                        [(f"the {w} circle left", w) for w in words] * 4, "rouge1"),
             write_task(tmp_path, "simp", "Describe the image briefly.",
                        [(f"the big {w} square", f"{w} square") for w in words] * 4, "sari")]
    run = _train(tmp_path, tmp_path / "cache", "run", model=str(tmp_path / "tiny-llama"), tasks=tasks,
                 lora={"r": 4, "alpha": 8, "dropout": 0.0}, train=TEXT_TRAIN)
    manifest = export_vllm(run, tmp_path / "out")
    assert manifest["architecture"] == "LlamaForCausalLM" and manifest["vllm"]["model_impl"] == "auto"
    assert manifest["base_model"] == str((tmp_path / "tiny-llama").resolve()) and not (tmp_path / "out/base").exists()
    with safe_open(str(tmp_path / "out/adapters/colour/adapter_model.safetensors"), framework="pt") as f:
        modules = {vllm_module(key, FAMILIES["LlamaForCausalLM"])[0] for key in f.keys()}
    assert all(m.startswith("model.layers.") for m in modules)
    assert {m.rsplit(".", 1)[1] for m in modules} == FAMILIES["LlamaForCausalLM"].lora_modules
