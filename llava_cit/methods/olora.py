"""O-LoRA (Wang et al. 2023, Orthogonal Subspace Learning for Language Model Continual Learning, EMNLP Findings;
arXiv 2310.14152; code github.com/cmnfriend/O-LoRA): each task learns a new LoRA (A_t, B_t) while the earlier tasks'
LoRAs stay frozen and keep acting; the new A is pushed orthogonal to every earlier one:

    loss = task loss + lambda_1 * sum over layers |A_t A_old^T|.sum() + lambda_2 * sum over layers (||A_t|| + ||B_t||)

(A_old: the earlier tasks' A stacked; |.| elementwise, summed; ||.|| the Frobenius norm), as the released code's
`uie_trainer_lora.py` computes it (its scripts: lambda_1 0.5, lambda_2 0). After the task, the new LoRA joins the
frozen ones by concatenation along the rank (the code's merge: A = [A_old; A_t], B = [B_old, B_t]), so the sum of all
tasks' LoRAs is one PEFT adapter of rank r x (tasks so far), and no task identity is needed at inference.

Here each stage continues the previous stage's adapter and grows it by r (the first stage's rank): the new rows of A
are PEFT's LoRA initialisation, the new columns of B zero, and lora_alpha grows with the rank so the scaling (alpha/r)
of every earlier LoRA stays what it was. The earlier rows and columns get no gradient and are restored after each
optimizer step (weight decay cannot move them). On LLaVA the projector copy, when trained, continues from stage to
stage as in seq-lora (O-LoRA is a language-model method).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from peft.tuners.lora import Linear as LoraLinear

from llava_cit.methods.base import Method, StageContext, TrainingHooks
from llava_cit.methods.registry import register
from llava_cit.methods.settings import setting
from llava_cit.util.errors import UserError


def lora_layers(model, adapter: str) -> list[LoraLinear]:
    return [m for m in model.modules() if isinstance(m, LoraLinear) and adapter in m.lora_A]


def grow_rank(model, adapter: str, extra: int, seed: int = 0) -> int:
    """Add `extra` ranks to every LoRA linear layer of `adapter`: new rows of A initialised as PEFT initialises A,
    new columns of B zero, the scaling of the existing ranks unchanged. Returns the new rank."""
    generator = torch.Generator().manual_seed(seed)
    new_rank = None
    for layer in lora_layers(model, adapter):
        a, b = layer.lora_A[adapter], layer.lora_B[adapter]
        old = a.weight.shape[0]
        grown_a = torch.nn.Linear(a.in_features, old + extra, bias=False)
        grown_b = torch.nn.Linear(old + extra, b.out_features, bias=b.bias is not None)
        with torch.no_grad():
            torch.nn.init.kaiming_uniform_(grown_a.weight, a=math.sqrt(5), generator=generator)
            grown_a.weight[:old] = a.weight.detach().float()
            grown_b.weight.zero_()
            grown_b.weight[:, :old] = b.weight.detach().float()
            if b.bias is not None:
                grown_b.bias.copy_(b.bias.detach().float())
        layer.lora_A[adapter] = grown_a.to(a.weight.device, a.weight.dtype)
        layer.lora_B[adapter] = grown_b.to(b.weight.device, b.weight.dtype)
        scaling = layer.scaling[adapter]
        layer.r[adapter] = new_rank = old + extra
        layer.lora_alpha[adapter] = scaling * (math.sqrt(new_rank) if layer.use_rslora.get(adapter) else new_rank)
        layer.scaling[adapter] = scaling
    if new_rank is None:
        raise UserError("O-LoRA found no LoRA linear layer to grow")
    config = model.peft_config[adapter]
    if config.rank_pattern or config.alpha_pattern:
        raise UserError("O-LoRA grows every layer by the same rank: it needs a LoRA without rank_pattern/alpha_pattern")
    config.lora_alpha = layer.lora_alpha[adapter]
    config.r = new_rank
    return new_rank


class OrthogonalSubspace(TrainingHooks):
    """Of an adapter holding `tasks` tasks' LoRAs of equal rank, the last (this stage's) trains; the earlier ones are
    frozen; the loss adds O-LoRA's orthogonality and L2 terms."""

    def __init__(self, adapter: str, tasks: int, orthogonality: float, l2: float):
        self.adapter, self.tasks, self.orthogonality, self.l2 = adapter, tasks, orthogonality, l2
        self.layers = self.frozen = None

    def _bind(self, model) -> None:
        if self.layers is None:
            self.layers = lora_layers(model, self.adapter)
            ranks = [layer.lora_A[self.adapter].weight.shape[0] for layer in self.layers]
            old = [rank - rank // self.tasks for rank in ranks]
            self.frozen = [(layer.lora_A[self.adapter].weight.detach()[:k].clone(),
                            layer.lora_B[self.adapter].weight.detach()[:, :k].clone()) for layer, k in zip(self.layers, old)]

    def terms(self, model) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum |A_new A_old^T|, sum ||A_new|| + ||B_new||) over the layers."""
        self._bind(model)
        orthogonal, norms = [], []
        for layer, (a_old, _) in zip(self.layers, self.frozen):
            a, b = layer.lora_A[self.adapter].weight, layer.lora_B[self.adapter].weight
            a_new, b_new = a[len(a_old):], b[:, len(a_old):]
            if len(a_old):
                orthogonal.append((a_new @ a_old.to(a_new.dtype).T).abs().sum())
            norms.append(torch.linalg.norm(a_new.float()) + torch.linalg.norm(b_new.float()))
        zero = torch.zeros((), device=norms[0].device) if norms else torch.zeros(())
        return sum(orthogonal, zero), sum(norms, zero)

    def loss(self, model):
        orthogonal, norms = self.terms(model)
        return self.orthogonality * orthogonal + self.l2 * norms

    def before_step(self, model):
        self._bind(model)
        for layer, (a_old, _) in zip(self.layers, self.frozen):
            a, b = layer.lora_A[self.adapter].weight, layer.lora_B[self.adapter].weight
            if a.grad is not None:
                a.grad[: len(a_old)] = 0
            if b.grad is not None:
                b.grad[:, : len(a_old)] = 0

    @torch.no_grad()
    def after_step(self, model):
        for layer, (a_old, b_old) in zip(self.layers, self.frozen):
            layer.lora_A[self.adapter].weight[: len(a_old)] = a_old
            layer.lora_B[self.adapter].weight[:, : len(a_old)] = b_old


@dataclass(frozen=True)
class OLoRASettings:
    orthogonality: float = setting(0.5, "λ1: weight of sum |A_new A_old^T| (the released code's scripts: 0.5)",
                                   at_least=0)
    l2: float = setting(0.0, "λ2: weight of the new LoRA's norms ||A_new|| + ||B_new|| (the scripts: 0)", at_least=0)


@dataclass(frozen=True)
class OLoRA(Method):
    continues: bool = True
    settings_type: type = OLoRASettings
    multi_process: bool = False  # freezing the earlier ranks reads p.grad, which DeepSpeed ZeRO partitions away

    def new_rank(self, ctx: StageContext, model) -> int:
        """The rank each task adds: the first stage's (the adapter continued here has it times the stages so far)."""
        rank = lora_layers(model, ctx.adapter)[0].r[ctx.adapter]
        if rank % ctx.stage:
            raise UserError(f"O-LoRA: the continued adapter's rank {rank} is not {ctx.stage} tasks' equal ranks")
        return rank // ctx.stage

    def before_training(self, ctx: StageContext, model) -> None:
        if ctx.stage > 0:
            grow_rank(model, ctx.adapter, self.new_rank(ctx, model), seed=ctx.stage)

    def training_hooks(self, ctx: StageContext) -> TrainingHooks | None:
        if ctx.stage == 0 and not ctx.settings.l2:
            return None
        return OrthogonalSubspace(ctx.adapter, ctx.stage + 1, ctx.settings.orthogonality, ctx.settings.l2)

    def after_stage(self, ctx: StageContext, model, hooks: TrainingHooks | None = None) -> dict:
        rank = lora_layers(model, ctx.adapter)[0].r[ctx.adapter]
        with torch.no_grad():
            orthogonal, _ = OrthogonalSubspace(ctx.adapter, ctx.stage + 1, 0.0, 0.0).terms(model)
        return {"rank": rank, "new_rank": rank // (ctx.stage + 1), "overlap_with_earlier": float(orthogonal)}


register(OLoRA("olora", description="a new LoRA per task kept orthogonal to the earlier tasks' (frozen, all acting); "
                                    "one growing adapter, no task identity at inference",
               paper="Wang et al. 2023, Orthogonal Subspace Learning for Language Model Continual Learning (EMNLP "
                     "Findings; arXiv 2310.14152)"))
