"""Importance-weighted regularization of the trainable parameters (LoRA matrices and the projector copy),
the shared part of EWC, MAS and SI:

    penalty = strength / 2 * sum_k  importance_k * (theta_k - anchor_k)^2

After each stage the method estimates this task's importance of every trainable parameter (EWC: diagonal
Fisher, MAS: output sensitivity, SI: path integral), adds it to the importance accumulated over earlier
stages ("online" accumulation), and stores it with the anchor (the parameters at the end of the stage) in
`method_state/NN-task.safetensors`. The next stage, which continues the same adapter, is pulled towards the
anchor in proportion to the importance. `method_args.strength` sets the strength (`RegularizerSettings`, default
per method); `strength_scale(ctx)` lets a method scale it per stage (TIR: by similarity to earlier tasks).

Parameters are keyed by name with the adapter's name taken out, so stage i's adapter (`s01-ocr`) finds
stage i-1's anchors (`s00-gqa`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from llava_cit.data.collation import TrainCollator
from llava_cit.methods.base import Method, StageContext, TrainingHooks, combine
from llava_cit.methods.settings import setting
from llava_cit.util.atomic import atomic_path
from llava_cit.util.finite_weights import require_finite


def adapter_parameters(model, adapter: str) -> dict[str, torch.nn.Parameter]:
    """The adapter's trainable parameters (LoRA matrices, projector copy), keyed without the adapter's name."""
    marker = f".{adapter}."
    return {name.replace(marker, "."): p for name, p in model.named_parameters()
            if marker in name and ("lora_" in name or "modules_to_save" in name)}


def state_file(ctx: StageContext, stage: int) -> Path:
    return ctx.state_dir / f"{stage:02d}-{ctx.tasks[stage]}.safetensors"


def load_state(ctx: StageContext) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None:
    """(anchor, importance) saved after the previous stage, or None at stage 0."""
    if ctx.stage == 0:
        return None
    path = state_file(ctx, ctx.stage - 1)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the previous stage's importance estimates are missing")
    tensors = load_file(str(path))
    anchor = {k[len("anchor."):]: v for k, v in tensors.items() if k.startswith("anchor.")}
    importance = {k[len("importance."):]: v for k, v in tensors.items() if k.startswith("importance.")}
    return anchor, importance


def save_state(ctx: StageContext, anchor: dict[str, torch.Tensor], importance: dict[str, torch.Tensor]) -> Path:
    path = state_file(ctx, ctx.stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"anchor.{k}": v.detach().float().cpu().contiguous() for k, v in anchor.items()}
    tensors.update({f"importance.{k}": v.detach().float().cpu().contiguous() for k, v in importance.items()})
    require_finite(tensors, path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return path


def penalty(params: dict[str, torch.nn.Parameter], anchor: dict[str, torch.Tensor],
            importance: dict[str, torch.Tensor], strength: float) -> torch.Tensor:
    """strength / 2 * sum importance * (theta - anchor)^2 over the parameters present in all three."""
    total = None
    for key, p in params.items():
        if key in anchor and key in importance:
            term = (importance[key].to(p.device) * (p - anchor[key].to(p.device, p.dtype)) ** 2).sum()
            total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return strength / 2 * total


def batches(ctx: StageContext, examples, batch_size: int = 1):
    """Training batches (prompt masked, answer as labels) of `examples`, on the model's device."""
    collate = TrainCollator(ctx.encoder.tokenizer.pad_token_id)
    for start in range(0, len(examples), batch_size):
        items = [ctx.encoder.encode_train(dataclasses.replace(ex, image=ex.load_image()) if ex.has_image else ex)
                 for ex in examples[start:start + batch_size]]
        yield collate(items)


def to_device(batch: dict, model) -> dict:
    parameter = next(model.parameters())
    moved = {k: v.to(parameter.device) for k, v in batch.items()}
    if "pixel_values" in moved:
        moved["pixel_values"] = moved["pixel_values"].to(parameter.dtype)
    return moved


