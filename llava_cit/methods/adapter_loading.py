"""Loading a run's adapter folder: PEFT's loading, plus what a method's adapter holds beyond PEFT's LoRA layers
(MoELoRA's per-layer gates, llava_cit.methods.moe_lora). Every place that loads an adapter of a run (training a
stage from an earlier one, evaluation, serving) loads it here, so an expert-mixture adapter is never served as the
plain LoRA PEFT alone would build."""

from __future__ import annotations

from pathlib import Path

from peft import PeftModel

from llava_cit.methods.moe_lora import attach_saved_gates


def load_adapter(model, path: str | Path, name: str, trainable: bool = False) -> PeftModel:
    """Adapter folder `path` loaded under `name` onto `model` (a base model, or a PeftModel holding others)."""
    if isinstance(model, PeftModel):
        model.load_adapter(str(path), adapter_name=name, is_trainable=trainable)
    else:
        model = PeftModel.from_pretrained(model, str(path), adapter_name=name, is_trainable=trainable)
    attach_saved_gates(model, name, Path(path))
    return model
