"""Importance-weighted regularization of the trainable parameters (LoRA matrices and the projector copy),
the shared part of EWC, MAS, SI and TIR:

    penalty = sum over terms  strength_i / 2 * sum_k  importance_ik * (theta_k - anchor_ik)^2

After each stage the method estimates this task's importance of every trainable parameter (EWC: diagonal
Fisher, MAS: output sensitivity, SI: path integral) and stores it with the anchor (the parameters at the end of the
stage) in `method_state/NN-task.safetensors`. Two ways to use them:

- online (EWC, MAS, SI, the default): the stored importance is this task's plus every earlier task's, so the next
  stage has one term, anchored at the previous stage's parameters (online EWC, Schwarz et al. 2018; SI's Omega summed
  over tasks, Zenke et al. 2017);
- a method's own combination (`stored_importance`, `penalty_terms`, `importance_kind`): TIR keeps the maximum over
  tasks of each task's normalised importance with its owner task (llava_cit.methods.tir).

`method_args.strength` sets the strength (`RegularizerSettings`, default per method). The term counts once per
optimizer step whatever the accumulation (llava_cit.train.trainer.LoraTrainer).

Parameters are keyed by name with the adapter's name taken out, so stage i's adapter (`s01-ocr`) finds
stage i-1's anchors (`s00-gqa`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from llava_cit.data.collation import TrainCollator
from llava_cit.methods.base import Method, StageContext, TrainingHooks, combine
from llava_cit.methods.settings import setting
from llava_cit.util.atomic import atomic_path
from llava_cit.util.finite_weights import require_finite

ACCUMULATED, OWN_TASK = "accumulated over tasks", "this task's own"  # what a state file's importance is


def adapter_parameters(model, adapter: str) -> dict[str, torch.nn.Parameter]:
    """The adapter's trainable parameters (LoRA matrices, projector copy), keyed without the adapter's name."""
    marker = f".{adapter}."
    return {name.replace(marker, "."): p for name, p in model.named_parameters()
            if marker in name and ("lora_" in name or "modules_to_save" in name)}


def state_file(ctx: StageContext, stage: int) -> Path:
    return ctx.state_dir / f"{stage:02d}-{ctx.tasks[stage]}.safetensors"


def load_stage_tensors(ctx: StageContext, stage: int) -> dict[str, dict[str, torch.Tensor]]:
    """{kind: {parameter: tensor}} saved after stage `stage` (kinds: anchor, importance, and a method's own)."""
    path = state_file(ctx, stage)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: stage {stage}'s importance estimates are missing")
    kinds: dict[str, dict[str, torch.Tensor]] = {"anchor": {}, "importance": {}}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            kind, _, name = key.partition(".")
            kinds.setdefault(kind, {})[name] = f.get_tensor(key)
    return kinds


def load_stage_state(ctx: StageContext, stage: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(anchor, importance) saved after stage `stage`."""
    kinds = load_stage_tensors(ctx, stage)
    return kinds["anchor"], kinds["importance"]


def load_state(ctx: StageContext) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None:
    """(anchor, importance) saved after the previous stage, or None at stage 0."""
    return None if ctx.stage == 0 else load_stage_state(ctx, ctx.stage - 1)


def save_state(ctx: StageContext, anchor: dict[str, torch.Tensor], importance: dict[str, torch.Tensor],
               kind: str = ACCUMULATED, extra: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """Stage ctx.stage's anchor and importance (and `extra`: {kind: {parameter: tensor}}, a method's own)."""
    path = state_file(ctx, ctx.stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"anchor.{k}": v.detach().float().cpu().contiguous() for k, v in anchor.items()}
    tensors.update({f"importance.{k}": v.detach().float().cpu().contiguous() for k, v in importance.items()})
    for name, values in (extra or {}).items():
        tensors.update({f"{name}.{k}": v.detach().float().cpu().contiguous() for k, v in values.items()})
    require_finite(tensors, path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"importance": kind})  # one key: safetensors orders several at random
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


@dataclass
class PenaltyTerm:
    """One quadratic pull: towards `anchor`, weighted by `importance`, at `strength`."""

    anchor: dict[str, torch.Tensor]
    importance: dict[str, torch.Tensor]
    strength: float
    task: str = ""


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
    def __init__(self, terms: list[PenaltyTerm], adapter: str):
        self.terms, self.adapter = terms, adapter
        self._params = None

    def loss(self, model):
        if self._params is None:
            self._params = adapter_parameters(model, self.adapter)
        values = [penalty(self._params, t.anchor, t.importance, t.strength) for t in self.terms]
        return sum(values[1:], values[0])

    def gradient(self, key: str, value: torch.Tensor) -> torch.Tensor:
        """The penalty's gradient with respect to parameter `key` at `value` (float32): what the penalty adds to
        that parameter's gradient in one optimizer step."""
        total = torch.zeros_like(value, dtype=torch.float32)
        for t in self.terms:
            if key in t.anchor and key in t.importance:
                total += t.strength * t.importance[key].to(value.device) * (
                    value.float() - t.anchor[key].to(value.device).float())
        return total


@dataclass(frozen=True)
class RegularizerSettings:
    strength: float = setting(1.0, "λ: the pull towards the earlier stages' parameters", at_least=0)


@dataclass(frozen=True)
class ImportanceRegularized(Method):
    """seq-lora + an importance-weighted pull towards the previous stages' parameters."""

    continues: bool = True
    multi_process: bool = False  # per-stage state one process computes and saves
    settings_type: type = RegularizerSettings
    importance_kind: str = ACCUMULATED  # what the state file's importance is (the manifest and the file say it)

    def strength(self, ctx: StageContext) -> float:
        return ctx.settings.strength

    def penalty_terms(self, ctx: StageContext) -> list[PenaltyTerm]:
        if ctx.stage == 0:
            return []
        anchor, importance = load_state(ctx)
        return [PenaltyTerm(anchor, importance, self.strength(ctx), "earlier tasks")]

    def training_hooks(self, ctx: StageContext) -> TrainingHooks | None:
        terms = self.penalty_terms(ctx)
        pull = PenaltyHooks(terms, ctx.adapter) if terms else None
        return combine(pull, self.path_hooks(ctx, pull))

    def path_hooks(self, ctx: StageContext, pull: PenaltyHooks | None) -> TrainingHooks | None:
        """Hooks that follow the training path (SI); `pull` is the stage's penalty (None at stage 0)."""
        return None

    def importance(self, ctx: StageContext, model, params: dict[str, torch.nn.Parameter],
                   hooks: TrainingHooks | None) -> dict[str, torch.Tensor]:
        """This task's importance of each parameter (non-negative), from the stated data only; `hooks` are the
        stage's training hooks (None where the stage did not train in this process)."""
        raise NotImplementedError

    def stored_importance(self, ctx: StageContext, fresh: dict[str, torch.Tensor]
                          ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]] | None]:
        """What the stage's state file keeps (importance, and a method's own tensors) given this task's `fresh`
        importance: here the sum with the earlier tasks' (online)."""
        total = dict(fresh)
        previous = load_state(ctx)
        if previous is not None:
            for key, value in previous[1].items():
                total[key] = total[key] + value if key in total else value
        return total, None

    def stage_facts(self, ctx: StageContext) -> dict:
        """What the manifest records about the strength this stage trained under."""
        return {"strength": None if ctx.stage == 0 else self.strength(ctx)}

    def after_stage(self, ctx: StageContext, model, hooks: TrainingHooks | None = None) -> dict:
        path = state_file(ctx, ctx.stage)
        if path.is_file():  # written before a crash, after this stage trained: never rewritten
            return {"importance_file": str(path.relative_to(ctx.state_dir.parent)), "reused": True}
        if hasattr(model, "set_adapter"):
            model.set_adapter(ctx.adapter)
        params = adapter_parameters(model, ctx.adapter)
        fresh = self.importance(ctx, model, params, hooks)
        total, extra = self.stored_importance(ctx, fresh)
        path = save_state(ctx, {k: p.detach() for k, p in params.items()}, total,
                          self.importance_kind, extra)
        ctx.say(f"stage {ctx.stage} ({ctx.task}): {self.name} importance of {len(params)} tensors saved to "
                f"{path.name}")
        return {"importance_file": str(path.relative_to(ctx.state_dir.parent)), **self.stage_facts(ctx),
                "importance_mean": float(sum(v.sum() for v in fresh.values()) /
                                         max(1, sum(v.numel() for v in fresh.values())))}


def gradients_over(model, params: dict[str, torch.nn.Parameter], batches: Iterable[dict],
                   objective: Callable[[torch.nn.Module, dict], torch.Tensor], squared: bool) -> dict[str, torch.Tensor]:
    """Mean over `batches` (one example each) of grad^2 (squared) or |grad| per parameter, where grad is the
    gradient of `objective(model, batch)`; the model in eval mode (no dropout in the estimate)."""
    was_training = model.training
    model.eval()
    flags = {k: p.requires_grad for k, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
    sums = {k: torch.zeros_like(p, dtype=torch.float32) for k, p in params.items()}
    count = 0
    for batch in batches:
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
