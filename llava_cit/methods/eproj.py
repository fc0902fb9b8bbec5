"""EProj: one language-model LoRA shared by every task and continued from stage to stage, with a new
projector per task (any vision model whose projector trains fully, `lora.train_projector: full`): each stage
starts from the previous adapter but resets the projector copy
to the base projector, and trains both. At inference the switch picks the task; the task is answered by the
latest shared LoRA with that task's own projector (composite adapters written after each stage under
`method_state/eproj/stage-NN/<task>`, the run's earlier files untouched).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import torch
from safetensors.torch import load_file, save_file

from llava_cit.methods.base import Method, StageContext
from llava_cit.methods.registry import register
from llava_cit.train.lora_targets import in_projector, projector_markers
from llava_cit.util.atomic import publish_dir, staging_dir
from llava_cit.util.errors import UserError

WEIGHTS = "adapter_model.safetensors"


def _projector_keys(tensors: dict, markers: list[str]) -> list[str]:
    return [k for k in tensors if in_projector(k, markers)]


@dataclass(frozen=True)
class EProj(Method):
    routes: bool = True
    continues: bool = True
    multi_process: bool = False  # per-stage state one process computes and saves

    def before_training(self, ctx: StageContext, model) -> None:
        markers = projector_markers(model.get_base_model())
        wrappers = [m for n, m in model.named_modules() if in_projector(n + ".", markers)
                    and hasattr(m, "modules_to_save") and hasattr(m, "original_module")]
        if not wrappers:
            raise UserError("eproj needs a vision model whose projector is trained with the adapter "
                            "(lora.train_projector: full)")
        if ctx.stage == 0:
            return
        with torch.no_grad():  # a new projector for the new task, starting from the base projector
            for wrapper in wrappers:
                wrapper.modules_to_save[ctx.adapter].load_state_dict(wrapper.original_module.state_dict())

    def serving(self, ctx: StageContext, previous: dict[str, str], own: str, start: str | None) -> dict[str, str]:
        """Every seen task: the latest LoRA with the projector its own stage trained."""
        run_dir = ctx.state_dir.parent
        shared = load_file(str(run_dir / own / WEIGHTS))
        markers = projector_markers(ctx.encoder.loaded.model)
        serving = {}
        for task in ctx.tasks[: ctx.stage + 1]:
            if task == ctx.task:
                serving[task] = own
                continue
            rel = f"method_state/eproj/stage-{ctx.stage:02d}/{task}"
            target = run_dir / rel
            if not target.is_dir():  # written once; a resumed stage finds it
                source = previous[task]  # the task's composite from the previous stage: its projector is the same
                projector = {k: v for k, v in load_file(str(run_dir / source / WEIGHTS)).items()
                             if k in _projector_keys(shared, markers)}
                staging = staging_dir(target)
                shutil.copytree(run_dir / own, staging, dirs_exist_ok=True)
                save_file({**shared, **projector}, str(staging / WEIGHTS))
                publish_dir(staging, target)
            serving[task] = rel
        return serving


register(EProj("eproj", description="a shared LoRA continued across tasks + a new projector per task, chosen by "
                                    "the switch",
               paper="He et al. 2023, Continual Instruction Tuning for Large Multimodal Models (arXiv 2311.16206)"))
