"""The method interface: what a continual-learning method decides, as hooks with defaults.

A method is one module under `llava_cit/methods/` (or a file of yours, `method: path/to/my_method.py`)
that builds a `Method` (or a subclass overriding some hooks) and registers it in one line:

    register(Method("seq-lora", continues=True, description="...", paper="..."))

The runner calls the hooks; it holds no per-method branches.

Stage plan
    continues        stage i starts from stage i-1's adapter (one adapter for the whole sequence)
    start_from(ctx)  the earlier stage whose adapter this stage starts from (default: from `continues`)
    routes           inference routes each query to its task's adapter; `router` says how: "mlp" (the
                     SwitchCIT switch network), "nearest" (nearest retained instruction, no classifier) or "key"
                     (the task whose mean retained-instruction feature is most cosine-similar, no classifier)
    full_finetune    every base weight is trained and saved whole after each stage (no LoRA)
    training_examples(ctx, train, replay)   the stage's training data (default: the task's own)

Training hooks (`training_hooks(ctx)` returns a TrainingHooks or None; default None)
    loss(model)                a term added to the Trainer's loss (regularizers), once per optimizer step
    before_step(model)         after backward, before the Trainer clips the gradient and the optimizer steps
                               (gradient surgery: A-GEM; SI reads the task loss's gradient here)
    after_step(model)          after the optimizer step (path-integral importance)
    trainable(name)            which of the adapter's parameters train (default all; EProj: the projector)

Before training, after a stage, serving
    before_training(ctx, model)  the stage's adapter is loaded (e.g. re-initialise part of it)
    after_stage(ctx, model, hooks)  estimates, buffers: state the method writes under ctx.state_dir (default:
                                 nothing); `hooks` are the stage's own TrainingHooks, as training left them (None
                                 where the stage did not train in this process)
    serving(ctx, previous, own, start)  which adapter folder serves each task seen so far

Settings
    settings_type    the method's `method_args` as a dataclass (llava_cit.methods.settings): each key typed,
                     range-checked and defaulted; the hooks read `ctx.settings.<name>`; `llava-cit methods NAME`
                     prints them. Nothing is ever written onto the (frozen) Method: per-stage state lives in the
                     stage's hooks or under ctx.state_dir.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from llava_cit.data.example import Example
from llava_cit.methods.settings import NoSettings, parse_settings


@dataclass
class StageContext:
    """What a hook may read about the stage being trained."""

    stage: int
    tasks: list[str]  # the whole sequence, by name
    adapter: str  # the name of the adapter this stage trains (in the PEFT model)
    state_dir: Path  # the method's own files for this run (written atomically, never rewritten per stage)
    replay: Mapping[str, list[Example]]  # retained examples of earlier tasks, by task
    retained: Callable[[], list[Example]]  # the retained examples of this stage's task (after training)
    encoder: object  # llava_cit.data.collation.Encoder: batches for extra forward passes
    settings: Any = field(default_factory=NoSettings)  # the run config's `method_args`, as the method's settings_type
    features: Callable[[list[str]], torch.Tensor] | None = None  # instruction features (the switch's extractor)
    say: Callable[[str], None] = lambda text: None

    @property
    def task(self) -> str:
        return self.tasks[self.stage]


class TrainingHooks:
    """Per-step hooks of one stage's training; each default does nothing. `global_step` is the number of updates
    done before the one about to happen, counted across a resume (what a per-step random draw is seeded from);
    `gradient_scale` is what the gradients `before_step` sees are multiplied by (fp16 loss scaling; else 1)."""

    global_step: int = 0
    gradient_scale: float = 1.0

    def trainable(self, name: str) -> bool:
        """Whether the adapter's parameter `name` (a full parameter name of the model) trains this stage."""
        return True

    def loss(self, model) -> torch.Tensor | None:
        return None

    def before_step(self, model) -> None:
        pass

    def after_step(self, model) -> None:
        pass

    def parts(self) -> list[TrainingHooks]:
        """The hooks this one is made of (itself, or each of `combine`'s)."""
        return [self]

    def state(self) -> dict[str, torch.Tensor]:
        """What the hooks accumulated so far (e.g. SI's path integral), saved with each Trainer checkpoint and before
        the stage's adapter is published, so a resumed stage goes on from it exactly (default: nothing)."""
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Go on from `state()` as saved (a resume)."""


Hooks = TypeVar("Hooks", bound=TrainingHooks)


def combine(*hooks: TrainingHooks | None) -> TrainingHooks | None:
    """One TrainingHooks running each of `hooks` in order (their losses added); None where none is given."""
    given = [h for h in hooks if h is not None]
    if len(given) <= 1:
        return given[0] if given else None

    class Combined(TrainingHooks):
        @property
        def global_step(self) -> int:
            return given[0].global_step

        @global_step.setter
        def global_step(self, value: int) -> None:  # every part sees the step (A-GEM seeds its draws from it)
            for h in given:
                h.global_step = value

        @property
        def gradient_scale(self) -> float:
            return given[0].gradient_scale

        @gradient_scale.setter
        def gradient_scale(self, value: float) -> None:
            for h in given:
                h.gradient_scale = value

        def trainable(self, name):
            return all(h.trainable(name) for h in given)

        def loss(self, model):
            terms = [t for t in (h.loss(model) for h in given) if t is not None]
            return sum(terms[1:], terms[0]) if terms else None

        def before_step(self, model):
            for h in given:
                h.before_step(model)

        def after_step(self, model):
            for h in given:
                h.after_step(model)

        def parts(self):
            return [p for h in given for p in h.parts()]

        def state(self):
            return {f"{i}.{k}": v for i, h in enumerate(given) for k, v in h.state().items()}

        def load_state(self, tensors):
            for i, h in enumerate(given):
                h.load_state({k[len(f"{i}."):]: v for k, v in tensors.items() if k.startswith(f"{i}.")})

    return Combined()


def find_hooks(hooks: TrainingHooks | None, kind: type[Hooks]) -> Hooks | None:
    """The `kind` hooks among the stage's `hooks` (as `after_stage` receives them), or None."""
    return next((h for h in (hooks.parts() if hooks is not None else []) if isinstance(h, kind)), None)


