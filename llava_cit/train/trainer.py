"""Train one LoRA adapter on one task's examples through the transformers Trainer.

What an adapter covers is llava_cit.train.lora_targets: LoRA on the language model's linear layers (and, as asked,
the projector's and the vision encoder's), the projector trained fully at its own learning rate and saved with
the adapter (`modules_to_save`), as LoRA, or frozen. Accelerate, DeepSpeed, bf16, gradient checkpointing and
checkpoint resume all come from the Trainer.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import re
import shutil
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from llava_cit.config import LoraSettings, TrainSettings
from llava_cit.data.collation import IGNORE_INDEX, Encoder, TrainCollator
from llava_cit.data.example import Example
from llava_cit.models.vision_parts import vision_parts
from llava_cit.train import checkpointing, zero3_weights
from llava_cit.train.distributed import is_main_process
from llava_cit.train.length_grouping import modality_length
from llava_cit.train.liger import apply_liger
from llava_cit.train.lora_targets import (  # noqa: F401 - language_model_target_regex: the trainer's API
    in_projector,
    language_model_target_regex,
    lora_config,
    projector_markers,
    projector_mode,
)
from llava_cit.util.atomic import atomic_path, writing
from llava_cit.util.errors import UserError

log = logging.getLogger(__name__)


def add_adapter(model, name: str, settings: LoraSettings, is_vision: bool) -> PeftModel:
    """A fresh LoRA adapter `name` on `model` (a base model or an existing PeftModel)."""
    if isinstance(model, PeftModel):
        model.add_adapter(name, lora_config(model.get_base_model(), settings, is_vision))
        return model
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)  # QLoRA
    return get_peft_model(model, lora_config(model, settings, is_vision), adapter_name=name)


class ListDataset(Dataset):
    def __init__(self, examples: list[Example], encoder: Encoder):
        self.examples, self.encoder = examples, encoder

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int):
        return self.encoder.encode_train(self.examples[index])


class TrainingDiverged(UserError):
    """A non-finite loss or gradient norm: the step stops before the optimizer applies it (weights stay finite)."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def divergence_advice(settings: TrainSettings, dtype: str | None = None) -> str:
    """The settings to look at when training diverges."""
    precision = "bf16" if settings.bf16 else (dtype or "float32")
    return (f"lower train.lr (now {settings.lr:g}), keep train.max_grad_norm > 0 (now "
            f"{effective_max_grad_norm(settings):g}), or train in float32 (precision now {precision})")


def effective_max_grad_norm(settings: TrainSettings) -> float:
    """train.max_grad_norm, or the Trainer's default 1.0 when unset."""
    return 1.0 if settings.max_grad_norm is None else settings.max_grad_norm


