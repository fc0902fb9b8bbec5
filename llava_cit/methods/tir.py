"""TIR (task-similarity-informed regularization, He et al. 2023, arXiv 2311.16206), as the authors' code does it
(`cl_learner/tir.py` of their CLMM code, read through copies of it; the paper's method section was not available):

after each stage t, this task's importance of every parameter (EWC's diagonal Fisher, or MAS's output sensitivity
with `method_args.importance: mas`) is normalised to sum to 1 over the parameters, and the stored importance is the
element-wise maximum over the tasks so far, each parameter remembering the task that gave it (its owner):

    Omega_k = max(Omega_k, F_tk / sum_j F_tj),   owner_k = t where this task's value was the larger

Before the next task trains, each parameter's importance is scaled by how unlike the new task its owner is:

    Omega_k <- Omega_k * max(min_scale, 1 - s(new, owner_k))          (the authors' code: min_scale 0)

and the penalty is one pull towards the previous stage's parameters, λ/2 sum_k Omega_k (theta_k - theta*_k)^2. An
earlier task like the new one (s near 1: its data exercises what that task needs) lets its parameters move; the
parameters of an unlike task keep their protection. The scaled importance is what the next maximum compares with,
as in the authors' code. s is llava_cit.methods.task_similarity's (the authors measure theirs differently: the
README's methods table says how). The per-task scales and how many parameters each task owns are in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llava_cit.methods.base import StageContext
from llava_cit.methods.ewc import EWC, EWCSettings
from llava_cit.methods.mas import output_norm
from llava_cit.methods.registry import register
from llava_cit.methods.regularization import (
    OWN_TASK,
    PenaltyTerm,
    batches,
    gradients_over,
    load_stage_tensors,
)
from llava_cit.methods.settings import setting
from llava_cit.methods.task_similarity import similarity_to_earlier


@dataclass(frozen=True)
class TIRSettings(EWCSettings):
    strength: float = setting(1e8, "λ on importance normalised to sum 1 per task (the authors' code: 1e8 for full "
                                   "fine-tuning); choose it with llava-cit sweep", at_least=0)
    importance: str = setting("ewc", "each task's importance: ewc (diagonal Fisher) or mas (output sensitivity)",
                              choices=("ewc", "mas"))
    min_scale: float = setting(0.0, "the least a parameter's importance is scaled to, however similar its owner "
                                    "task is to the new one (the authors' code: 0)", at_least=0, at_most=1)


def task_scale(similarity: float, min_scale: float) -> float:
    """How much of its importance a parameter owned by an earlier task keeps, given that task's similarity s."""
    return max(min_scale, 1.0 - similarity)


def normalised(importance: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`importance` divided by its sum over every parameter (all zeros stay zeros)."""
    total = float(sum(v.double().sum() for v in importance.values()))
    return {k: v / total for k, v in importance.items()} if total > 0 else dict(importance)


@dataclass(frozen=True)
class TIR(EWC):
    uses_similarity: bool = True
    importance_kind: str = OWN_TASK + ", normalised; stored: the maximum over tasks, with its owner"
    settings_type: type = TIRSettings

    def scales(self, ctx: StageContext) -> dict[str, float]:
        """Per earlier task, the factor its parameters' importance is scaled by at this stage."""
        values = similarity_to_earlier(ctx)
        return {task: task_scale(values.get(task, {}).get("similarity", 0.0), ctx.settings.min_scale)
                for task in ctx.tasks[: ctx.stage]}

    def scaled_previous(self, ctx: StageContext) -> tuple[dict, dict, dict] | None:
        """(anchor, importance scaled for this stage, owner) from the previous stage's state; None at stage 0."""
        if ctx.stage == 0:
            return None
        kinds = load_stage_tensors(ctx, ctx.stage - 1)
        scales = self.scales(ctx)
        factors = torch.tensor([scales[task] for task in ctx.tasks[: ctx.stage]])
        owner = kinds["owner"]
        importance = {k: v * factors[owner[k].long()] for k, v in kinds["importance"].items()}
        return kinds["anchor"], importance, owner

    def penalty_terms(self, ctx: StageContext) -> list[PenaltyTerm]:
        previous = self.scaled_previous(ctx)
        if previous is None:
            return []
        ctx.say(f"stage {ctx.stage} ({ctx.task}): TIR scales " +
                ", ".join(f"{task} {scale:.3g}" for task, scale in self.scales(ctx).items()))
        anchor, importance, _ = previous
        return [PenaltyTerm(anchor, importance, ctx.settings.strength, "earlier tasks (scaled by similarity)")]

    def importance(self, ctx, model, params, hooks):
        if ctx.settings.importance == "mas":
            return gradients_over(model, params, batches(ctx, ctx.retained()), output_norm, squared=False)
        return super().importance(ctx, model, params, hooks)

    def stored_importance(self, ctx: StageContext, fresh: dict[str, torch.Tensor]):
        own = normalised(fresh)
        previous = self.scaled_previous(ctx)
        if previous is None:
            return own, {"owner": {k: torch.zeros_like(v) for k, v in own.items()}}
        _, importance, owner = previous
        kept, owners = {}, {}
        for key, value in own.items():
            before = importance.get(key, torch.zeros_like(value))
            mine = value > before
            kept[key] = torch.where(mine, value, before)
            owners[key] = torch.where(mine, torch.full_like(value, ctx.stage), owner.get(key, torch.zeros_like(value)))
        return kept, {"owner": owners}

    def stage_facts(self, ctx: StageContext) -> dict:
        facts = {"importance_kind": self.importance_kind}
        if ctx.stage > 0:
            facts["task_scales"] = self.scales(ctx)
            facts["strength"] = ctx.settings.strength
        return facts


register(TIR("tir",
            description="EWC (or MAS) importance normalised per task, the maximum over tasks kept with its owner "
                        "task, scaled by (1 - the owner's similarity to the new task)",
            paper="He et al. 2023, Continual Instruction Tuning for Large Multimodal Models (arXiv 2311.16206)"))
