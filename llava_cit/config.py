"""Run configuration: plain dataclasses, loaded from YAML, overridable with `--set key=value`."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from llava_cit.errors import UserError


@dataclass
class LoraSettings:
    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    bias: str = "none"
    target_modules: str = "auto"  # "auto": every linear layer of the language model
    train_projector: bool = True  # LLaVA only: the projector is trained and saved with the adapter
    projector_lr: float | None = 2e-5


@dataclass
class TrainSettings:
    epochs: float = 1.0
    lr: float = 2e-4
    batch_size: int = 16
    grad_accum: int = 1
    scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_steps: int = -1
    max_length: int = 2048
    bf16: bool = False
    gradient_checkpointing: bool = False
    save_steps: int = 200
    optim: str = "adamw_torch"


@dataclass
class RetentionSettings:
    fraction: float = 0.0001
    min_count: int = 16
    seed: int = 0


@dataclass
class SwitchSettings:
    extractor: str = "facebook/opt-125m"
    layer: int = -1
    pooling: str = "last"
    hidden: int = 200
    epochs: int = 200
    lr: float = 1e-3
    reject: bool = True


@dataclass
class EvalSettings:
    limit: int | None = None
    batch_size: int = 16
    max_new_tokens: int = 16


@dataclass
class PretrainSettings:
    """Optional generic pre-training of a tiny base (the analogue of LLaVA's stage 1)."""

    task: str | None = None
    examples: int = 0
    epochs: float = 1.0
    lr: float = 3e-3
    batch_size: int = 32


@dataclass
class RunConfig:
    model: str = "llava-hf/llava-1.5-7b-hf"
    dtype: str | None = None
    device_map: str | None = None
    load_in_4bit: bool = False
    trust_remote_code: bool = False
    method: str = "switchcit"
    tasks: list[Any] = field(default_factory=list)
    train_limit: int | None = None
    seed: int = 0
    system_prompt: str | None = None
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    switch: SwitchSettings = field(default_factory=SwitchSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise UserError(f"config section '{where or 'top level'}' must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            path = f"{where}.{key}" if where else key
            raise UserError(f"unknown config key '{path}' (known here: {', '.join(known)})")
        sub = _dataclass_type(known[key])
        kwargs[key] = _build(sub, value or {}, f"{where}.{key}" if where else key) if sub else value
    return cls(**kwargs)


def _dataclass_type(f: dataclasses.Field):
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
    return type(default) if dataclasses.is_dataclass(default) else None


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """`a.b=value` into a nested dict; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in assignment:
        raise UserError(f"--set expects key=value, got '{assignment}'")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {key}: '{part}' is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw != "" else None


def load_config(path: str | Path | None, overrides: list[str] = (), base: dict | None = None) -> RunConfig:
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark else ""
            raise UserError(f"malformed YAML in {path}{line}: {getattr(err, 'problem', err)}") from None
        _deep_update(data, loaded)
    for assignment in overrides:
        apply_override(data, assignment)
    config = _build(RunConfig, data, "")
    if not config.tasks:
        raise UserError("the config lists no tasks (key 'tasks')")
    return config


def _deep_update(target: dict, source: dict) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value
