"""MoELoRA (the CoIN benchmark's method, Chen et al. 2024, arXiv 2403.08350; its code: github.com/zackschen/CoIN,
CoIN/peft/tuners/coinmoelora.py): every LoRA layer is a mixture of `experts` LoRA experts of rank r / experts, mixed
per token by a learned gate:

    h = W x + scaling * sum_i  g_i B_i A_i dropout(x),   g = softmax(R dropout(x)),   R: experts x in_features, no bias

one adapter continued from task to task (all of it trains at every stage, as in CoIN's scripts). Expert i is rows
[i r/E, (i+1) r/E) of the adapter's A and the same columns of its B, so an expert-mixture adapter is a PEFT LoRA
adapter plus one gate per layer: the gate R is a parameter of the LoRA layer (`lora_router.<adapter>`), saved by PEFT
in the adapter's own adapter_model.safetensors (`...lora_router.weight`), and put back on the layer by
`attach_saved_gates` when the folder is loaded (llava_cit.methods.adapter_loading). Initialisation: A and B as
PEFT's LoRA (CoIN draws A from N(0, 0.01)), R as a torch Linear layer. CoIN's gate reads the layer's input before
LoRA dropout; ours reads it after (the same with dropout 0, and at inference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from peft.tuners.lora import Linear as LoraLinear
from safetensors import safe_open

from llava_cit.methods.base import Method, StageContext, TrainingHooks
from llava_cit.methods.registry import register
from llava_cit.methods.settings import setting
from llava_cit.util.errors import UserError

GATE = "lora_router"
WEIGHTS = "adapter_model.safetensors"


def _gate_hook(layer: LoraLinear, adapter: str):
    """Scales the output of the adapter's A (rank r) by each token's gate, expert by expert: B then sums the
    experts. The gate reads what A reads (PEFT's per-adapter sub-batch of a mixed batch, after LoRA dropout)."""

    def hook(module, args, output):
        router = getattr(layer, GATE)[adapter]
        gate = torch.softmax(router(args[0].to(router.weight.dtype)), dim=-1)
        per_expert = output.shape[-1] // gate.shape[-1]
        return output * gate.repeat_interleave(per_expert, dim=-1).to(output.dtype)

    return hook


def gated_layers(model, adapter: str) -> list[tuple[str, LoraLinear]]:
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, LoraLinear) and adapter in getattr(m, GATE, {})]


def install_gates(model, adapter: str, experts: int, weights: dict[str, torch.Tensor] | None = None,
                  seed: int = 0) -> int:
    """Turn every LoRA linear layer of `adapter` into a mixture of `experts` experts (a no-op where it already is);
    `weights`: the gates' weights by layer name (a saved adapter), else initialised as a torch Linear layer's, from
    `seed`. Returns the layers."""
    generator = torch.Generator().manual_seed(seed)
    count = 0
    for name, layer in model.named_modules():
        if not isinstance(layer, LoraLinear) or adapter not in layer.lora_A:
            continue
        gates = getattr(layer, GATE, None)
        if gates is not None and adapter in gates:
            count += 1
            continue
        rank = layer.r[adapter]
        if rank % experts:
            raise UserError(f"MoELoRA: the LoRA rank ({rank}) must be a multiple of method_args.experts ({experts})")
        a = layer.lora_A[adapter].weight
        router = torch.nn.Linear(layer.in_features, experts, bias=False)
        with torch.no_grad():
            if weights is not None:
                router.weight.copy_(weights[name])
            else:
                torch.nn.init.kaiming_uniform_(router.weight, a=math.sqrt(5), generator=generator)
        router.to(a.device, a.dtype)
        if gates is None:
            layer.add_module(GATE, torch.nn.ModuleDict())
        getattr(layer, GATE)[adapter] = router
        layer.lora_A[adapter].register_forward_hook(_gate_hook(layer, adapter))
        count += 1
    return count


def saved_gates(folder: Path) -> dict[str, torch.Tensor]:
    """The gate weights an adapter folder holds, by the name of their layer in the loaded PeftModel."""
    path = folder / WEIGHTS
    if not path.is_file():
        return {}
    with safe_open(str(path), framework="pt") as f:
        return {k[: -len(f".{GATE}.weight")]: f.get_tensor(k) for k in f.keys() if k.endswith(f".{GATE}.weight")}


def attach_saved_gates(model, adapter: str, folder: Path) -> int:
    """Put an expert-mixture adapter's gates back on its layers after PEFT loaded the folder (PEFT loads only the
    LoRA matrices of a layer it builds); nothing for a plain LoRA adapter. Returns the layers gated."""
    weights = saved_gates(Path(folder))
    if not weights:
        return 0
    experts = next(iter(weights.values())).shape[0]
    return install_gates(model, adapter, experts, weights)


@dataclass(frozen=True)
class MoELoRASettings:
    experts: int = setting(8, "LoRA experts per layer (the rank is split among them; CoIN's scripts use 8)", at_least=1)


@dataclass(frozen=True)
class MoELoRA(Method):
    continues: bool = True
    settings_type: type = MoELoRASettings

    def before_training(self, ctx: StageContext, model) -> None:
        # a fresh gate's weights depend on the stage only (a resume draws the same)
        if not install_gates(model, ctx.adapter, ctx.settings.experts, seed=ctx.stage):
            raise UserError("MoELoRA found no LoRA linear layer to turn into experts")

    def after_stage(self, ctx: StageContext, model, hooks: TrainingHooks | None = None) -> dict:
        return {"experts": ctx.settings.experts, "gated_layers": len(gated_layers(model, ctx.adapter))}


register(MoELoRA("moelora", description="one adapter continued across tasks, each LoRA layer a mixture of LoRA experts "
                                        "with a learned per-token gate",
                 paper="Chen et al. 2024, CoIN: A Benchmark of Continual Instruction tuNing for Multimodal Large "
                       "Language Models (NeurIPS D&B; arXiv 2403.08350)"))
