"""Run configuration: plain dataclasses, loaded from YAML, overridable with `--set key=value`."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from llava_cit.util.errors import UserError
from llava_cit.util.text_files import read_utf8
from switch.defaults import SWITCH_DEFAULTS


@dataclass
class LoraSettings:
    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    bias: str = "none"
    target_modules: str = "auto"  # "auto": the linear layers `targets` names; or a PEFT regex / module name
    # what LoRA covers (vision models): language (every linear of the language model), language+projector (and the
    # projector's linears: train_projector lora), all (and the vision encoder's linears)
    targets: str = "language"
    # how a vision model's projector (merger, connector) trains: full (a copy per adapter, saved with it: LLaVA's
    # recipe), lora, false (frozen); auto: lora with targets language+projector, full otherwise. true = full
    train_projector: bool | str = "auto"
    projector_lr: float | None = 2e-5


@dataclass
class TrainSettings:
    epochs: float = 1.0
    lr: float = 2e-4
    batch_size: int = 16  # per device
    grad_accum: int = 1
    global_batch_size: int | None = None  # when set: grad_accum = global / (batch_size x number of processes)
    scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float | None = None  # gradient clipping; None: the Trainer's 1.0; 0: no clipping
    max_steps: int = -1
    max_length: int = 2048
    bf16: bool = False
    gradient_checkpointing: bool | str = "auto"  # auto: on only when the batch would not fit the GPU without it
    liger_kernel: bool = False  # Liger's fused GPU kernels for the families it supports (pip install -e ".[liger]")
    group_by_length: bool = False  # batches of similar length, image and text-only apart (LLaVA's group_by_modality_length)
    save_steps: int = 200
    optim: str = "adamw_torch"
    logging_steps: int = 10
    report_to: str = "auto"  # the Trainer's trackers: auto (tensorboard if installed), tensorboard, wandb, none, ...


@dataclass
class RetentionSettings:
    fraction: float = 0.0001
    min_count: int = 16
    seed: int = 0


@dataclass
class SwitchSettings:
    """Defaults from switch.defaults, which SwitchNetwork's arguments share."""
    extractor: str = SWITCH_DEFAULTS.extractor
    layer: int = SWITCH_DEFAULTS.layer
    pooling: str = SWITCH_DEFAULTS.pooling
    hidden: int = SWITCH_DEFAULTS.hidden
    epochs: int = SWITCH_DEFAULTS.epochs
    lr: float = SWITCH_DEFAULTS.lr
    # unknown-task rejection (off, as in the paper); when on, results.json reports false rejections
    reject: bool = SWITCH_DEFAULTS.reject
    # the rejection rule (switch/rejection.py): radius = reject_quantile of the retained instructions' leave-one-out
    # nearest-neighbour distances x (1 + reject_margin), at reject_layer/reject_pooling (null: the routing features')
    reject_layer: int | None = None
    reject_pooling: str | None = None
    reject_metric: str = SWITCH_DEFAULTS.reject_metric
    reject_quantile: float = SWITCH_DEFAULTS.reject_quantile
    reject_margin: float = SWITCH_DEFAULTS.reject_margin
    # calibrated rejection (reject_metric cosine): at each task's stage, up to this many of its training instructions
    # that were not retained give each retained instruction a radius of its own (the distances of those nearest to
    # it; only distances and which retained instruction is nearest are kept, in retained/<task>.calibration.json).
    # 0: off, the leave-one-out rule above
    reject_calibration: int = 0
    # further rejection views (reject_metric cosine), e.g. [[26, last]]: each gets its own radii the same way, and a
    # query is known only when it is known in every view
    reject_also: list = field(default_factory=list)


@dataclass
class EvalSettings:
    limit: int | None = None
    batch_size: int | str = 16  # or auto: the largest that fits the GPU (16 on a CPU), halved on out-of-memory
    max_new_tokens: int | None = None  # a cap on every task's own budget (None: each task's max_new_tokens)
    upper_bound_from: str | None = None  # a switchcit run of the same tasks: its adapters are the upper bounds
    upper_bound: bool = True  # false: no upper bound (no relative gain), no extra adapter trained (sweeps)


