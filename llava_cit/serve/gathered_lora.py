"""Mixed-adapter batches as one gathered low-rank product per layer (the S-LoRA / Punica idea, in PyTorch).

PEFT answers a batch whose rows use different adapters (`adapter_names=`) by indexing each adapter's
sub-batch in every LoRA layer at every decoding step: one small matmul pair per adapter present, plus the
scatter back. Here every loaded adapter's A and B are stacked once per layer (ranks padded with zeros to
the largest; index 0 is an all-zero "adapter" for rows the bare base answers), and a batch computes

    delta = ((x @ A[idx]^T) * scaling[idx]) @ B[idx]^T      (two batched matmuls, whatever the mix)

where idx[i] is row i's adapter. PEFT's own A/B weights are re-pointed at slices of the stacks, so the
stacks cost no extra memory and PEFT's single-adapter path keeps working.

The image path (what turns pixels into the features that replace the image tokens: vision encoder and projector)
does not keep one row per example: patches, tiles and crops of every image are stacked together, family by
family. Where adapters have weights there (a projector copy, `modules_to_save`; LoRA on the projector or the
vision encoder), the model's own `get_image_features` runs once per adapter present in the batch, on every
image, and each image-token feature is taken from the run of its row's adapter (features replace image tokens
in order, in every family: that is how the row of each is known). A vision encoder without adapter weights is
run once and its output reused.

    gathered = GatheredLoRA(peft_model)
    with gathered.rows(["gqa", "ocrvqa", None, "gqa"]):   # None: the bare base answers that row
        model.generate(...)

`GatheredLoRA.unsupported(model)` says why a model cannot take this path (a LoRA variant such as DoRA, a
LoRA bias, a LoRA on something other than a Linear layer); callers then use PEFT's `adapter_names`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from peft import PeftModel
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.lora.layer import LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils.other import AuxiliaryTrainingWrapper, ModulesToSaveWrapper

from llava_cit.models.vision_parts import vision_parts

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
        self.parts = vision_parts(model)
        image_part = ("vision", "projector")
        self.layers: list[tuple[LoraLinear, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.image_layers: list[tuple[LoraLinear, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.wrappers: list[ModulesToSaveWrapper] = []
        self.image_wrappers: list[ModulesToSaveWrapper] = []
        base = model.get_base_model()
        for name, module in base.named_modules():
            on_image_path = self.parts is not None and self.parts.part_of(name) in image_part
            if isinstance(module, LoraLinear):
                (self.image_layers if on_image_path else self.layers).append(self._stack(module))
            elif isinstance(module, ModulesToSaveWrapper):
                (self.image_wrappers if on_image_path else self.wrappers).append(module)
        self.tuner_layers = [m for m in model.modules() if isinstance(m, (BaseTunerLayer, AuxiliaryTrainingWrapper))]

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
        parts = vision_parts(model)
        deepstack = [p for p in parts.projector if p.endswith("deepstack_merger_list")] if parts else []
        if deepstack and any(name.startswith(deepstack[0]) for name, m in model.get_base_model().named_modules()
                             if isinstance(m, (LoraLayer, ModulesToSaveWrapper))):
            return f"{deepstack[0]}: adapters on deepstack mergers (Qwen3-VL) are not gathered per row"
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
        was_disabled = [layer._disable_adapters for layer in self.tuner_layers]
        restore = self._gather_image_features(idx, list(routes), handles) if (self.image_layers or
                                                                               self.image_wrappers) else None
        try:
            # every LoRA layer and wrapper computes the base only; the hooks add each row's own delta. The flag is set
            # directly: PeftModel.disable_adapter() walks every adapter's parameters on entry and exit (0.6 s of a
            # 0.9 s tiny batch with 128 adapters loaded, docs/BENCHMARKS.md)
            for layer in self.tuner_layers:
                layer._disable_adapters = True
            yield
        finally:
            for layer, disabled in zip(self.tuner_layers, was_disabled):
                layer._disable_adapters = disabled
            for handle in handles:
                handle.remove()
            if restore is not None:
                restore()

    def _gather_image_features(self, idx: torch.Tensor, routes: list[str | None], handles: list):
        """Route the image path adapter by adapter (see the module's docstring); returns what undoes it."""
        base = self.model.get_base_model()
        container = base.get_submodule(self.parts.container) if self.parts.container else base
        vision = base.get_submodule(self.parts.vision)
        current = [0]  # the adapter index the image path computes with now (0: the base)
        for layer, a, b, scaling in self.image_layers:
            handles.append(layer.register_forward_hook(self._uniform_lora_hook(a, b, scaling, current)))
        for wrapper in self.image_wrappers:
            handles.append(wrapper.register_forward_hook(self._uniform_copy_hook(wrapper, current, self.names)))
        seen: dict[str, torch.Tensor] = {}

        def remember(_module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is not None:
                seen["input_ids"] = ids

        handles.append(container.register_forward_pre_hook(remember, with_kwargs=True))
        vision_prefix = self.parts.vision + "."
        adapters_in_vision = any(n.startswith(vision_prefix) for n, m in base.named_modules()
                                 if isinstance(m, (LoraLinear, ModulesToSaveWrapper)))
        original = container.get_image_features
        token = getattr(base.config, "image_token_id", None)

        @functools.wraps(original)
        def gathered(*args, **kwargs):
            ids = seen.pop("input_ids", None)
            if ids is None or token is None:
                raise RuntimeError("mixed adapters on the image path need the prompt's input_ids and the model's "
                                   "image_token_id")
            token_rows = (ids == token).nonzero()[:, 0].cpu()
            token_adapter = idx[token_rows]
            output, pooled = None, {}
            with _reuse_first_output(vision, enabled=not adapters_in_vision):
                for k in token_adapter.unique().tolist():
                    current[0] = k
                    output = original(*args, **kwargs)
                    pooled[k] = getattr(output, "pooler_output", None)  # before a later run replaces it
            current[0] = 0
            output.pooler_output = _select_features(pooled, token_adapter, type(base).__name__)
            return output

        container.get_image_features = gathered
        # generate() encodes images before the prompt's first forward pass, without its input_ids: inside, they are
        # encoded in that forward pass (as the model's own forward does), where the image tokens' rows are known
        base._supports_mm_encoder_outputs = lambda: False

        def restore():
            del container.get_image_features
            del base._supports_mm_encoder_outputs

        return restore

    @staticmethod
    def _uniform_lora_hook(a: torch.Tensor, b: torch.Tensor, scaling: torch.Tensor, current: list[int]):
        def hook(module, args, output):
            k = current[0]
            if k == 0:
                return output
            x = args[0].to(a.dtype)
            delta = ((x @ a[k].T) * scaling[k]) @ b[k].T
            return output + delta.to(output.dtype)

        return hook

    @staticmethod
    def _uniform_copy_hook(wrapper: ModulesToSaveWrapper, current: list[int], names: list[str]):
        def hook(module, args, output):
            k = current[0]
            name = names[k - 1] if k else None
            if name is None or name not in wrapper.modules_to_save:
                return output
            return wrapper.modules_to_save[name](*args)

        return hook

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


@contextmanager
def _reuse_first_output(module: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Inside, `module` computes once and gives that output to later calls (the same images, adapter after adapter)."""
    if not enabled:
        yield
        return
    forward, cached = module.forward, []

    def once(*args, **kwargs):
        if not cached:
            cached.append(forward(*args, **kwargs))
        return cached[0]

    module.forward = once
    try:
        yield
    finally:
        del module.forward


def _flat(features) -> torch.Tensor:
    if isinstance(features, (list, tuple)):
        return torch.cat([f.reshape(-1, f.shape[-1]) for f in features])
    return features.reshape(-1, features.shape[-1])


def _unflat(flat: torch.Tensor, like):
    if isinstance(like, (list, tuple)):
        pieces, start = [], 0
        for f in like:
            pieces.append(flat[start:start + f.numel() // f.shape[-1]].reshape(f.shape))
            start += f.numel() // f.shape[-1]
        return type(like)(pieces)
    return flat.reshape(like.shape)


def _select_features(pooled: dict, token_adapter: torch.Tensor, family: str):
    """Each image token's feature from its row's adapter's run (features replace image tokens in order)."""
    like = next(iter(pooled.values()))
    if like is None:
        raise RuntimeError(f"{family}: get_image_features returns no pooled features to route per row")
    combined = _flat(like).clone()
    if combined.shape[0] != token_adapter.shape[0]:
        raise RuntimeError(f"{family}: {combined.shape[0]} image features for {token_adapter.shape[0]} image tokens: "
                           "mixed adapters on its image path cannot be gathered")
    for k, features in pooled.items():
        rows = (token_adapter == k).to(combined.device)
        combined[rows] = _flat(features)[rows].to(combined.dtype)
    return _unflat(combined, like)
