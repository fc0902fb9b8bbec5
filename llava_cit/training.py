"""Train one LoRA adapter on one task's examples through the transformers Trainer.

LoRA goes on the language model's linear layers only (never the vision tower); for
LLaVA the projector can be trained too, at its own learning rate, and is saved with
the adapter (`modules_to_save`). Accelerate, DeepSpeed, bf16, gradient checkpointing
and checkpoint resume all come from the Trainer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from torch.utils.data import Dataset
from transformers import PrinterCallback, Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from llava_cit.collation import IGNORE_INDEX, Encoder, TrainCollator
from llava_cit.config import LoraSettings, TrainSettings
from llava_cit.data.example import Example
from llava_cit.errors import UserError

PROJECTOR_MODULES = ["multi_modal_projector.linear_1", "multi_modal_projector.linear_2"]
log = logging.getLogger(__name__)


def language_model_target_regex(model: torch.nn.Module) -> str:
    """A PEFT `target_modules` regex naming every linear layer of the language model."""
    names = set()
    for name, module in model.named_modules():
        if any(part in name for part in ("lora_", "base_layer", "modules_to_save", "original_module")):
            continue  # PEFT's own wrappers, when the model already carries adapters
        linear = getattr(module, "base_layer", module)
        if not isinstance(linear, torch.nn.Linear) and type(linear).__name__ not in ("Linear4bit", "Linear8bitLt"):
            continue
        if "vision_tower" in name or "multi_modal_projector" in name or name.endswith("lm_head"):
            continue
        names.add(name.split(".")[-1])
    if not names:
        raise ValueError("no linear layers found in the language model")
    is_vision = any("vision_tower" in name for name, _ in model.named_modules())
    prefix = r".*language_model.*\." if is_vision else r".*\."
    return prefix + "(" + "|".join(sorted(names)) + ")$"


def lora_config(model: torch.nn.Module, settings: LoraSettings, is_vision: bool) -> LoraConfig:
    target = settings.target_modules
    if target == "auto":
        target = language_model_target_regex(model)
    return LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, bias=settings.bias,
        target_modules=target, task_type="CAUSAL_LM",
        modules_to_save=PROJECTOR_MODULES if (is_vision and settings.train_projector) else None,
    )


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


class LoraTrainer(Trainer):
    """The Trainer with one extra: the LLaVA projector gets its own learning rate."""

    def __init__(self, *args, projector_lr: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.projector_lr = projector_lr

    def create_optimizer(self, model=None):
        opt_model = self.model if model is None else model
        if self.optimizer is None and self.projector_lr is not None:
            named = [(n, p) for n, p in opt_model.named_parameters() if p.requires_grad]
            projector = [p for n, p in named if "multi_modal_projector" in n]
            if projector:
                rest = [p for n, p in named if "multi_modal_projector" not in n]
                cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
                groups = [{"params": rest, "weight_decay": self.args.weight_decay},
                          {"params": projector, "lr": self.projector_lr, "weight_decay": 0.0}]
                self.optimizer = cls(groups, **kwargs)
        return super().create_optimizer(model)


def training_arguments(settings: TrainSettings, output_dir: Path, seed: int, progress: bool) -> TrainingArguments:
    use_cpu = not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.lr,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        lr_scheduler_type=settings.scheduler,
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        optim=settings.optim,
        bf16=settings.bf16,
        gradient_checkpointing=settings.gradient_checkpointing,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=1,
        save_only_model=False,
        logging_steps=10,
        report_to=[],
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
) -> dict:
    """Train adapter `adapter` of `model` on `examples`; resumes from the last checkpoint in `checkpoint_dir`."""
    model.set_adapter(adapter)
    for name, param in model.named_parameters():  # only this adapter's LoRA (and projector copy) learns
        param.requires_grad = f".{adapter}." in name and ("lora_" in name or "modules_to_save" in name)
    projector_lr = lora.projector_lr if (encoder.loaded.is_vision and lora.train_projector) else None
    return _fit(model, examples, encoder, settings, checkpoint_dir, seed, progress, callbacks, projector_lr)


def train_full(model: torch.nn.Module, examples: list[Example], encoder: Encoder, settings: TrainSettings,
               checkpoint_dir: Path, seed: int = 0, progress: bool = True, callbacks: list | None = None) -> dict:
    """Full fine-tuning (`full-sft`): every weight learns, except a vision tower's (kept frozen, as in LLaVA)."""
    for name, param in model.named_parameters():
        param.requires_grad = "vision_tower" not in name
    return _fit(model, examples, encoder, settings, checkpoint_dir, seed, progress, callbacks, None)


def _fit(model, examples: list[Example], encoder: Encoder, settings: TrainSettings, checkpoint_dir: Path, seed: int,
         progress: bool, callbacks: list | None, projector_lr: float | None) -> dict:
    if not examples:
        raise ValueError("no training examples")
    _check_answers_fit(examples, encoder, settings.max_length)
    model.train()
    args = training_arguments(settings, checkpoint_dir, seed, progress)
    trainer = LoraTrainer(
        model=model,
        args=args,
        train_dataset=ListDataset(examples, encoder),
        data_collator=TrainCollator(encoder.tokenizer.pad_token_id),
        projector_lr=projector_lr,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # no raw log dicts on the terminal; they stay in trainer state
    last = get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None
    result = trainer.train(resume_from_checkpoint=last)
    model.eval()
    return {
        "steps": result.global_step,
        "train_loss": float(result.training_loss),
        "train_seconds": float(result.metrics.get("train_runtime", 0.0)),
        "samples_per_second": float(result.metrics.get("train_samples_per_second", 0.0)),
        "resumed_from": Path(last).name if last else None,
    }


def _check_answers_fit(examples: list[Example], encoder: Encoder, max_length: int, probe: int = 256) -> None:
    """Refuse to train when truncation at `max_length` cuts off every answer (the loss would be empty)."""
    sample = examples[:probe]
    cut = sum(all(label == IGNORE_INDEX for label in encoder.encode_train(ex)["labels"]) for ex in sample)
    if cut == len(sample):
        raise UserError(f"train.max_length={max_length} cuts off the answer of every training example "
                        f"(checked {len(sample)}): raise train.max_length")
    if cut:
        log.warning("train.max_length=%d cuts off the answer of %d of %d examples checked", max_length, cut, len(sample))


def trainable_parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


