"""MoELoRA (CoIN, Chen et al. 2024): each LoRA layer a mixture of LoRA experts of rank r/E with a learned per-token
softmax gate; the gates travel in the adapter folder and come back when it is loaded."""

from __future__ import annotations

import json

import torch
from conftest import tiny_run_config

from llava_cit.config import LoraSettings, load_config
from llava_cit.continual.runner import ContinualRunner
from llava_cit.data import synthetic
from llava_cit.methods.adapter_loading import load_adapter
from llava_cit.methods.moe_lora import gated_layers, install_gates
from llava_cit.models.loading import load_model
from llava_cit.train.trainer import add_adapter


def _gated_model(experts=2):
    model = add_adapter(load_model("tiny-llava").model, "m", LoraSettings(r=4, alpha=8, dropout=0.0), True)
    assert install_gates(model, "m", experts, seed=0) == len(gated_layers(model, "m")) > 0
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    return model.eval()


def test_a_gated_layer_is_the_gate_weighted_sum_of_its_experts():
    model = _gated_model(experts=2)
    _, layer = gated_layers(model, "m")[0]
    x = torch.randn(3, 7, layer.in_features)
    a, b = layer.lora_A["m"].weight, layer.lora_B["m"].weight
    gate = torch.softmax(x @ layer.lora_router["m"].weight.T, dim=-1)  # (3, 7, 2)
    experts = sum(gate[..., i:i + 1] * (x @ a[2 * i:2 * i + 2].T @ b[:, 2 * i:2 * i + 2].T) for i in range(2))
    expected = layer.base_layer(x) + layer.scaling["m"] * experts
    with torch.no_grad():
        assert torch.allclose(layer(x), expected, atol=1e-6)


def test_the_gates_travel_in_the_adapter_folder(tmp_path):
    model = _gated_model()
    ids = torch.randint(5, 50, (1, 10))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    model.save_pretrained(tmp_path, selected_adapters=["m"])
    folder = next(tmp_path.rglob("adapter_model.safetensors")).parent
    loaded = load_adapter(load_model("tiny-llava").model, folder, "m").eval()
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, before)
        from peft import PeftModel

        plain = PeftModel.from_pretrained(load_model("tiny-llava").model, str(folder), adapter_name="m").eval()
        assert not torch.allclose(plain(input_ids=ids).logits, before, atol=1e-4)  # PEFT alone drops the gates
    from llava_cit.serve.gathered_lora import GatheredLoRA

    assert "MoELoRA" in GatheredLoRA.unsupported(loaded)  # the gathered kernel would skip the gates


def test_moelora_continues_one_gated_adapter_and_serves_it(tmp_path):
    config = tiny_run_config(method="moelora", method_args={"experts": 2})
    results = ContinualRunner(load_config(None, base=config), tmp_path / "r").run()
    run = tmp_path / "r"
    stage = json.loads((run / "manifest.json").read_text())["stages"][1]
    assert stage["started_from"] == "adapters/00-synth-shapes"
    assert stage["train"]["method"]["experts"] == 2 and stage["train"]["method"]["gated_layers"] > 0
    from safetensors.torch import load_file

    first = load_file(str(next((run / "adapters/00-synth-shapes").rglob("adapter_model.safetensors"))))
    second = load_file(str(next((run / "adapters/01-synth-ocr").rglob("adapter_model.safetensors"))))
    gates = [k for k in first if "lora_router" in k]
    assert gates and any(not torch.equal(first[k], second[k]) for k in gates)  # the gates trained on, from stage 0's
    assert results["method_plan"]["routes"] is False
    from llava_cit.serve.run_server import RunServer

    server = RunServer(run)
    assert gated_layers(server.model, server.fixed)
    answers = server.answer(synthetic.generate("synth-ocr", 3, split="test"), together=True)
    assert all(error is None for _, _, _, error in answers)


def test_a_moelora_stage_killed_mid_training_resumes_to_the_uninterrupted_adapters(tmp_path):
    """The gates are in the Trainer's checkpoint (PEFT saves them with the LoRA matrices) and a resume loads them into
    the gated layers the stage rebuilt, hooks included."""
    import pytest
    from safetensors.torch import load_file
    from test_runner import CrashAt

    from llava_cit.continual.runner import Progress

    config = tiny_run_config(method="moelora", method_args={"experts": 2})
    config["eval"]["limit"] = 4
    ContinualRunner(load_config(None, base=config), tmp_path / "whole").run()
    with pytest.raises(RuntimeError, match="simulated crash"):
        ContinualRunner(load_config(None, base=config), tmp_path / "resumed",
                        progress=Progress(trainer_callbacks=[CrashAt(1, 3)])).run()
    runner = ContinualRunner(load_config(None, base=config), tmp_path / "resumed")
    runner.run()
    assert runner.manifest.stages[1]["train"]["resumed_from"] == "checkpoint-2"
    whole, resumed = (load_file(str(next((tmp_path / r / "adapters/01-synth-ocr").rglob("adapter_model.safetensors"))))
                      for r in ("whole", "resumed"))
    assert sorted(whole) == sorted(resumed) and any("lora_router" in k for k in whole)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
