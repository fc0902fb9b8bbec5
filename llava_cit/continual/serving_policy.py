"""How a method's stages are served, chosen once per run from the method:

    SwitchServing    (routed methods) each task keeps the adapter the method's serving map names (its own, a shared
                     or a composite one); from stage 1 a switch, fitted on the retained instructions, routes each
                     query to its task; each adapter trains under its task's name
    OneModelServing  (every other method) the model the last stage left answers every task; no switch

Either yields, after a stage, the task -> folder map the serving plan records; the routed model
(llava_cit.serve.routed_model) does the routing itself.
"""

from __future__ import annotations

from llava_cit.continual.switch_fitting import SwitchFitting
from llava_cit.data.example import Example
from llava_cit.methods.base import Method, StageContext
from llava_cit.tasks.spec import TaskSpec
from switch import SwitchNetwork


class SwitchServing:
    routing = "switch"

    def __init__(self, method: Method, fitting: SwitchFitting):
        self.method, self.fitting = method, fitting

    def adapter_name(self, stage: int, task: str) -> str:
        """Each adapter is trained (and served) under its task's name."""
        return task

    def retained(self, stage: int, task: TaskSpec, kept: list[Example], train: list[Example]) -> None:
        """The task's retained instructions are written: calibrate its rejection radii (when configured)."""
        self.fitting.calibrate(stage, task, kept, train)

    def serving(self, ctx: StageContext, previous: dict[str, str], own: str, start: str | None) -> dict[str, str]:
        return self.method.serving(ctx, previous, own, start)

    def switch(self, stage: int) -> SwitchNetwork | None:
        return self.fitting.fit(stage) if stage > 0 else None


class OneModelServing:
    routing = "one-model"

    def adapter_name(self, stage: int, task: str) -> str:
        return f"s{stage:02d}-{task}"

    def retained(self, stage: int, task: TaskSpec, kept: list[Example], train: list[Example]) -> None:
        """No switch to calibrate."""

    def serving(self, ctx: StageContext, previous: dict[str, str], own: str, start: str | None) -> dict[str, str]:
        return {task: own for task in ctx.tasks[: ctx.stage + 1]}

    def switch(self, stage: int) -> None:
        return None


def serving_policy(method: Method, fitting: SwitchFitting) -> SwitchServing | OneModelServing:
    return SwitchServing(method, fitting) if method.routes else OneModelServing()
