"""SI (Zenke et al. 2017): seq-lora pulled towards earlier stages' parameters in proportion to each parameter's
contribution to the drop of the task's training loss along the stage's own training path:

    omega_k = sum over the stage's optimizer steps of  -g_k * (theta_k after - theta_k before)
    Omega_k = max(0, omega_k / ((theta_k at the stage's end - theta_k at its start)^2 + xi)),   xi = 1e-3

with g the gradient of the task loss alone: the step's accumulated gradient as the Trainer holds it before clipping
(LoraTrainer runs `before_step` there), unscaled from fp16 loss scaling, minus the regularizer's own gradient (the
penalty's part of it). The update itself is the one the optimizer made (clipped, Adam-scaled). Omega is summed over
tasks (llava_cit.methods.regularization, online).

The path integral and the stage's starting parameters are saved with each Trainer checkpoint and before the adapter
is published (TrainingHooks.state), so a stage resumed after a kill goes on from them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llava_cit.methods.base import StageContext, TrainingHooks, find_hooks
from llava_cit.methods.registry import register
from llava_cit.methods.regularization import ImportanceRegularized, PenaltyHooks, adapter_parameters

XI = 1e-3


class PathIntegral(TrainingHooks):
    """omega, accumulated over the stage's steps from the task loss's gradient (`pull`: the stage's penalty, whose
    gradient is taken out of the step's gradient; None at stage 0)."""

    def __init__(self, adapter: str, pull: PenaltyHooks | None = None):
        self.adapter, self.pull = adapter, pull
        self.params = self.start = self.grad = None
        self.omega: dict[str, torch.Tensor] = {}

    def task_gradient(self, key: str, p: torch.nn.Parameter) -> torch.Tensor:
        grad = p.grad.detach().float() / self.gradient_scale
        return grad - self.pull.gradient(key, p.detach()) if self.pull is not None else grad

    def before_step(self, model):
        if self.params is None:
            self.params = adapter_parameters(model, self.adapter)
        if self.start is None:  # the stage's first step (a resume restored both from the checkpoint)
            self.start = {k: p.detach().float().clone() for k, p in self.params.items()}
            self.omega = {k: torch.zeros_like(v) for k, v in self.start.items()}
        self.grad = {k: self.task_gradient(k, p) for k, p in self.params.items() if p.grad is not None}
        self.before = {k: p.detach().float().clone() for k, p in self.params.items()}

    def after_step(self, model):
        for k, g in (self.grad or {}).items():
            self.omega[k] -= g * (self.params[k].detach().float() - self.before[k])

    def importance(self, params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
        """Omega of this stage: omega over the total move squared plus xi, at least 0."""
        return {k: (self.omega[k] / ((p.detach().float() - self.start[k]) ** 2 + XI)).clamp(min=0)
                for k, p in params.items()}

    def state(self):
        if self.start is None:
            return {}
        return {**{f"start.{k}": v for k, v in self.start.items()}, **{f"omega.{k}": v for k, v in self.omega.items()}}

    def load_state(self, tensors):
        start = {k[len("start."):]: v for k, v in tensors.items() if k.startswith("start.")}
        if start:
            self.start = start
            self.omega = {k[len("omega."):]: v for k, v in tensors.items() if k.startswith("omega.")}


@dataclass(frozen=True)
class SI(ImportanceRegularized):
    def path_hooks(self, ctx: StageContext, pull: PenaltyHooks | None) -> TrainingHooks:
        return PathIntegral(ctx.adapter, pull)

    def importance(self, ctx, model, params, hooks):
        path = find_hooks(hooks, PathIntegral)  # the stage's own path integral, as training left it
        if path is None or path.start is None:
            # this stage did not train in this process (its adapter was saved before a restart)
            return {k: torch.zeros_like(p, dtype=torch.float32) for k, p in params.items()}
        return path.importance(params)


register(SI("si",
           description="seq-lora + synaptic intelligence (path integral of the task loss's own gradient)",
           paper="Zenke et al. 2017, Continual Learning Through Synaptic Intelligence (ICML)"))
