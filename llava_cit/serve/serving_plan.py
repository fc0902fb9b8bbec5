"""How a run is served: the serving section of its manifest.json, rewritten with every finished stage.

    routing   "switch": a switch routes each query to its task's adapter (from stage 1; one task: that task's);
              "one-model": the model the last stage left answers every query (methods without a router)
    learner   "lora": adapters on the run's base model; "full": whole models (full-sft), the last one serves
    tasks     the tasks learned, in order
    adapters  each task's own stage folder (`eval --run --adapter TASK` serves it)
    serving   the folder answering each task's queries after the last stage (a shared or composite adapter)
    switch    the switch folder, or None
    prompt    the prompt settings the run trained with: system prompt, image preprocessing, each task's budget

Runs written before this section existed are served from results.json (llava_cit.serve.run_server).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from llava_cit.util.errors import UserError

ROUTINGS = ("switch", "one-model")
LEARNERS = ("lora", "full")


@dataclass
class ServingPlan:
    method: str
    routing: str
    learner: str
    tasks: list[str]
    adapters: dict[str, str]
    serving: dict[str, str]
    switch: str | None = None
    prompt: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data, where: str) -> ServingPlan:
        """The plan as stored; a one-line error naming `where` and the field when it is malformed."""
        if not isinstance(data, dict):
            raise UserError(f"{where}: field 'serving' is not a mapping")
        try:
            plan = cls(**data)
        except TypeError as err:
            raise UserError(f"{where}: field 'serving' is malformed ({err})") from None
        checks = {"routing": plan.routing in ROUTINGS, "learner": plan.learner in LEARNERS,
                  "tasks": isinstance(plan.tasks, list) and bool(plan.tasks) and all(isinstance(t, str) for t in plan.tasks),
                  "adapters": isinstance(plan.adapters, dict) and set(plan.adapters) == set(plan.tasks),
                  "serving": isinstance(plan.serving, dict) and set(plan.serving) == set(plan.tasks),
                  "prompt": isinstance(plan.prompt, dict)}
        for key, ok in checks.items():
            if not ok:
                raise UserError(f"{where}: field 'serving.{key}' is malformed ({getattr(plan, key)!r})")
        return plan

    @property
    def routed(self) -> bool:
        return self.routing == "switch"

    @property
    def unswitched_task(self) -> str:
        """The task every query goes to while no switch routes: a routed run's one task (it has a switch from its
        second), else the last task (one model serves every task)."""
        return self.tasks[0] if self.routed else self.tasks[-1]

    def paths(self) -> list[tuple[str, str]]:
        """(what, folder) of every folder the plan names."""
        paths = [(f"adapter path of '{t}'", rel) for t, rel in self.adapters.items()]
        paths += [(f"serving path of '{t}'", rel) for t, rel in self.serving.items()]
        return paths + ([("switch path", self.switch)] if self.switch is not None else [])