class LoraTrainer(Trainer):
    """The Trainer with five extras: the projector gets its own learning rate, a method's extra loss
    term (a regularizer: llava_cit.methods.base.TrainingHooks.loss) is added to the task loss, a method's
    `before_step` sees the step's whole gradient before the Trainer clips it (A-GEM projects the unclipped gradient,
    SI reads the task loss's own gradient), a non-finite loss or gradient norm stops training before the
    optimizer step that would apply it (TrainingDiverged), and batches can be grouped by length within each
    modality (`lengths`: llava_cit.train.length_grouping)."""

    def __init__(self, *args, projector_lr: float | None = None, hooks=None, advice: str = "",
                 lengths: list[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.projector_lr = projector_lr
        self.hooks = hooks
        self.advice = advice
        self.lengths = lengths
        self._step_loss = None  # the losses of the micro-batches of the optimizer step in progress (a tensor)
        self._hooks_saw_step = False  # the method's before_step ran for the optimizer step in progress

    def _get_train_sampler(self, train_dataset=None):
        if self.lengths is None:
            return super()._get_train_sampler(train_dataset)
        from llava_cit.train.length_grouping import ModalityLengthGroupedSampler

        return ModalityLengthGroupedSampler(self.lengths, self.args.train_batch_size,
                                            self.args.world_size * self.args.gradient_accumulation_steps)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._step_loss = loss.detach() if self._step_loss is None else self._step_loss + loss.detach()
        self._hooks_saw_step = False
        return loss

    def _method_before_step(self) -> None:
        """The method's gradient surgery, once per optimizer step, on the accumulated (synchronised, unclipped)
        gradient. Under fp16 loss scaling the gradient is still scaled here: `hooks.gradient_scale` says by what."""
        if self.hooks is None or self._hooks_saw_step:
            return
        self._hooks_saw_step = True
        self.hooks.global_step = self.state.global_step  # restored from the checkpoint on a resume
        scaler = getattr(self.accelerator, "scaler", None)
        self.hooks.gradient_scale = float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0
        self.hooks.before_step(self.model)

    def _clip_grad_norm(self, model):
        self._method_before_step()
        return super()._clip_grad_norm(model)

    def _get_grad_norm(self, model, grad_norm=None):
        """The Trainer asks for the step's gradient norm right before the optimizer step: both it and the step's
        loss must be finite (one device sync per optimizer step)."""
        self._method_before_step()  # without clipping (max_grad_norm 0) nothing ran it yet
        grad_norm = super()._get_grad_norm(model, grad_norm)
        loss, self._step_loss = self._step_loss, None
        step = self.state.global_step + 1
        bad = []
        if loss is not None and not math.isfinite(float(loss)):
            bad.append(f"the loss is {float(loss)}")
        scaled = self.accelerator.mixed_precision == "fp16" or getattr(self.accelerator, "scaler", None) is not None
        # fp16 loss scaling (e.g. DeepSpeed's "fp16": auto) skips a step with non-finite gradients by design
        if grad_norm is not None and not scaled and not math.isfinite(float(grad_norm)):
            bad.append(f"the gradient norm is {float(grad_norm)}")
        if bad:
            raise TrainingDiverged(f"training diverged at step {step}: {' and '.join(bad)}; {self.advice}", step)
        return grad_norm

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        extra = self.hooks.loss(model) if self.hooks is not None else None
        if extra is None:
            return result
        if self._loss_not_divided_by_accumulation(num_items_in_batch):
            # the Trainer leaves this micro-batch's loss undivided (the model normalised the task loss by the tokens
            # of the whole accumulated batch): the method's term, added to every micro-batch, is divided here, so it
            # counts once per optimizer step whatever the accumulation (one strength per λ)
            extra = extra / self.current_gradient_accumulation_steps
        if return_outputs:
            return result[0] + extra, result[1]
        return result + extra

    def _loss_not_divided_by_accumulation(self, num_items_in_batch) -> bool:
        """The Trainer's own test (Trainer.training_step) of whether it divides a micro-batch's loss by the number of
        accumulated micro-batches: not where the loss was already normalised by `num_items_in_batch`."""
        if getattr(self, "loss_is_scaled_for_ga", None) is not None:
            return bool(self.loss_is_scaled_for_ga)
        return bool((self.model_accepts_loss_kwargs and num_items_in_batch is not None) or self.compute_loss_func is not None)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """A checkpoint holds the adapter being trained, not every adapter of the model: the earlier ones are frozen
        and saved with their stages, and under DeepSpeed ZeRO-3 the Trainer gathers only trainable weights (PEFT's
        save of every adapter would look for the frozen ones' projector copies there)."""
        if not isinstance(self.model, PeftModel):
            return super()._save(output_dir, state_dict)
        self.model.save_pretrained = functools.partial(type(self.model).save_pretrained, self.model,
                                                       selected_adapters=[self.model.active_adapter])
        try:
            return super()._save(output_dir, state_dict)
        finally:
            del self.model.save_pretrained

    def create_optimizer(self, model=None):
        opt_model = self.model if model is None else model
        if self.optimizer is None and self.projector_lr is not None:
            groups = projector_parameter_groups(opt_model, self.projector_lr, self.args.weight_decay)
            if groups is not None:
                cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
                self.optimizer = cls(groups, **kwargs)
        return super().create_optimizer(model)


def projector_parameter_groups(model: torch.nn.Module, projector_lr: float, weight_decay: float) -> list[dict] | None:
    """Optimizer parameter groups: the trainable projector at its own learning rate (no weight decay), every other
    trainable parameter in the first group; None when nothing of the projector trains."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    markers = projector_markers(base)
    projector = [p for n, p in named if in_projector(n, markers)]
    if not projector:
        return None
    rest = [p for n, p in named if not in_projector(n, markers)]
    return [{"params": rest, "weight_decay": weight_decay},
            {"params": projector, "lr": projector_lr, "weight_decay": 0.0}]


HOOKS_STATE = "method-hooks-{step}.safetensors"  # a method's hooks' state, beside the Trainer's checkpoint-{step}


def save_hooks_state(hooks, path: Path) -> None:
    """What a method's training hooks accumulated (TrainingHooks.state), atomically; nothing when they keep none."""
    tensors = hooks.state() if hooks is not None else {}
    if not tensors:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path), atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def load_hooks_state(hooks, path: Path) -> bool:
    """Restore the hooks' state saved at `path` (a resume); False where none was saved."""
    if hooks is None or not path.is_file():
        return False
    hooks.load_state(load_file(str(path)))
    return True


class MethodHooksCallback(TrainerCallback):
    """A method's per-step hooks after the update (after_step; before_step runs in LoraTrainer, before clipping);
    their state is saved beside each Trainer checkpoint, before the checkpoint itself (a kill between leaves that
    checkpoint incomplete, so a resume takes an earlier one, whose state is there)."""

    def __init__(self, hooks, model, checkpoint_dir: Path | None = None):
        self.hooks, self.model, self.checkpoint_dir = hooks, model, checkpoint_dir

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save and self.checkpoint_dir is not None and state.is_world_process_zero:
            save_hooks_state(self.hooks, self.checkpoint_dir / HOOKS_STATE.format(step=state.global_step))

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.hooks.after_step(self.model)


def keep_fp32_master_weights(model: torch.nn.Module) -> list[str]:
    """Mixed precision that trains: every trainable parameter of a half-precision model that is not a LoRA
    matrix (the projector copy in `modules_to_save`, every weight under full-sft) is kept in float32, so a
    2e-5 step on a weight of 0.01 is not rounded away (`bf16(0.01) + 2e-5 == bf16(0.01)`). PEFT already keeps
    LoRA matrices in float32. The module computes in float32 on float32 inputs and hands its output back in
    the model's half precision, so the rest of the model is unchanged. Returns the modules upcast."""
    half = (torch.bfloat16, torch.float16)
    upcast = []
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad and p.dtype in half]
        if not own or any(part.startswith("lora_") for part in name.split(".")):
            continue
        compute = own[0].dtype
        module.float()

        def to_fp32(_module, args, kwargs):
            cast = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
            return tuple(cast), kwargs

        def to_half(_module, _args, output, compute=compute):
            if torch.is_tensor(output) and output.is_floating_point():
                return output.to(compute)
            return output

        module.register_forward_pre_hook(to_fp32, with_kwargs=True)
        module.register_forward_hook(to_half)
        upcast.append(name)
    return upcast


CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")


def checkpoint_complete(path: Path) -> bool:
    """A Trainer checkpoint that resumes: weights, optimizer, scheduler, and a readable trainer_state.json (the
    Trainer writes that last, so a kill mid-save leaves it missing or torn)."""
    state = path / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))["global_step"]
    except (OSError, ValueError, KeyError):
        return False
    if any(path.glob("global_step*")):  # DeepSpeed keeps weights and optimizer states in its own folder
        return True
    weights = any(next(path.rglob(name), None) is not None for name in WEIGHT_FILES)  # adapters may sit in sub-folders
    return weights and (path / "optimizer.pt").is_file()


def last_complete_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in `directory`; newer incomplete ones (a kill mid-save) are deleted."""
    if not directory.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := CHECKPOINT.match(p.name))),
                   reverse=True)
    for _, path in found:
        if checkpoint_complete(path):
            return path
        log.warning("removing incomplete checkpoint %s (interrupted while it was saved)", path)
        shutil.rmtree(path, ignore_errors=True)
    return None


def trackers(settings: TrainSettings) -> list[str]:
    """`train.report_to` as the Trainer's list: auto = tensorboard when installed, else nothing."""
    value = settings.report_to.strip().lower()
    if value == "auto":
        try:
            import tensorboard  # noqa: F401

            return ["tensorboard"]
        except ImportError:
            return []
    names = [v.strip() for v in value.split(",") if v.strip()]
    return [] if names in ([], ["none"]) else names