class PenaltyHooks(TrainingHooks):
    def __init__(self, anchor, importance, strength: float, adapter: str):
        self.anchor, self.importance, self.strength, self.adapter = anchor, importance, strength, adapter
        self._params = None

    def loss(self, model):
        if self._params is None:
            self._params = adapter_parameters(model, self.adapter)
        return penalty(self._params, self.anchor, self.importance, self.strength)


@dataclass(frozen=True)
class RegularizerSettings:
    strength: float = setting(1.0, "λ: the pull towards the earlier stages' parameters", at_least=0)


@dataclass(frozen=True)
class ImportanceRegularized(Method):
    """seq-lora + an importance-weighted pull towards the previous stages' parameters."""

    continues: bool = True
    multi_process: bool = False  # per-stage state one process computes and saves
    settings_type: type = RegularizerSettings

    def strength(self, ctx: StageContext) -> float:
        return ctx.settings.strength * self.strength_scale(ctx)

    def strength_scale(self, ctx: StageContext) -> float:
        return 1.0

    def training_hooks(self, ctx: StageContext) -> TrainingHooks | None:
        state = load_state(ctx)
        if state is None:
            return self.path_hooks(ctx)
        anchor, importance = state
        return combine(PenaltyHooks(anchor, importance, self.strength(ctx), ctx.adapter), self.path_hooks(ctx))

    def path_hooks(self, ctx: StageContext) -> TrainingHooks | None:
        """Hooks that follow the training path (SI); none by default."""
        return None

    def importance(self, ctx: StageContext, model, params: dict[str, torch.nn.Parameter],
                   hooks: TrainingHooks | None) -> dict[str, torch.Tensor]:
        """This task's importance of each parameter (non-negative), from the stated data only; `hooks` are the
        stage's training hooks (None where the stage did not train in this process)."""
        raise NotImplementedError

    def after_stage(self, ctx: StageContext, model, hooks: TrainingHooks | None = None) -> dict:
        path = state_file(ctx, ctx.stage)
        if path.is_file():  # written before a crash, after this stage trained: never rewritten
            return {"importance_file": str(path.relative_to(ctx.state_dir.parent)), "reused": True}
        if hasattr(model, "set_adapter"):
            model.set_adapter(ctx.adapter)
        params = adapter_parameters(model, ctx.adapter)
        fresh = self.importance(ctx, model, params, hooks)
        previous = load_state(ctx)
        total = dict(fresh)
        if previous is not None:
            for key, value in previous[1].items():
                total[key] = total[key] + value if key in total else value
        path = save_state(ctx, {k: p.detach() for k, p in params.items()}, total)
        ctx.say(f"stage {ctx.stage} ({ctx.task}): {self.name} importance of {len(params)} tensors saved to "
                f"{path.name}")
        return {"importance_file": str(path.relative_to(ctx.state_dir.parent)),
                "strength": self.strength(ctx) if ctx.stage > 0 else None,
                "importance_mean": float(sum(v.sum() for v in fresh.values()) /
                                         max(1, sum(v.numel() for v in fresh.values())))}


def gradients_over(ctx: StageContext, model, params, examples, objective, squared: bool) -> dict[str, torch.Tensor]:
    """Mean over `examples` (one at a time) of grad^2 (squared) or |grad| per parameter, where grad is the
    gradient of `objective(model, batch)`."""
    was_training = model.training
    model.eval()  # no dropout in the estimate
    flags = {k: p.requires_grad for k, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
    sums = {k: torch.zeros_like(p, dtype=torch.float32) for k, p in params.items()}
    count = 0
    for batch in batches(ctx, examples):
        model.zero_grad(set_to_none=True)
        objective(model, to_device(batch, model)).backward()
        for k, p in params.items():
            if p.grad is not None:
                sums[k] += p.grad.detach().float() ** 2 if squared else p.grad.detach().float().abs()
        count += 1
    model.zero_grad(set_to_none=True)
    for k, p in params.items():
        p.requires_grad_(flags[k])
    model.train(was_training)
    return {k: v / max(count, 1) for k, v in sums.items()}