@dataclass
class PretrainSettings:
    """Optional generic pre-training of a tiny base (the analogue of LLaVA's stage 1)."""

    task: str | None = None
    examples: int = 0
    epochs: float = 1.0
    lr: float = 3e-3
    batch_size: int = 32
    train: str = "all"  # all: every weight; vision: the vision tower and projector (the language model frozen)


@dataclass
class RunConfig:
    model: str = "llava-hf/llava-1.5-7b-hf"
    dtype: str | None = None
    device_map: str | None = None
    load_in_4bit: bool = False
    trust_remote_code: bool = False
    attn_implementation: str = "auto"  # auto: flash_attention_2 where a GPU and flash-attn are, else sdpa; or as given
    method: str = "switchcit"  # a registered method (`llava-cit methods`) or a method file (my_method.py)
    method_args: dict[str, Any] = field(default_factory=dict)  # the method's own settings (e.g. strength)
    tasks: list[Any] = field(default_factory=list)
    train_limit: int | None = None
    seed: int = 0
    system_prompt: str | None = "auto"  # auto: LLaVA-1.5's vicuna_v1 for LLaVA models; vicuna_v1; none; or the text
    # auto: pad for LLaVA-1.5 processors, the processor's own for other families; pad (LLaVA-1.5: pad to a square
    # with the mean colour); crop (the processor's own preprocessing)
    image_aspect_ratio: str = "auto"
    # auto: a text model with a chat template uses it, LLaVA models LLaVA-1.5's conversation; chat_template: the
    # model's (or its processor's) chat template, also for a vision model; builtin: never the chat template
    prompt_format: str = "auto"
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
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in known:
            raise UserError(f"unknown config key '{path}' (known here: {', '.join(known)})")
        sub = _dataclass_type(known[key])
        kwargs[key] = _build(sub, value or {}, path) if sub else typed_value(value, hints[key], path)
    built = cls(**kwargs)
    for key in known:
        check = RANGES.get(f"{where}.{key}" if where else key)
        value = getattr(built, key)
        if check is not None and value is not None and not check[0](value):
            raise UserError(f"config key '{where + '.' if where else ''}{key}' = {value!r}: must be {check[1]}")
    return built