@dataclass(frozen=True)
class Method:
    name: str
    continues: bool = False
    routes: bool = False
    description: str = ""
    full_finetune: bool = False
    paper: str = ""  # where the method comes from (shown by `llava-cit methods`)
    router: str = "mlp"  # routed methods: "mlp" (switch network), "nearest" (nearest retained instruction), "key"
    uses_similarity: bool = False  # the task similarity to earlier tasks is measured (and recorded) each stage
    multi_process: bool = True  # runs under `accelerate launch` (False: per-stage state computed by one process)
    vision_only: bool = False  # needs a vision model's projector (EProj and its expansion)
    settings_type: type = NoSettings  # the method's `method_args`, typed (llava_cit.methods.settings)

    def parse_settings(self, method_args: Mapping) -> Any:
        """`method_args` as `settings_type`, checked like the config (UserError naming a bad or unknown key)."""
        return parse_settings(self.settings_type, method_args, self.name)

    def start_from(self, ctx: StageContext) -> int | None:
        """The earlier stage whose adapter this stage's adapter starts from (a copy; None: a fresh adapter).
        For a routed method, starting from an earlier adapter means sharing it: the tasks that adapter served
        are served by this stage's adapter from now on."""
        return ctx.stage - 1 if (self.continues and ctx.stage > 0) else None

    def training_examples(self, ctx: StageContext, train: Mapping[str, list[Example]]) -> list[Example]:
        """Stage ctx.stage's training data; `ctx.replay[t]` are the retained examples of earlier task t."""
        return list(train[ctx.task])

    def before_training(self, ctx: StageContext, model) -> None:
        """The stage's adapter is in `model` (fresh or copied from start_from's), about to train."""

    def training_hooks(self, ctx: StageContext) -> TrainingHooks | None:
        return None

    def serving(self, ctx: StageContext, previous: dict[str, str], own: str, start: str | None) -> dict[str, str]:
        """{task: adapter folder} serving every task seen so far, after this stage (`previous`: after the last
        one; `own`: this stage's adapter; `start`: the adapter it started from). Default: this task is served
        by its own adapter, and the tasks of the adapter it started from move to it (continuing one adapter
        serves everything with the last; a routed method that warm-starts shares)."""
        moved = {t: own for t, rel in previous.items() if start is not None and rel == start}
        return {**previous, **moved, ctx.task: own}

    def after_stage(self, ctx: StageContext, model, hooks: TrainingHooks | None = None) -> dict | None:
        """Work after the stage's training (importance estimates, buffers); returns facts for the manifest.
        `hooks`: what `training_hooks(ctx)` returned for this stage, after training (None where the stage did not
        train in this process, e.g. its adapter was published before a restart)."""
        return None
