"""Export a run for vLLM's multi-LoRA serving: per task a PEFT adapter vLLM loads, the switch, a routing manifest.

    DIR/llava-cit-vllm.json        the routing manifest (MANIFEST below): base model, tasks -> adapters, switch,
                                   prompt settings, the vLLM settings the adapters need, checksums of every file
    DIR/adapters/<task>/           adapter_config.json + adapter_model.safetensors (LoRA A/B only)
    DIR/switch/                    the run's switch, as it routed the run's evaluation
    DIR/base/                      the base model, where vLLM cannot load the run's base by name (a tiny spec, a
                                   packaged or pre-trained base): written with save_pretrained

What vLLM's LoRA loader accepts (read from vllm-project/vllm: vllm/lora/peft_helper.py, lora_model.py, utils.py,
vllm/config/lora.py): `modules_to_save` must be empty and DoRA off (PEFTHelper._validate_features); the rank must not
exceed the engine's `max_lora_rank`, one of MaxLoRARanks; bias only with bias support; every tensor key must be a
`lora_A`/`lora_B` weight whose module, after the model's hf_to_vllm_mapper, ends in one of the modules vLLM can
put a LoRA on (its linear layers' names, packed ones such as `qkv_proj` expanded to `q_proj`/`k_proj`/`v_proj`).
A run whose adapters carry a fully trained per-task projector (`modules_to_save`) cannot be served that way: the
export refuses it and names the setting.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from llava_cit.serve.served_run import RunFiles
from llava_cit.util.atomic import publish_dir, staging_dir, write_json, writing
from llava_cit.util.errors import UserError

MANIFEST = "llava-cit-vllm.json"
FORMAT = "llava-cit-vllm"
FORMAT_VERSION = 1
# vllm/config/lora.py: LoRAConfig.max_lora_rank is one of these; an adapter's rank may not exceed it
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
PROJECTOR_SETTING = "lora.train_projector"


@dataclass(frozen=True)
class VllmFamily:
    """How vLLM serves one model family: the architecture it loads, the HF -> vLLM module prefixes its
    hf_to_vllm_mapper applies to LoRA names, the module names it takes a LoRA on, and which implementation
    (`model_impl`) has LoRA support for it."""

    architecture: str
    prefixes: dict[str, str]
    lora_modules: frozenset[str]
    model_impl: str  # "auto": vLLM's own class implements SupportsLoRA; "transformers": its Transformers backend
    note: str = ""


_LLAMA_MODULES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
FAMILIES = {
    # vllm/model_executor/models/llama.py: LlamaForCausalLM(SupportsLoRA); packed qkv_proj and gate_up_proj
    "LlamaForCausalLM": VllmFamily("LlamaForCausalLM", {}, _LLAMA_MODULES, "auto"),
    # vllm/model_executor/models/llava.py: hf_to_vllm_mapper maps transformers' v4.52+ names; its language model is
    # vLLM's Llama. The class implements SupportsMultiModal and SupportsPP but not SupportsLoRA in the source
    # read, so LoRA serving goes through vLLM's Transformers backend (model_impl="transformers").
    "LlavaForConditionalGeneration": VllmFamily(
        "LlavaForConditionalGeneration",
        {"model.language_model.": "language_model.model.", "model.vision_tower.": "vision_tower.",
         "model.multi_modal_projector.": "multi_modal_projector.", "lm_head.": "language_model.lm_head."},
        _LLAMA_MODULES, "transformers",
        "vLLM's own LlavaForConditionalGeneration has no LoRA support; served with model_impl='transformers'"),
}
UNSUPPORTED = {
    "BloomForCausalLM": "vLLM's BloomForCausalLM implements no LoRA support (SupportsLoRA), and BLOOM's fused "
                        "query_key_value rows are re-ordered on load",
}


def family_of(architecture: str, text_model_type: str | None = None) -> VllmFamily:
    if architecture in UNSUPPORTED:
        raise UserError(f"cannot export for vLLM: {UNSUPPORTED[architecture]}; serve this run with "
                        f"`llava-cit serve RUN` (the transformers engine)")
    family = FAMILIES.get(architecture)
    if family is None or (architecture == "LlavaForConditionalGeneration" and text_model_type not in (None, "llama")):
        known = ", ".join(FAMILIES)
        raise UserError(f"cannot export for vLLM: the base is a {architecture}"
                        f"{f' with a {text_model_type} language model' if text_model_type else ''}; the export "
                        f"knows vLLM's LoRA module names for {known} (Llama language models)")
    return family


def vllm_module(key: str, family: VllmFamily) -> tuple[str, str]:
    """(vLLM module name, 'lora_A'|'lora_B') of a PEFT tensor key, as vLLM's parse_fine_tuned_lora_name reads it:
    `base_model.model.` dropped, the family's prefixes mapped, `.lora_A.weight`/`.lora_B.weight` split off."""
    parts = key.split(".")
    if len(parts) < 3 or parts[-1] != "weight" or parts[-2] not in ("lora_A", "lora_B"):
        raise ValueError(f"{key}: not a LoRA A/B weight")
    name = ".".join(parts[:-2]).removeprefix("base_model.model.")
    for old, new in family.prefixes.items():
        if name.startswith(old):
            name = new + name[len(old):]
            break
    return name, parts[-2]