def typed_value(value: Any, annotation: Any, path: str) -> Any:
    """`value` as the declared type (YAML 1.1 reads `3e-3` as a string: such a string is a float), or a
    one-line error naming the key."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or typing.get_origin(
        annotation) is typing.Union else (annotation,)
    if value is None:
        if type(None) in options:
            return None
        raise UserError(f"config key '{path}' must not be empty ({_type_name(options)} expected)")
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is Any:
            return value
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is float and not isinstance(value, bool):
            if isinstance(value, (int, float)):
                return float(value)
            if isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    continue
                if math.isfinite(number):
                    return number
        if origin is str and isinstance(value, str):
            return value
        if origin in (list, dict) and isinstance(value, origin):
            return value
    raise UserError(f"config key '{path}' = {value!r}: expected {_type_name(options)}")


def _type_name(options) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return " or ".join(names.get(typing.get_origin(o) or o, getattr(o, "__name__", str(o))) for o in options)


RANGES: dict[str, tuple] = {
    "train.epochs": (lambda v: v > 0, "> 0"),
    "train.lr": (lambda v: v > 0, "> 0"),
    "train.batch_size": (lambda v: v >= 1, ">= 1"),
    "train.grad_accum": (lambda v: v >= 1, ">= 1"),
    "train.global_batch_size": (lambda v: v >= 1, ">= 1"),
    "train.warmup_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "train.weight_decay": (lambda v: v >= 0, ">= 0"),
    "train.gradient_checkpointing": (lambda v: v in (True, False, "auto"), "true, false or auto"),
    "train.max_grad_norm": (lambda v: v >= 0, ">= 0 (0: no clipping)"),
    "train.max_steps": (lambda v: v == -1 or v >= 1, "-1 (no limit) or >= 1"),
    "train.max_length": (lambda v: v >= 8, ">= 8"),
    "train.save_steps": (lambda v: v >= 1, ">= 1"),
    "train.logging_steps": (lambda v: v >= 1, ">= 1"),
    "lora.r": (lambda v: v >= 1, ">= 1"),
    "lora.alpha": (lambda v: v > 0, "> 0"),
    "lora.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "lora.projector_lr": (lambda v: v > 0, "> 0"),
    "lora.bias": (lambda v: v in ("none", "all", "lora_only"), "none, all or lora_only"),
    "lora.targets": (lambda v: v in ("language", "language+projector", "all"), "language, language+projector or all"),
    "lora.train_projector": (lambda v: v in (True, False, "auto", "full", "lora", "false"),
                             "auto, full, lora or false"),
    "retention.fraction": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "retention.min_count": (lambda v: v >= 1, ">= 1"),
    "switch.pooling": (lambda v: v in ("last", "mean"), "last or mean"),
    "switch.reject_pooling": (lambda v: v in ("last", "mean"), "last or mean"),
    "switch.reject_metric": (lambda v: v in ("euclidean", "cosine"), "euclidean or cosine"),
    "switch.reject_quantile": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "switch.reject_margin": (lambda v: v >= 0, ">= 0"),
    "switch.reject_calibration": (lambda v: v >= 0, ">= 0"),
    "switch.reject_also": (lambda v: all(isinstance(x, list) and len(x) == 2 and type(x[0]) is int and x[1] in ("last", "mean")
                                         for x in v), "a list of [layer, pooling] pairs, pooling last or mean"),
    "switch.hidden": (lambda v: v >= 1, ">= 1"),
    "switch.epochs": (lambda v: v >= 1, ">= 1"),
    "switch.lr": (lambda v: v > 0, "> 0"),
    "eval.limit": (lambda v: v >= 1, ">= 1"),
    "eval.batch_size": (lambda v: v == "auto" or (isinstance(v, int) and v >= 1), ">= 1 or auto"),
    "eval.max_new_tokens": (lambda v: v >= 1, ">= 1"),
    "pretrain.examples": (lambda v: v >= 0, ">= 0"),
    "pretrain.epochs": (lambda v: v > 0, "> 0"),
    "pretrain.lr": (lambda v: v > 0, "> 0"),
    "pretrain.batch_size": (lambda v: v >= 1, ">= 1"),
    "pretrain.train": (lambda v: v in ("all", "vision"), "all or vision"),
    "train_limit": (lambda v: v >= 1, ">= 1"),
    "attn_implementation": (lambda v: v in ("auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3",
                                            "flex_attention"), "auto, sdpa, eager, flash_attention_2/3 or flex_attention"),
    "image_aspect_ratio": (lambda v: v in ("auto", "pad", "crop"), "auto, pad or crop"),
    "prompt_format": (lambda v: v in ("auto", "chat_template", "builtin"), "auto, chat_template or builtin"),
    "dtype": (lambda v: v in ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"),
              "auto, float32, bfloat16 or float16"),
}


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
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError as err:  # e.g. a python tag (!!python/object), which safe_load refuses
        raise UserError(f"--set {key}: the value is not plain YAML ({getattr(err, 'problem', None) or err})") from None


def load_config(path: str | Path | None, overrides: list[str] = (), base: dict | None = None) -> RunConfig:
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(read_utf8(path)) or {}
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
    import llava_cit.tasks.registry  # noqa: F401  (loads the shipped sequences)
    from llava_cit.tasks.sequences import expand_sequences  # `tasks: [ucit]`: the sequence's tasks, in order

    config.tasks = expand_sequences(config.tasks)
    cosine_only = [key for key in ("reject_calibration", "reject_also") if getattr(config.switch, key)]
    if cosine_only and config.switch.reject_metric != "cosine":
        raise UserError(f"switch.{cosine_only[0]} needs switch.reject_metric: cosine (standardised euclidean "
                        "distances change as later tasks are added)")
    return config


def _deep_update(target: dict, source: dict) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value
