"""SI: seq-lora pulled towards earlier stages' parameters in proportion to each parameter's contribution to
the drop of the training loss along the stage's own training path (the path integral -grad . delta theta,
accumulated at every optimizer step), normalised by the parameter's total move squared plus xi.

The path integral and the stage's starting parameters are saved with each Trainer checkpoint and before the adapter
is published (TrainingHooks.state), so a stage resumed after a kill goes on from them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llava_cit.methods.base import StageContext, TrainingHooks, find_hooks
from llava_cit.methods.registry import register
from llava_cit.methods.regularization import ImportanceRegularized, adapter_parameters

XI = 1e-3


class PathIntegral(TrainingHooks):
    def __init__(self, adapter: str):
        self.adapter = adapter
        self.params = self.start = self.grad = None
        self.omega: dict[str, torch.Tensor] = {}

    def before_step(self, model):
        if self.params is None:
            self.params = adapter_parameters(model, self.adapter)
        if self.start is None:  # the stage's first step (a resume restored both from the checkpoint)
            self.start = {k: p.detach().float().clone() for k, p in self.params.items()}
            self.omega = {k: torch.zeros_like(v) for k, v in self.start.items()}
        self.grad = {k: p.grad.detach().float().clone() for k, p in self.params.items() if p.grad is not None}
        self.before = {k: p.detach().float().clone() for k, p in self.params.items()}

    def after_step(self, model):
        for k, g in (self.grad or {}).items():
            self.omega[k] -= g * (self.params[k].detach().float() - self.before[k])

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
    def path_hooks(self, ctx: StageContext) -> TrainingHooks:
        return PathIntegral(ctx.adapter)

    def importance(self, ctx, model, params, hooks):
        path = find_hooks(hooks, PathIntegral)  # the stage's own path integral, as training left it
        if path is None or path.start is None:
            # this stage did not train in this process (its adapter was saved before a restart)
            return {k: torch.zeros_like(p, dtype=torch.float32) for k, p in params.items()}
        result = {}
        for k, p in params.items():
            moved = p.detach().float() - path.start[k]
            result[k] = (path.omega[k] / (moved ** 2 + XI)).clamp(min=0)
        return result


register(SI("si",
           description="seq-lora + synaptic intelligence (path-integral importance accumulated during training)",
           paper="Zenke et al. 2017, Continual Learning Through Synaptic Intelligence (ICML)"))
