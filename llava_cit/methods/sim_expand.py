"""Similarity-informed expansion (He et al. 2023, arXiv 2311.16206): EProj (a projector per task on the frozen
language model, chosen by task key), except that a new task more similar to an earlier task than
`method_args.threshold` (default 0.5, llava_cit.methods.task_similarity) reuses that task's projector: it goes on
training it on the new task, and from then on both tasks' keys lead to it. A task unlike every earlier one expands: a
new projector, as EProj.
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_cit.methods.base import StageContext
from llava_cit.methods.eproj import EProj
from llava_cit.methods.registry import register
from llava_cit.methods.settings import setting
from llava_cit.methods.task_similarity import most_similar


@dataclass(frozen=True)
class SimilarityExpansionSettings:
    threshold: float = setting(0.5, "a new task more similar than this to an earlier one reuses its projector",
                               at_least=0, at_most=1)


@dataclass(frozen=True)
class SimilarityExpansion(EProj):
    uses_similarity: bool = True
    settings_type: type = SimilarityExpansionSettings

    def start_from(self, ctx: StageContext) -> int | None:
        task, similarity = most_similar(ctx)
        threshold = ctx.settings.threshold
        if task is not None and similarity > threshold:
            ctx.say(f"stage {ctx.stage} ({ctx.task}): similarity {similarity:.2f} to '{task}' > {threshold}: "
                    f"reusing its projector")
            return ctx.tasks.index(task)
        return None


register(SimilarityExpansion(
    "sim-expand", description="EProj, but a task similar to an earlier one reuses (and shares) its projector",
    paper="He et al. 2023, Continual Instruction Tuning for Large Multimodal Models (arXiv 2311.16206)"))
