"""TIR (task-similarity-informed regularization): EWC whose strength at each stage is scaled by how unlike
the earlier tasks the new task is, 1 - max similarity (llava_cit.methods.task_similarity), at least
`method_args.min_scale` (default 0.1). A new task much like an earlier one shares what that task needs and
is let learn freely; a task unlike every earlier one (where sequential tuning forgets most) is held closest
to the earlier parameters. This is our reading of He et al.'s proposal; the measured similarities are in
results.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_cit.methods.base import StageContext
from llava_cit.methods.ewc import EWC, EWCSettings
from llava_cit.methods.registry import register
from llava_cit.methods.settings import setting
from llava_cit.methods.task_similarity import most_similar


@dataclass(frozen=True)
class TIRSettings(EWCSettings):
    min_scale: float = setting(0.1, "the least the strength is scaled to, however similar the new task", at_least=0,
                               at_most=1)


@dataclass(frozen=True)
class TIR(EWC):
    uses_similarity: bool = True
    settings_type: type = TIRSettings

    def strength_scale(self, ctx: StageContext) -> float:
        _, similarity = most_similar(ctx)
        scale = max(ctx.settings.min_scale, 1.0 - similarity)
        ctx.say(f"stage {ctx.stage} ({ctx.task}): TIR strength x{scale:.2f} (max similarity {similarity:.2f})")
        return scale


register(TIR("tir",
            description="EWC with its strength scaled by the new task's dissimilarity to earlier tasks",
            paper="He et al. 2023, Continual Instruction Tuning for Large Multimodal Models (arXiv 2311.16206)"))
