"""A quadratic toy trained by the real LoraTrainer (SGD, constant lr): loss = 1/2 sum h (theta - target)^2, theta a
parameter named as a LoRA matrix of adapter "a" (what a method's hooks look for)."""

from __future__ import annotations

import torch
from transformers import PrinterCallback, TrainingArguments

from llava_cit.train.trainer import LoraTrainer, MethodHooksCallback


class Quadratic(torch.nn.Module):
    def __init__(self, h: torch.Tensor, target: torch.Tensor, start: torch.Tensor, extra: int = 0):
        super().__init__()
        self.h, self.target = h, target
        self.layer = torch.nn.Module()
        self.layer.lora_A = torch.nn.ModuleDict({"a": torch.nn.Linear(len(start), 1, bias=False)})
        # a parameter of the adapter the task loss never touches (its gradient stays None)
        self.layer.lora_B = torch.nn.ModuleDict({"a": torch.nn.Linear(max(extra, 1), 1, bias=False)})
        with torch.no_grad():
            self.layer.lora_A["a"].weight.copy_(start.view(1, -1))

    @property
    def theta(self) -> torch.nn.Parameter:
        return self.layer.lora_A["a"].weight

    def forward(self, x=None):
        return {"loss": 0.5 * (self.h * (self.theta.view(-1) - self.target) ** 2).sum()}


class _Items(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": 0.0}


def train_toy(model: Quadratic, steps: int, lr: float, max_grad_norm: float, hooks, out) -> None:
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=1, learning_rate=lr,
                             optim="sgd", lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                             max_grad_norm=max_grad_norm, report_to=[], use_cpu=True, save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, remove_unused_columns=False, seed=0)
    trainer = LoraTrainer(model=model, args=args, train_dataset=_Items(steps),
                          data_collator=lambda items: {"x": torch.zeros(len(items))}, hooks=hooks,
                          callbacks=[MethodHooksCallback(hooks, model)] if hooks is not None else [])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