def world_size() -> int:
    """Processes training together (accelerate / torchrun set WORLD_SIZE), 1 when run alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def gradient_accumulation(settings: TrainSettings, processes: int | None = None) -> int:
    """train.grad_accum, or the steps that make train.global_batch_size from the per-device batch on every
    process (LLaVA-1.5's recipe: a global batch of 128, e.g. 16 x 1 x 8 GPUs or 4 x 4 x 8)."""
    if settings.global_batch_size is None:
        return settings.grad_accum
    processes = processes or world_size()
    per_step = settings.batch_size * processes
    if settings.global_batch_size % per_step:
        raise UserError(f"train.global_batch_size={settings.global_batch_size} is not a multiple of "
                        f"train.batch_size={settings.batch_size} x {processes} process(es) = {per_step}")
    return settings.global_batch_size // per_step


def training_arguments(settings: TrainSettings, output_dir: Path, seed: int, progress: bool,
                       run_name: str | None = None) -> TrainingArguments:
    use_cpu = not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.lr,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=gradient_accumulation(settings),
        lr_scheduler_type=settings.scheduler,
        max_grad_norm=effective_max_grad_norm(settings),
        logging_nan_inf_filter=False,  # a non-finite loss is logged as it is (and stops training), never hidden
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        optim=settings.optim,
        bf16=settings.bf16,
        gradient_checkpointing=settings.gradient_checkpointing,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,  # the older one stays until the newer is complete
        save_only_model=False,
        logging_steps=settings.logging_steps,
        report_to=[name for name in trackers(settings) if name != "tensorboard"],  # tensorboard: our own writer
        run_name=run_name,
        include_num_input_tokens_seen="all",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=not progress,
        seed=seed,
        data_seed=seed,
        use_cpu=use_cpu,
    )


def train_adapter(
    model: PeftModel,
    adapter: str,
    examples: list[Example],
    encoder: Encoder,
    settings: TrainSettings,
    lora: LoraSettings,
    checkpoint_dir: Path,
    seed: int = 0,
    progress: bool = True,
    callbacks: list | None = None,
    log_dir: Path | None = None,
    run_name: str | None = None,
    hooks=None,
) -> dict:
    """Train adapter `adapter` of `model` on `examples`; resumes from the last complete checkpoint in
    `checkpoint_dir`. TensorBoard event files (when `train.report_to` asks for them) go to `log_dir`.
    `hooks`: a method's llava_cit.methods.base.TrainingHooks (extra loss, gradient surgery)."""
    model.set_adapter(adapter)
    for name, param in model.named_parameters():  # only this adapter's LoRA (and projector copy) learns
        param.requires_grad = f".{adapter}." in name and ("lora_" in name or "modules_to_save" in name) and \
            (hooks is None or hooks.trainable(name))  # a method may train part of it (EProj: the projector)
    keep_fp32_master_weights(model)
    projector_lr = lora.projector_lr if (encoder.loaded.is_vision and projector_mode(lora) != "false") else None
    return _fit(model, examples, encoder, settings, checkpoint_dir, seed, progress, callbacks, projector_lr, log_dir,
                run_name, hooks)


def train_full(model: torch.nn.Module, examples: list[Example], encoder: Encoder, settings: TrainSettings,
               checkpoint_dir: Path, seed: int = 0, progress: bool = True, callbacks: list | None = None,
               log_dir: Path | None = None, run_name: str | None = None) -> dict:
    """Full fine-tuning (`full-sft`): every weight learns (float32 master weights), except a vision encoder's
    (kept frozen, as in LLaVA; a projector inside it, e.g. Qwen's merger, learns)."""
    parts = vision_parts(model)
    for name, param in model.named_parameters():
        param.requires_grad = parts is None or parts.part_of(name) != "vision"
    keep_fp32_master_weights(model)
    return _fit(model, examples, encoder, settings, checkpoint_dir, seed, progress, callbacks, None, log_dir, run_name)


