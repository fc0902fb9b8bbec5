"""A-GEM: seq-lora whose every update is kept from increasing the loss on the retained examples of earlier
tasks: before each optimizer step the reference gradient is computed on a batch drawn from that buffer, and
when the step's gradient conflicts with it (negative dot product) the gradient is projected:

    g <- g - (g . g_ref / g_ref . g_ref) g_ref

g is the step's whole accumulated gradient before the Trainer clips it (LoraTrainer runs `before_step` there; the
projected gradient is what gets clipped), over the parameters that have one: a parameter the task loss gave no
gradient keeps none (the reference pass's gradient is not left on it), and takes no part in the dot products.
`method_args.reference_batch` (default 8) examples per reference gradient (`AGEMSettings`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch

from llava_cit.methods.base import Method, StageContext, TrainingHooks, find_hooks
from llava_cit.methods.registry import register
from llava_cit.methods.regularization import adapter_parameters, batches, to_device
from llava_cit.methods.settings import setting


def project(grad: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """A-GEM's projection of the flat gradient `grad` against the flat reference gradient."""
    dot = torch.dot(grad, reference)
    if dot >= 0:
        return grad
    return grad - dot / torch.dot(reference, reference).clamp(min=1e-12) * reference


class ReferenceProjection(TrainingHooks):
    """`reference_loss(model, step)`: the loss on the step's draw from the buffer (its gradient is g_ref)."""

    def __init__(self, adapter: str, reference_loss: Callable[[torch.nn.Module, int], torch.Tensor]):
        self.adapter, self.reference_loss = adapter, reference_loss
        self.projected = self.steps = 0

    def before_step(self, model):
        everything = list(adapter_parameters(model, self.adapter).values())
        params = [p for p in everything if p.grad is not None]
        if not params:
            return
        grads = [p.grad.detach().clone() for p in params]
        for p in everything:
            p.grad = None
        with torch.enable_grad():
            self.reference_loss(model, self.global_step).backward()
        reference = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().float()
                               for p in params])
        for p in everything:  # the reference pass's gradient stays on no parameter
            p.grad = None
        flat = torch.cat([g.flatten().float() for g in grads])
        new = project(flat, reference)
        self.steps += 1
        self.projected += int(not torch.equal(new, flat))
        offset = 0
        for p, g in zip(params, grads):
            p.grad = new[offset:offset + g.numel()].view_as(g).to(g.dtype)
            offset += g.numel()


def buffer_loss(ctx: StageContext, buffer, batch_size: int, seed: int) -> Callable[[torch.nn.Module, int], torch.Tensor]:
    """The training loss on `batch_size` examples of `buffer` drawn from (seed, step), not from a stream: a stage
    resumed from a checkpoint draws what it would have drawn."""

    def loss(model, step: int) -> torch.Tensor:
        rng = random.Random(f"a-gem:{seed}:{step}")
        sample = rng.sample(buffer, min(batch_size, len(buffer)))
        batch = next(batches(ctx, sample, batch_size=len(sample)))
        return model(**to_device(batch, model)).loss

    return loss


@dataclass(frozen=True)
class AGEMSettings:
    reference_batch: int = setting(8, "retained examples per reference gradient", at_least=1)


@dataclass(frozen=True)
class AGEM(Method):
    continues: bool = True
    multi_process: bool = False  # its reference gradients take extra backward passes outside DDP's
    settings_type: type = AGEMSettings

    def training_hooks(self, ctx: StageContext) -> TrainingHooks | None:
        buffer = [ex for task in ctx.tasks[: ctx.stage] for ex in ctx.replay.get(task, [])]
        if not buffer:
            return None
        return ReferenceProjection(ctx.adapter, buffer_loss(ctx, buffer, ctx.settings.reference_batch, seed=ctx.stage))

    def after_stage(self, ctx: StageContext, model, hooks: TrainingHooks | None = None) -> dict | None:
        projection = find_hooks(hooks, ReferenceProjection)
        if projection is None:
            return None
        return {"steps": projection.steps, "projected_steps": projection.projected}


register(AGEM("a-gem", description="seq-lora whose updates never conflict with the retained examples' gradient",
              paper="Chaudhry et al. 2019, Efficient Lifelong Learning with A-GEM (ICLR)"))
