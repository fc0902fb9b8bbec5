"""train.liger_kernel: refused in one line where it cannot run (CPU, no package, a family Liger lacks)."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from llava_cit.models.tiny import tiny_llava
from llava_cit.train.liger import apply_liger
from llava_cit.util.errors import UserError


def test_refused_on_a_cpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    model, _ = tiny_llava(seed=0)
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        apply_liger(model)


def _fake_liger(monkeypatch, supported: dict):
    monkey_patch = types.SimpleNamespace(MODEL_TYPE_TO_APPLY_LIGER_FN=supported,
                                         _apply_liger_kernel_to_instance=lambda model, **options:
                                         supported[model.config.model_type]((model, options)))
    package = types.ModuleType("liger_kernel.transformers")
    package.monkey_patch = monkey_patch
    monkeypatch.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", package)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_applied_to_the_base_model_of_a_supported_family(monkeypatch):
    from peft import LoraConfig, get_peft_model

    model, _ = tiny_llava(seed=0)
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    patched = []
    _fake_liger(monkeypatch, {"llava": patched.append})
    said = apply_liger(peft)
    assert "llava" in said
    from transformers.models.llava import modeling_llava

    if "image_hidden_states" in getattr(modeling_llava.LlavaCausalLMOutputWithPast, "__dataclass_fields__", {}):
        assert patched == [(peft.get_base_model(), {})]
    else:  # Liger's LLaVA forward would build an output with a field this transformers lacks: layer kernels only
        assert patched == [(peft.get_base_model(), {"fused_linear_cross_entropy": False})]
        assert "not the fused linear cross-entropy" in said


def test_a_family_liger_lacks_and_a_missing_package_are_one_line(monkeypatch):
    model, _ = tiny_llava(seed=0)
    _fake_liger(monkeypatch, {"qwen2_vl": lambda m: None})
    with pytest.raises(UserError, match="no kernels for model type 'llava'"):
        apply_liger(model)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", None)  # import fails as when not installed
    with pytest.raises(UserError, match="pip install"):
        apply_liger(model)