def max_lora_rank(ranks: list[int]) -> int:
    """The smallest `max_lora_rank` vLLM accepts that holds every adapter's rank."""
    highest = max(ranks)
    for allowed in VLLM_MAX_LORA_RANKS:
        if allowed >= highest:
            return allowed
    raise UserError(f"cannot export for vLLM: LoRA rank {highest} is over vLLM's largest max_lora_rank "
                    f"({VLLM_MAX_LORA_RANKS[-1]})")


def _check_config(config: dict, where: Path) -> None:
    if config.get("modules_to_save"):
        raise UserError(
            f"cannot export for vLLM: {where} trains a full per-task copy of {', '.join(config['modules_to_save'])} "
            f"(modules_to_save), which vLLM's multi-LoRA cannot serve. Train the run with `{PROJECTOR_SETTING}: false` "
            f"(projector frozen: vLLM's LoRA covers the language model only, so a projector trained as LoRA is refused "
            f"too) or serve it with `llava-cit serve`")
    if config.get("peft_type", "LORA") != "LORA":
        raise UserError(f"cannot export for vLLM: {where} is a {config['peft_type']} adapter, not LoRA")
    if config.get("use_dora"):
        raise UserError(f"cannot export for vLLM: {where} is a DoRA adapter (vLLM serves plain LoRA)")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        raise UserError(f"cannot export for vLLM: {where} trains LoRA biases (lora.bias: none is needed)")
    if config.get("layers_to_transform") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise UserError(f"cannot export for vLLM: {where} uses per-layer ranks, alphas or layers (one rank per adapter "
                        f"is needed)")


def _export_adapter(source: Path, target: Path, family: VllmFamily, base_model: str) -> dict:
    """Writes one vLLM-ready adapter; returns its summary (rank, alpha, modules)."""
    config = json.loads((source / "adapter_config.json").read_text(encoding="utf-8"))
    _check_config(config, source)
    weights = source / "adapter_model.safetensors"
    if not weights.is_file():
        raise UserError(f"cannot export for vLLM: {weights} is missing (only safetensors adapters are exported)")
    tensors, modules = {}, set()
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():
            try:
                module, _ = vllm_module(key, family)
            except ValueError:
                raise UserError(f"cannot export for vLLM: {weights} holds '{key}', which is not a LoRA A/B weight "
                                f"(a per-task module copy: train with `{PROJECTOR_SETTING}: false`)") from None
            suffix = module.rsplit(".", 1)[-1]
            if suffix not in family.lora_modules or not module.startswith(("model.", "language_model.")):
                raise UserError(f"cannot export for vLLM: {weights} puts a LoRA on '{module}'; vLLM's "
                                f"{family.architecture} takes LoRA on the language model's "
                                f"{', '.join(sorted(family.lora_modules))} (train with `{PROJECTOR_SETTING}: false` "
                                f"and lora.targets: language)")
            modules.add(suffix)
            tensors[key] = f.get_tensor(key).contiguous()
    if not tensors:
        raise UserError(f"cannot export for vLLM: {weights} holds no LoRA weights")
    ranks = {t.shape[0] for k, t in tensors.items() if ".lora_A." in k}
    if ranks != {config["r"]}:
        raise UserError(f"cannot export for vLLM: {weights} has LoRA ranks {sorted(ranks)}, its config says r={config['r']}")
    exported = {key: value for key, value in config.items() if not key.startswith("vllm_")}
    exported.update(modules_to_save=None, base_model_name_or_path=base_model, inference_mode=True)
    target.mkdir(parents=True)
    save_file(tensors, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})
    write_json(target / "adapter_config.json", dict(sorted(exported.items())))
    return {"r": config["r"], "lora_alpha": config["lora_alpha"], "use_rslora": bool(config.get("use_rslora")),
            "target_modules": sorted(modules)}