def _fit(model, examples: list[Example], encoder: Encoder, settings: TrainSettings, checkpoint_dir: Path, seed: int,
         progress: bool, callbacks: list | None, projector_lr: float | None, log_dir: Path | None = None,
         run_name: str | None = None, hooks=None) -> dict:
    if not examples:
        raise ValueError("no training examples")
    _check_answers_fit(examples, encoder, settings.max_length)
    kernels = apply_liger(model) if settings.liger_kernel else None
    recompute = checkpointing.choose(settings, model, examples, encoder, processes=world_size())
    settings = dataclasses.replace(settings, gradient_checkpointing=recompute.on)
    if not recompute.on:
        checkpointing.turn_off(model)  # an earlier stage may have turned it on; the Trainer only ever enables it
    model.train()
    args = training_arguments(settings, checkpoint_dir, seed, progress, run_name)
    callbacks = list(callbacks or [])
    if "tensorboard" in trackers(settings) and log_dir is not None and is_main_process():  # rank 0 writes the run
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(log_dir))))
    if hooks is not None:
        callbacks.append(MethodHooksCallback(hooks, model, checkpoint_dir))
    trainer = LoraTrainer(
        model=model,
        args=args,
        train_dataset=ListDataset(examples, encoder),
        data_collator=TrainCollator(encoder.tokenizer.pad_token_id),
        projector_lr=projector_lr,
        hooks=hooks,
        callbacks=callbacks,
        advice=divergence_advice(settings, str(getattr(model, "dtype", "")).replace("torch.", "") or None),
        lengths=[modality_length(example) for example in examples] if settings.group_by_length else None,
    )
    trainer.remove_callback(PrinterCallback)  # no raw log dicts on the terminal; they go to train_log.jsonl
    last = last_complete_checkpoint(checkpoint_dir)
    if last is not None:  # the method's hooks go on from what they had accumulated at that checkpoint
        load_hooks_state(hooks, checkpoint_dir / HOOKS_STATE.format(step=last.name.split("-")[-1]))
    before = zero3_weights.parameter_attributes(model)
    try:
        with writing(checkpoint_dir):  # the Trainer's checkpoints: a full disk is one line, not a SafetensorError
            result = trainer.train(resume_from_checkpoint=str(last) if last else None)
    except RuntimeError as err:  # torch: an update step too large for float32 (e.g. Adam's lr / (1 - beta1) at lr 1e38)
        if "overflow" not in str(err):
            raise
        step = trainer.state.global_step + 1
        raise TrainingDiverged(f"training overflowed at step {step} (float32 cannot hold the optimizer's update); "
                               f"{trainer.advice}", step) from None
    if zero3_weights.is_partitioned(model):  # DeepSpeed ZeRO-3: whole weights again on every rank, for evaluation,
        zero3_weights.release_partitioned_weights(trainer.model_wrapped, model, before)  # saving, the next adapter
    for callback in callbacks:
        writer = getattr(callback, "tb_writer", None)
        if writer is not None:
            writer.close()
    model.eval()
    return {
        "steps": result.global_step,
        "train_loss": float(result.training_loss),
        "train_seconds": float(result.metrics.get("train_runtime", 0.0)),
        "samples_per_second": float(result.metrics.get("train_samples_per_second", 0.0)),
        "resumed_from": last.name if last else None,
        "gradient_checkpointing": recompute.record(),
        **({"liger_kernel": kernels} if kernels else {}),
    }


def _check_answers_fit(examples: list[Example], encoder: Encoder, max_length: int, probe: int = 256) -> None:
    """Refuse to train when truncation at `max_length` cuts off every answer (the loss would be empty)."""
    sample = examples[:probe]
    cut = sum(all(label == IGNORE_INDEX for label in encoder.encode_train(ex, pixels=False)["labels"]) for ex in sample)
    if cut == len(sample):
        raise UserError(f"train.max_length={max_length} cuts off the answer of every training example "
                        f"(checked {len(sample)}): raise train.max_length")
    if cut:
        log.warning("train.max_length=%d cuts off the answer of %d of %d examples checked", max_length, cut, len(sample))


def trainable_parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


