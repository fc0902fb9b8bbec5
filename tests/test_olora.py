"""O-LoRA (Wang et al. 2023): a new LoRA per task, the earlier ones frozen and acting, the new A pushed orthogonal to
the earlier A's; one adapter whose rank grows by r per task."""

from __future__ import annotations

import json

import torch
from conftest import tiny_run_config
from safetensors.torch import load_file

from llava_cit.config import LoraSettings, load_config
from llava_cit.continual.runner import ContinualRunner
from llava_cit.methods.olora import OrthogonalSubspace, grow_rank, lora_layers
from llava_cit.train.trainer import add_adapter


def _fresh_tiny_llava():
    from llava_cit.models.loading import load_model

    return load_model("tiny-llava").model  # not the session's: an adapter is injected into it


def _model_with_trained_lora():
    model = add_adapter(_fresh_tiny_llava(), "o", LoraSettings(r=4, alpha=8, dropout=0.0), True)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    model.eval()
    return model


def test_growing_the_rank_keeps_what_the_adapter_computes_and_its_scaling(tmp_path):
    model = _model_with_trained_lora()
    ids = torch.randint(5, 50, (1, 10))
    before = model(input_ids=ids).logits
    scaling = lora_layers(model, "o")[0].scaling["o"]
    assert grow_rank(model, "o", 4, seed=1) == 8
    layer = lora_layers(model, "o")[0]
    assert layer.lora_A["o"].weight.shape[0] == 8 and layer.scaling["o"] == scaling  # alpha grew with the rank
    assert model.peft_config["o"].r == 8 and model.peft_config["o"].lora_alpha == 16
    assert torch.allclose(model(input_ids=ids).logits, before, atol=1e-6)  # the new B columns are zero
    model.save_pretrained(tmp_path, selected_adapters=["o"])
    saved = json.loads(next(tmp_path.rglob("adapter_config.json")).read_text())
    assert saved["r"] == 8 and saved["lora_alpha"] == 16


def test_the_orthogonality_term_is_the_released_codes_abs_sum():
    torch.manual_seed(0)

    class Fake:  # one LoRA layer of two tasks' rank 2 each
        def __init__(self):
            self.lora_A = {"x": torch.nn.Linear(5, 4, bias=False)}
            self.lora_B = {"x": torch.nn.Linear(4, 3, bias=False)}

    hooks = OrthogonalSubspace("x", tasks=2, orthogonality=0.5, l2=0.25)
    layer = Fake()
    hooks.layers = [layer]
    a, b = layer.lora_A["x"].weight, layer.lora_B["x"].weight
    hooks.frozen = [(a.detach()[:2].clone(), b.detach()[:, :2].clone())]
    orthogonal, norms = hooks.terms(None)
    assert torch.allclose(orthogonal, (a[2:] @ a[:2].T).abs().sum())
    assert torch.allclose(norms, a[2:].norm() + b[:, 2:].norm())
    assert torch.allclose(hooks.loss(None), 0.5 * orthogonal + 0.25 * norms)


def test_olora_freezes_the_earlier_subspace_and_pulls_the_new_one_orthogonal(tmp_path):
    config = tiny_run_config(method="olora", method_args={"orthogonality": 50.0})
    results = ContinualRunner(load_config(None, base=config), tmp_path / "r").run()
    run = tmp_path / "r"
    first = load_file(str(next((run / "adapters/00-synth-shapes").rglob("adapter_model.safetensors"))))
    second = load_file(str(next((run / "adapters/01-synth-ocr").rglob("adapter_model.safetensors"))))
    a_keys = [k for k in first if "lora_A" in k]
    for key in a_keys:  # the first task's LoRA, exactly as its stage left it, inside the second's adapter
        assert second[key].shape[0] == 2 * first[key].shape[0] == 8
        assert torch.equal(second[key][:4], first[key])
        b = key.replace("lora_A", "lora_B")
        assert torch.equal(second[b][:, :4], first[b])
    stage = json.loads((run / "manifest.json").read_text())["stages"][1]["train"]["method"]
    assert stage["rank"] == 8 and stage["new_rank"] == 4
    # the new rows started where grow_rank puts them (seed = the stage) and training lowered their overlap
    model = add_adapter(_fresh_tiny_llava(), "p", LoraSettings(r=4, alpha=8, dropout=0.0), True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".p." in name and "lora_" in name:
                p.copy_(first[name.replace(".p.", ".")])
    grow_rank(model, "p", 4, seed=1)
    start, _ = OrthogonalSubspace("p", 2, 0.0, 0.0).terms(model)
    assert stage["overlap_with_earlier"] < float(start)
    assert results["method_plan"]["routes"] is False and len(results["matrix"][-1]) == 2