def _base_reference(files: RunFiles) -> tuple[str | None, object]:
    """(name vLLM loads the base by, or None when the export must write it; the base's transformers config)."""
    from transformers import AutoConfig

    from llava_cit.models.loading import MODEL_SPECS

    spec = files.base_model
    if files.pretrained_base or spec in MODEL_SPECS:
        return None, None
    try:
        config = AutoConfig.from_pretrained(spec, trust_remote_code=False)
    except (OSError, ValueError):
        return None, None  # a packaged or converted base (e.g. smollm2-135m, a .gguf): written out
    return (str(Path(spec).resolve()) if Path(spec).exists() else spec), config


def _write_base(files: RunFiles, target: Path) -> object:
    """The run's base as a model directory vLLM can load (save_pretrained); returns its transformers config."""
    from llava_cit.models.loading import load_model
    from llava_cit.train.pretraining import pretrained_base

    config = files.config
    loaded = pretrained_base(config) if files.pretrained_base else load_model(config.model, config.dtype, seed=config.seed)
    loaded.model.save_pretrained(target)
    loaded.processor.save_pretrained(target)
    return loaded.model.config


def _sha256_tree(root: Path) -> dict[str, str]:
    import hashlib

    sums = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        sums[str(path.relative_to(root))] = digest.hexdigest()
    return sums


def export_vllm(run_dir: str | Path, out: str | Path, force: bool = False, say=lambda text: None) -> dict:
    """Export the finished run `run_dir` into `out` (which must not exist unless `force`); returns the manifest."""
    out = Path(out)
    files = RunFiles.read(run_dir)
    if out.exists():
        if not force:
            raise UserError(f"{out} exists: choose a new folder, or --force to replace it")
        if not (out / MANIFEST).is_file():
            raise UserError(f"{out} exists and is not an export (no {MANIFEST}); not replacing it")
    for path in files.adapters.values():  # every refusal before anything is written
        _check_config(json.loads((path / "adapter_config.json").read_text(encoding="utf-8")), path)
    base_name, base_config = _base_reference(files)
    staging = staging_dir(out)
    try:
        with writing(out):
            manifest = _write_export(files, staging, out, base_name, base_config, say)
        if out.exists():  # --force on an earlier export: replaced only once the new one is complete
            shutil.rmtree(out)
        publish_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_export(files: RunFiles, staging: Path, out: Path, base_name: str | None, base_config, say) -> dict:
    if base_name is None:
        say(f"writing the base model ({files.base_model}) into {out / 'base'}: vLLM loads model directories")
        base_config = _write_base(files, staging / "base")
        base_name = "base"
    architecture = (getattr(base_config, "architectures", None) or [type(base_config).__name__])[0]
    text_config = getattr(base_config, "text_config", None)
    family = family_of(architecture, getattr(text_config, "model_type", None) if text_config is not None else None)
    summaries = {}
    for name, path in files.adapters.items():
        say(f"adapter '{name}' -> {out / 'adapters' / name}")
        summaries[name] = _export_adapter(path, staging / "adapters" / name, family, base_name)
    if files.switch is not None:
        shutil.copytree(files.switch, staging / "switch")
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION,
        "run": files.run_dir.resolve().name, "source_run": str(files.run_dir.resolve()), "method": files.method,
        "base_model": base_name, "architecture": architecture, "tasks": files.tasks,
        "routes": files.serves, "adapters": {name: f"adapters/{name}" for name in files.adapters},
        "adapter_settings": summaries, "switch": "switch" if files.switch is not None else None,
        "switch_labels": files.switch_labels,
        "fixed": None if files.switch is not None else next(iter(files.serves)),
        "prompt": files.prompt,
        "vllm": {"model_impl": family.model_impl, "max_lora_rank": max_lora_rank([s["r"] for s in summaries.values()]),
                 "max_loras": len(summaries), "enable_lora": True, "note": family.note},
        "source_checksums": files.checksums,
        "checksums": _sha256_tree(staging),
    }
    write_json(staging / MANIFEST, manifest)
    return manifest


def read_export(export_dir: str | Path) -> dict:
    """The routing manifest of an export, its files checked against the checksums it records."""
    export_dir = Path(export_dir)
    path = export_dir / MANIFEST
    if not path.is_file():
        raise UserError(f"{export_dir}: not a vLLM export of a run (no {MANIFEST}); make one with "
                        f"`llava-cit export RUN --format vllm --out DIR`")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise UserError(f"{path}: not a {FORMAT} manifest of version {FORMAT_VERSION}")
    actual = _sha256_tree(export_dir)
    if actual != manifest["checksums"]:
        changed = sorted(set(actual.items()) ^ set(manifest["checksums"].items()))
        raise UserError(f"{path}: the export's files changed since it was written ({changed[0][0]}, ...): export again")
    return manifest
