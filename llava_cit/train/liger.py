"""`train.liger_kernel: true`: Liger's fused Triton kernels (RMSNorm, SwiGLU, RoPE, fused linear cross-entropy) on the
families Liger supports (LLaVA, Llama, Qwen2/2.5/3-VL, InternVL, Gemma 3, Mistral, ...), applied to the base model
under the adapters. GPU only: on a CPU, without the package, or for a family Liger lacks, one line says so."""

from __future__ import annotations

import torch

from llava_cit.util.errors import UserError


def apply_liger(model: torch.nn.Module) -> str:
    """Patch `model` (a PEFT model or a bare one) in place; what was applied, in words."""
    if not torch.cuda.is_available():
        raise UserError("train.liger_kernel: true needs a CUDA GPU (Liger's kernels are Triton GPU kernels); "
                        "set train.liger_kernel: false on a CPU")
    try:
        from liger_kernel.transformers import monkey_patch
    except ImportError:
        raise UserError("train.liger_kernel: true needs the liger-kernel package: pip install -e \".[liger]\"") from None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    model_type = getattr(base.config, "model_type", None)
    supported = monkey_patch.MODEL_TYPE_TO_APPLY_LIGER_FN
    if model_type not in supported:
        raise UserError(f"train.liger_kernel: Liger has no kernels for model type '{model_type}' "
                        f"(it has {', '.join(sorted(supported))}); set train.liger_kernel: false")
    options = liger_options(model_type)
    monkey_patch._apply_liger_kernel_to_instance(model=base, **options)
    if options.get("fused_linear_cross_entropy") is False:
        return (f"Liger kernels applied to the {model_type} base (its RMSNorm, SwiGLU, RoPE; not the fused linear "
                f"cross-entropy: Liger's {model_type} forward predates this transformers' output fields)")
    return f"Liger kernels applied to the {model_type} base (its RMSNorm, SwiGLU, RoPE, fused linear cross-entropy)"


def liger_options(model_type: str) -> dict:
    """Options for Liger's patch of `model_type`. Liger's LLaVA forward (the one that fuses the cross-entropy) builds
    its output with `image_hidden_states`, a field transformers 5 renamed (`image_outputs`): called, it raises a
    TypeError. Where this transformers lacks the field, only the layer kernels are applied."""
    if model_type == "llava":
        from transformers.models.llava import modeling_llava

        fields = getattr(modeling_llava.LlavaCausalLMOutputWithPast, "__dataclass_fields__", {})
        if "image_hidden_states" not in fields:
            return {"fused_linear_cross_entropy": False}
    return {}
