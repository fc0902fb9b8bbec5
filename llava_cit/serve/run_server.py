"""Serve a run directory, or a bare model, as a RoutedModel (llava_cit.serve.routed_model).

A run is served as its manifest records it (the `serving` section: routing, task -> adapter folder, switch, prompt;
llava_cit.serve.serving_plan); a run written before that section existed, as its results.json and prompt.json say.
Every path read must stay inside the run directory, and every artifact served has the checksums manifest.json
recorded for it (`checksums`: those computed as it was loaded; an adapter loaded lazily, on a route's first use, is
refused if its files changed since). The run's own `trust_remote_code` is honoured only when the caller passes
`trust_remote_code=True`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from llava_cit.config import load_config
from llava_cit.continual.manifest import Manifest, inside_run
from llava_cit.continual.results import check_against_manifest
from llava_cit.continual.run_directory import read_run_config
from llava_cit.data.prompt_settings import PromptSettings
from llava_cit.models.loading import LoadedModel, load_model
from llava_cit.serve.loaded_adapters import LoadedAdapters
from llava_cit.serve.routed_model import RoutedModel
from llava_cit.serve.serving_plan import ServingPlan
from llava_cit.train.pretraining import pretrained_base
from llava_cit.util.errors import UserError
from switch import SwitchNetwork


def _on_device(loaded: LoadedModel) -> None:
    """A served model goes to the GPU when there is one (a 4-bit model is placed as it loads)."""
    if torch.cuda.is_available() and loaded.model.device.type == "cpu" and not getattr(
            loaded.model, "is_loaded_in_4bit", False):
        loaded.model.to("cuda")


def bare_server(spec: str, dtype: str | None = None, load_in_4bit: bool = False, trust_remote_code: bool = False,
                system_prompt: str | None = "auto", image_aspect_ratio: str = "auto") -> RoutedModel:
    """A model without adapters or tasks: every query is answered by it, with the caller's budget. `auto` aspect
    ratio: pad for a LLaVA-1.5 model (as a run resolves it), the processor's own otherwise."""
    from llava_cit.data.image_preprocessing import resolve_aspect_ratio
    from llava_cit.models.family import is_llava_model, resolve_system_prompt

    loaded = load_model(spec, dtype, load_in_4bit=load_in_4bit, trust_remote_code=trust_remote_code)
    _on_device(loaded)
    loaded.model.eval()
    aspect = resolve_aspect_ratio(image_aspect_ratio, llava_processor=not loaded.is_vision or is_llava_model(spec))
    prompt = PromptSettings(resolve_system_prompt(system_prompt, loaded.is_vision, spec), aspect)
    return RoutedModel(loaded, prompt, {}, routed=False)


def _file_states(path: Path) -> dict[str, tuple[int, int, int]]:
    """(size, mtime, inode) of every file under `path`: a file rewritten or replaced since changes them."""
    states = {}
    for file in (p for p in sorted(path.rglob("*")) if p.is_file()):
        stat = file.stat()
        states[str(file)] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    return states


def legacy_plan(run_dir: Path, manifest: Manifest) -> ServingPlan:
    """The serving plan of a run written before manifest.json had one: from results.json (checked against the
    manifest's finished stages) and prompt.json."""
    from llava_cit.methods.registry import get_method

    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise UserError(f"{run_dir}: not a finished run directory (no results.json)")
    inside_run(run_dir, results_path.name, f"{results_path} (a link)")
    results = json.loads(results_path.read_text(encoding="utf-8"))
    adapters: dict[str, str] = results["adapters"]
    for name, rel in adapters.items():
        inside_run(run_dir, rel, f"adapter path of '{name}' in {results_path}")
    check_against_manifest(results, manifest.stages, results_path)  # so every path served is one the manifest lists
    method = results.get("method_plan") or vars(get_method(results["method"]))  # runs written before "method_plan"
    tasks = results["tasks"]
    if method["routes"]:
        serving = {t: (results.get("serving") or adapters).get(t, adapters[t]) for t in tasks}
    else:  # one adapter (or model) carried through the sequence: its final state serves everything
        serving = {t: adapters[tasks[-1]] for t in tasks}
    stored = PromptSettings.load(run_dir)
    return ServingPlan(results["method"], "switch" if method["routes"] else "one-model",
                       "full" if method["full_finetune"] else "lora", tasks, adapters, serving, results.get("switch"),
                       vars(stored) if stored is not None else {})


