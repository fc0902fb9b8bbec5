"""attn_implementation: auto picks FlashAttention-2 only where it can run; bad values are one line."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from llava_cit.models.attention import attention_implementation
from llava_cit.util.errors import UserError


def test_auto_on_this_machine_and_on_a_gpu_with_and_without_flash_attn(monkeypatch):
    if not torch.cuda.is_available():
        assert attention_implementation("auto")[0] is None  # transformers' default: sdpa where the model has it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "flash_attn" else real_find_spec(name))
    assert attention_implementation("auto")[0] is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "flash_attn" else real_find_spec(name))
    assert attention_implementation("auto")[0] == "flash_attention_2"


def test_explicit_values_and_refusals(monkeypatch):
    assert attention_implementation("eager")[0] == "eager"
    with pytest.raises(UserError, match="not one of"):
        attention_implementation("fast")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        attention_implementation("flash_attention_2")
