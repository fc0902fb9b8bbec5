"""Mixed-adapter batches as one gathered low-rank product per layer (the S-LoRA / Punica idea, in PyTorch).

PEFT answers a batch whose rows use different adapters (`adapter_names=`) by indexing each adapter's
sub-batch in every LoRA layer at every decoding step: one small matmul pair per adapter present, plus the
scatter back. Here every loaded adapter's A and B are stacked once per layer (ranks padded with zeros to
the largest; index 0 is an all-zero "adapter" for rows the bare base answers), and a batch computes

    delta = ((x @ A[idx]^T) * scaling[idx]) @ B[idx]^T      (two batched matmuls, whatever the mix)

where idx[i] is row i's adapter. PEFT's own A/B weights are re-pointed at slices of the stacks, so the
stacks cost no extra memory and PEFT's single-adapter path keeps working. Per-adapter copies of whole
modules (`modules_to_save`, e.g. LLaVA's projector) run once per adapter on that adapter's rows, as in PEFT.

    gathered = GatheredLoRA(peft_model)
    with gathered.rows(["gqa", "ocrvqa", None, "gqa"]):   # None: the bare base answers that row
        model.generate(...)

`GatheredLoRA.unsupported(model)` says why a model cannot take this path (a LoRA variant such as DoRA, a
LoRA bias, a LoRA on something other than a Linear layer); callers then use PEFT's `adapter_names`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from peft import PeftModel
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.lora.layer import LoraLayer
from peft.utils.other import ModulesToSaveWrapper

BASE = "__base__"  # PEFT's name for "no adapter" rows


def _adapter_names(model: PeftModel) -> list[str]:
    return [name for name, config in model.peft_config.items() if getattr(config, "peft_type", None) is not None
            and str(getattr(config.peft_type, "value", config.peft_type)) == "LORA"]


class GatheredLoRA:
    """The loaded LoRA adapters of `model`, stacked per layer, ready for mixed batches."""

    def __init__(self, model: PeftModel):
        problem = self.unsupported(model)
        if problem is not None:
            raise ValueError(problem)
        self.model = model
        self.names = _adapter_names(model)
        self.index = {name: k + 1 for k, name in enumerate(self.names)}  # 0: the bare base
        self.layers: list[tuple[LoraLinear, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for module in model.modules():
            if isinstance(module, LoraLinear):
                self.layers.append(self._stack(module))
        self.wrappers = [m for m in model.modules() if isinstance(m, ModulesToSaveWrapper)]

    @staticmethod
    def unsupported(model) -> str | None:
        """Why `model`'s adapters cannot be served by gathering (None when they can)."""
        if not isinstance(model, PeftModel):
            return "not a PEFT model"
        names = _adapter_names(model)
        if not names or len(names) != len(model.peft_config):
            return "only LoRA adapters can be gathered"
        for name, module in model.named_modules():
            if isinstance(module, LoraLayer):
                if not isinstance(module, LoraLinear):
                    return f"{name}: LoRA on a {type(module).__name__} layer (only Linear layers are gathered)"
                if any(adapter in module.lora_variant for adapter in module.lora_A):
                    return f"{name}: a LoRA variant (DoRA or similar) is not gathered"
                if any(module.lora_bias.get(adapter, False) for adapter in module.lora_A):
                    return f"{name}: LoRA with a bias is not gathered"
                if getattr(module, "fan_in_fan_out", False):
                    return f"{name}: fan_in_fan_out layers are not gathered"
                if getattr(module, "merged_adapters", None):
                    return f"{name}: adapters are merged into the base weights"
                if getattr(module, "lora_router", None):
                    return f"{name}: MoELoRA's gated experts are not gathered"
        return None

    def _stack(self, layer: LoraLinear):
        present = [name for name in self.names if name in layer.lora_A]
        reference = layer.lora_A[present[0]].weight
        rank = max(layer.lora_A[name].weight.shape[0] for name in present)
        a = torch.zeros(len(self.names) + 1, rank, layer.in_features, dtype=reference.dtype, device=reference.device)
        b = torch.zeros(len(self.names) + 1, layer.out_features, rank, dtype=reference.dtype, device=reference.device)
        scaling = torch.zeros(len(self.names) + 1, dtype=reference.dtype, device=reference.device)
        for name in present:
            k, r = self.index[name], layer.lora_A[name].weight.shape[0]
            a[k, :r] = layer.lora_A[name].weight.detach()
            b[k, :, :r] = layer.lora_B[name].weight.detach()
            scaling[k] = layer.scaling[name]
            # PEFT's weights become views of the stacks: no second copy in memory
            layer.lora_A[name].weight.data = a[k, :r]
            layer.lora_B[name].weight.data = b[k, :, :r]
        return layer, a, b, scaling

    def indices(self, routes: Sequence[str | None]) -> torch.Tensor:
        unknown = sorted({r for r in routes if r not in (None, BASE) and r not in self.index})
        if unknown:
            raise KeyError(f"no adapter loaded for {', '.join(unknown)} (loaded: {', '.join(self.names)})")
        return torch.tensor([0 if r in (None, BASE) else self.index[r] for r in routes], dtype=torch.long)

    @contextmanager
    def rows(self, routes: Sequence[str | None]) -> Iterator[None]:
        """Inside, row i of every batch the model sees is answered by adapter `routes[i]` (None: the bare base)."""
        if self.model.training:
            raise RuntimeError("gathered mixed batches are for inference: call model.eval() first")
        idx = self.indices(routes)
        handles = []
        for layer, a, b, scaling in self.layers:
            handles.append(layer.register_forward_hook(self._lora_hook(a, b, scaling, idx.to(a.device))))
        for wrapper in self.wrappers:
            handles.append(wrapper.register_forward_hook(self._copies_hook(wrapper, list(routes))))
        try:
            with self.model.disable_adapter():  # every LoRA layer and wrapper computes the base only; the hooks add
                yield
        finally:
            for handle in handles:
                handle.remove()

    @staticmethod
    def _lora_hook(a: torch.Tensor, b: torch.Tensor, scaling: torch.Tensor, idx: torch.Tensor):
        used = idx.unique()
        if torch.equal(used, torch.zeros_like(used)):
            return lambda module, args, output: output

        def hook(module, args, output):
            x = args[0]
            if x.shape[0] != idx.shape[0]:
                raise RuntimeError(f"a batch of {x.shape[0]} rows reached a LoRA layer; the routes name {idx.shape[0]}")
            h = torch.bmm(x.to(a.dtype).reshape(x.shape[0], -1, x.shape[-1]), a[idx].transpose(1, 2))
            h = h * scaling[idx].view(-1, 1, 1)
            delta = torch.bmm(h, b[idx].transpose(1, 2)).reshape(*output.shape)
            return output + delta.to(output.dtype)

        return hook

    @staticmethod
    def _copies_hook(wrapper: ModulesToSaveWrapper, routes: list[str | None]):
        groups: dict[str, list[int]] = {}
        for i, route in enumerate(routes):
            if route not in (None, BASE) and route in wrapper.modules_to_save:
                groups.setdefault(route, []).append(i)

        def hook(module, args, output):
            x = args[0]
            if x.shape[0] != len(routes):
                raise RuntimeError(f"{len(routes)} routes but {x.shape[0]} rows reached a per-adapter module copy "
                                   "(a row without exactly one image?)")
            output = output.clone()
            for route, rows in groups.items():
                output[rows] = wrapper.modules_to_save[route](x[rows], *args[1:]).to(output.dtype)
            return output

        return hook