class RunServer(RoutedModel):
    """A run directory served: its base, its adapters and (routed methods) its switch; `adapter`: every query
    through that task's own stage adapter instead."""

    def __init__(self, run_dir: str | Path, adapter: str | None = None, trust_remote_code: bool = False,
                 lazy_adapters: bool = False):
        run_dir = Path(run_dir)
        manifest = Manifest(run_dir)
        plan = ServingPlan.from_dict(manifest.serving, str(manifest.path)) if manifest.serving is not None \
            else legacy_plan(run_dir, manifest)
        where = manifest.path if manifest.serving is not None else run_dir / "results.json"
        for what, rel in plan.paths():
            inside_run(run_dir, rel, f"{what} in {where}")
        config = load_config(None, base=read_run_config(run_dir / "config.yaml"))
        config.trust_remote_code = bool(config.trust_remote_code and trust_remote_code)
        self.run_dir, self.method, self.plan, self.config = run_dir, plan.method, plan, config
        self.checksums: dict[str, dict] = {}  # artifact -> {file: sha256} of the files served, hashed as loaded

        def verified(rel: str, what: str) -> Path:  # checked against the manifest before anything loads it
            self.checksums[rel] = manifest.verify_artifact(rel, f"{what} in {where}")
            return inside_run(run_dir, rel, what)

        last = plan.tasks[-1]
        if plan.learner == "full":  # full-sft: the last stage's whole model serves every query
            if adapter is not None and adapter != last:
                raise UserError(f"{run_dir} is a full-sft run: it serves the model of its last stage ('{last}'), "
                                f"there is no separate '{adapter}' to choose")
            loaded = load_model(str(verified(plan.adapters[last], f"model path of '{last}'")), config.dtype,
                                config.device_map)
            self._serve(loaded, plan, config, plan.serving, None, None, last, False)
            return
        switch, fixed, routed, serving = None, None, plan.routed, plan.serving
        if adapter is not None:
            if adapter not in plan.adapters:
                raise UserError(f"{run_dir} has no adapter for task '{adapter}' (it has: {', '.join(plan.adapters)})")
            serving, fixed, routed = {adapter: plan.adapters[adapter]}, adapter, True
        elif plan.routed and plan.switch:
            switch = SwitchNetwork.load(verified(plan.switch, "switch path"), labels=plan.tasks, verify_checksums=False)
        else:  # one task learned (no switch needed), or one model for every task
            fixed = plan.unswitched_task
        paths = {rel: verified(rel, f"adapter path of '{task}'") for task, rel in serving.items()}
        states = {rel: _file_states(path) for rel, path in paths.items()}

        def before_load(rel: str) -> Path:  # a lazy adapter loads long after it was verified
            if _file_states(paths[rel]) != states[rel]:
                raise UserError(f"{paths[rel]} changed after it was verified against {manifest.path}: rerun to "
                                f"verify it again")
            return paths[rel]

        loaded = pretrained_base(config) if config.pretrain.task else load_model(
            config.model, config.dtype, config.device_map, config.load_in_4bit, config.trust_remote_code, config.seed,
            config.attn_implementation)
        adapters = LoadedAdapters(loaded.model, run_dir, before_load)
        self._serve(loaded, plan, config, serving, adapters, switch, fixed, routed)
        self.ensure_loaded([fixed if fixed is not None else next(iter(serving))])  # the others: now, or on first use
        if not lazy_adapters:
            self.ensure_loaded(serving)
        _on_device(loaded)
        self.model.eval()

    def _serve(self, loaded, plan: ServingPlan, config, serving, adapters, switch, fixed, routed) -> None:
        prompt = PromptSettings(**plan.prompt) if plan.prompt else PromptSettings.from_config(config, loaded.is_vision, {})
        super().__init__(loaded, prompt, serving, adapters, switch, fixed, routed)
        if adapters is None:
            _on_device(loaded)
            loaded.model.eval()
