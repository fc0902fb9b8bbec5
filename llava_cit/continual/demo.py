"""`llava-cit demo`: the whole SwitchCIT story on a tiny model, offline, on a CPU, in minutes.

`--track vision`: a tiny LLaVA (built from configs) is pre-trained briefly on synthetic captions
(cached), then learns two synthetic tasks in sequence (visual reasoning, then text reading).
`--track text`: a tiny BLOOM is pre-trained briefly to copy text (cached), then learns three
generated text tasks with CT0 prompt families (Simp, InqQG, HGen in miniature).
`--track smollm2`: the same three tasks on the real pretrained SmolLM2-135M-Instruct (packaged, offline),
with its chat template.
`--track smollm2-llava`: the vision sequence on a LLaVA whose language model is SmolLM2-135M-Instruct (its CLIP
tower and projector built from config and pre-trained on captions under the frozen LM; ChatML prompts).
`--sequence ucit-mini` (track `sequence`; also coin-mini, mllm-dcl-mini): the CPU miniature of a task sequence, tiny
synthetic tasks of the sequence's kinds (caption, grounding, multiple choice, short-answer VQA, ...) each scored by its
benchmark's metric, on a tiny LLaVA with the miniatures' words (`tiny-llava-seq`).
`--model tiny-qwen2.5-vl` (or another tiny family, llava_cit.models.tiny_vlm): the vision track on that family,
prompted through its chat template, pre-trained the same way.
Every track's switch reads the pretrained SmolLM2-135M-Instruct (installed, or fetched from PyPI once: models/
packaged.py). Each track runs seq-lora, rehearsal and switchcit. Stage 0 is identical for every method, so it is
trained once and shared. Every number printed is measured in this run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from llava_cit.config import load_config
from llava_cit.continual.manifest import MANIFEST
from llava_cit.continual.runner import ContinualRunner, Progress
from llava_cit.methods.base import Method
from llava_cit.methods.registry import get_method
from llava_cit.methods.settings import own_settings
from llava_cit.models.packaged import resolve_model_spec
from llava_cit.util.atomic import write_json
from llava_cit.util.errors import UserError

DEMO_METHODS = ("switchcit", "seq-lora", "rehearsal")
DEMO_TRACKS = ("vision", "text", "smollm2", "smollm2-llava")
SEQUENCE_TRACK = "sequence"  # the task sequences' miniatures (`--sequence ucit-mini`): scripts/configs/demo/sequence.yaml
# each track's settings: a run config in YAML (scripts/configs/demo/<track>.yaml), plus `tiny_switch_fallback`: the
# tiny tracks' switch settings before SmolLM2 became their extractor, used with a warning where SmolLM2 can be neither
# found nor fetched (the SmolLM2 tracks have none: their model is SmolLM2)
PRESETS = Path(__file__).resolve().parents[2] / "scripts" / "configs" / "demo"


def _preset_file(track: str) -> dict:
    if track not in (*DEMO_TRACKS, SEQUENCE_TRACK):
        raise UserError(f"unknown demo track '{track}' (known: {', '.join(DEMO_TRACKS)})")  # `sequence`: --sequence
    path = PRESETS / f"{track}.yaml"
    if not path.is_file():
        raise UserError(f"demo preset not found: {path} (the presets ship with the repository: install it with "
                        "pip install -e .)")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def demo_preset(track: str) -> dict:
    """The track's run config (a fresh mapping each call; `--set` overrides apply on top)."""
    preset = _preset_file(track)
    preset.pop("tiny_switch_fallback", None)
    return preset


def sequence_overrides(sequence: str) -> list[str]:
    """`--sequence NAME`: the overrides that make the `sequence` track learn that miniature."""
    from llava_cit.tasks.sequences import SEQUENCES

    minis = [name for name in SEQUENCES.names() if SEQUENCES.get(name).data is None]
    if sequence not in minis:
        hint = " (the full sequence trains with `llava-cit train`, `tasks: [" + sequence + "]`)" \
            if sequence in SEQUENCES else ""
        raise UserError(f"unknown demo sequence '{sequence}' (known: {', '.join(minis)}){hint}")
    return [f"tasks=[{sequence}]"]


def tiny_switch_fallback(track: str) -> list[str] | None:
    return _preset_file(track).get("tiny_switch_fallback")


def switch_fallback(track: str, overrides: list[str], say=print) -> list[str]:
    """The track's overrides, with the tiny switch settings first when the default extractor cannot be had here."""
    fallback = tiny_switch_fallback(track)
    if not fallback or any(o.replace(" ", "").startswith("switch.extractor=") for o in overrides):
        return list(overrides)
    try:
        resolve_model_spec(demo_preset(track)["switch"]["extractor"], say)
        return list(overrides)
    except UserError as err:
        say(f"warning: {err}. The switch falls back to the random tiny extractor ({' '.join(fallback)}); "
            "its scores differ from the README's")
        return [*fallback, *overrides]


# the vision track on a tiny image-text-to-text family: prompts through its chat template are longer than
# tiny-llava's (a default system turn, the family's image markers)
FAMILY_OVERRIDES = ["train.max_length=192"]


def model_overrides(track: str, model: str | None) -> list[str]:
    """`--model`: the vision track's settings on another model (a one-line error on another track)."""
    if model is None:
        return []
    if track != "vision":
        raise UserError(f"--model runs the vision track on another model; --track {track} has its own model")
    from llava_cit.models.loading import MODEL_SPECS
    from llava_cit.models.tiny_vlm import TINY_FAMILIES

    if model in MODEL_SPECS and model not in TINY_FAMILIES and model != "tiny-llava":
        raise UserError(f"--model {model}: not a vision model (tiny families: {', '.join(TINY_FAMILIES)})")
    return [f"model={model}", *FAMILY_OVERRIDES]


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
        preset = demo_preset(track)  # its method_args (rehearsal's replay) go to the methods that have them
        preset["method_args"] = own_settings(get_method(method).settings_type, preset.get("method_args") or {})
        config = load_config(None, [*overrides, f"method={method}", *extra], base=preset)
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


TEXT_TRACKS = ("text", "smollm2")  # a language model alone: no projector


def all_methods(track: str = "vision") -> tuple[list[str], list[str]]:
    """(every registered method once, aliases left out, that runs on `track`; those that cannot: a projector's
    methods on a text track), for `llava-cit demo --method all`."""
    from llava_cit.methods.registry import known_methods

    methods = [method for name, method in known_methods() if name == method.name]
    text = track in TEXT_TRACKS
    return ([m.name for m in methods if not (text and m.vision_only)],
            [m.name for m in methods if text and m.vision_only])


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
