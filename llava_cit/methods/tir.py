"""TIR (task-similarity-informed regularization): EWC with one term per earlier task, each weighted by that task's
own similarity to the new one (llava_cit.methods.task_similarity):

    penalty = sum over earlier tasks i of  λ w_i / 2 * sum_k F_ik (theta_k - theta*_ik)^2,   w_i = max(min_scale, 1 - s_i)

F_i is task i's own diagonal Fisher (EWC's estimate, not accumulated) and theta*_i the parameters at the end of its
stage (Kirkpatrick et al.'s one penalty per task). An earlier task much like the new one (s_i near 1) is exercised by
the new task's data and is let move; one unlike it (where sequential tuning forgets most) keeps the full strength.
One similar earlier task relaxes only its own term. The weights are in the manifest (`term_strengths`), the
similarities in results.json (`task_similarity`).
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_cit.methods.base import StageContext
from llava_cit.methods.ewc import EWC, EWCSettings
from llava_cit.methods.registry import register
from llava_cit.methods.settings import setting
from llava_cit.methods.task_similarity import similarity_to_earlier


@dataclass(frozen=True)
class TIRSettings(EWCSettings):
    min_scale: float = setting(0.1, "the least an earlier task's term is scaled to, however similar it is to the new "
                                    "task", at_least=0, at_most=1)


def task_weight(similarity: float, min_scale: float) -> float:
    """w_i: how much of the strength earlier task i's term keeps, given its similarity s_i to the new task."""
    return max(min_scale, 1.0 - similarity)


@dataclass(frozen=True)
class TIR(EWC):
    uses_similarity: bool = True
    accumulates: bool = False
    settings_type: type = TIRSettings

    def term_strengths(self, ctx: StageContext) -> dict[str, float]:
        values = similarity_to_earlier(ctx)
        strengths = {}
        for task in ctx.tasks[: ctx.stage]:
            similarity = values.get(task, {}).get("similarity", 0.0)
            strengths[task] = ctx.settings.strength * task_weight(similarity, ctx.settings.min_scale)
        return strengths

    def penalty_terms(self, ctx: StageContext):
        terms = super().penalty_terms(ctx)
        if terms:
            ctx.say(f"stage {ctx.stage} ({ctx.task}): TIR strengths " +
                    ", ".join(f"{t.task} {t.strength:g}" for t in terms))
        return terms


register(TIR("tir",
            description="EWC with a term per earlier task, each weighted by that task's dissimilarity to the new one",
            paper="He et al. 2023, Continual Instruction Tuning for Large Multimodal Models (arXiv 2311.16206)"))
