"""Similarity-informed expansion: SwitchCIT's adapter per task, except that a new task more similar to an
earlier task than `method_args.threshold` (default 0.5, llava_cit.methods.task_similarity) reuses that
task's adapter: it starts from a copy of it and, once trained, serves both tasks (the switch still routes
by task; both routes lead to the shared adapter). A different task expands: a fresh adapter, as SwitchCIT.
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_cit.methods.base import Method, StageContext
from llava_cit.methods.registry import register
from llava_cit.methods.settings import setting
from llava_cit.methods.task_similarity import most_similar


@dataclass(frozen=True)
class SimilarityExpansionSettings:
    threshold: float = setting(0.5, "a new task more similar than this to an earlier one reuses its adapter",
                               at_least=0, at_most=1)


@dataclass(frozen=True)
class SimilarityExpansion(Method):
    routes: bool = True
    uses_similarity: bool = True
    settings_type: type = SimilarityExpansionSettings

    def start_from(self, ctx: StageContext) -> int | None:
        task, similarity = most_similar(ctx)
        threshold = ctx.settings.threshold
        if task is not None and similarity > threshold:
            ctx.say(f"stage {ctx.stage} ({ctx.task}): similarity {similarity:.2f} to '{task}' > {threshold}: "
                    f"reusing its adapter")
            return ctx.tasks.index(task)
        return None


register(SimilarityExpansion(
    "sim-expand", description="an adapter per task, but a task similar to an earlier one reuses (and shares) its adapter",
    paper="He et al. 2023, Continual Instruction Tuning for Large Multimodal Models (arXiv 2311.16206)"))
