"""A-GEM: seq-lora whose every update is kept from increasing the loss on the retained examples of earlier
tasks: before each optimizer step the reference gradient is computed on a batch drawn from that buffer, and
when the step's gradient conflicts with it (negative dot product) the gradient is projected:

    g <- g - (g . g_ref / g_ref . g_ref) g_ref

`method_args.reference_batch` (default 8) examples per reference gradient (`AGEMSettings`).
"""

from __future__ import annotations

import random
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
    def __init__(self, ctx: StageContext, buffer, batch_size: int, seed: int):
        self.ctx, self.buffer, self.batch_size, self.seed = ctx, buffer, batch_size, seed
        self.projected = self.steps = 0

    def before_step(self, model):
        params = [p for p in adapter_parameters(model, self.ctx.adapter).values() if p.grad is not None]
        if not params:
            return
        grads = [p.grad.detach().clone() for p in params]
        for p in params:
            p.grad = None
        # drawn from (seed, step), not from a stream: a stage resumed from a checkpoint draws what it would have drawn
        rng = random.Random(f"a-gem:{self.seed}:{self.global_step}")
        sample = rng.sample(self.buffer, min(self.batch_size, len(self.buffer)))
        batch = next(batches(self.ctx, sample, batch_size=len(sample)))
        with torch.enable_grad():
            model(**to_device(batch, model)).loss.backward()
        reference = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().float()
                               for p in params])
        flat = torch.cat([g.flatten().float() for g in grads])
        new = project(flat, reference)
        self.steps += 1
        self.projected += int(not torch.equal(new, flat))
        offset = 0
        for p, g in zip(params, grads):
            p.grad = new[offset:offset + g.numel()].view_as(g).to(g.dtype)
            offset += g.numel()


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
        return ReferenceProjection(ctx, buffer, ctx.settings.reference_batch, seed=ctx.stage)

    def after_stage(self, ctx: StageContext, model, hooks: TrainingHooks | None = None) -> dict | None:
        projection = find_hooks(hooks, ReferenceProjection)
        if projection is None:
            return None
        return {"steps": projection.steps, "projected_steps": projection.projected}


register(AGEM("a-gem", description="seq-lora whose updates never conflict with the retained examples' gradient",
              paper="Chaudhry et al. 2019, Efficient Lifelong Learning with A-GEM (ICLR)"))
