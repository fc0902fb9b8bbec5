"""Switch fitting: after each stage of a routed method (from stage 1), the switch is fitted on every retained
instruction of the tasks seen so far and saved under switch/stage-NN. `switch.extractor` may name a packaged
model (`smollm2-135m`) or a .gguf file, as `model:` can. With `switch.reject_calibration`, each task's stage also
keeps, beside its retained instructions, the distances of up to that many of its other training instructions to
the nearest of them, and which one that is (retained/<task>.calibration.json; in every rejection view, with
`switch.reject_also`): the retained instructions' own rejection radii at every later stage.

The extractor is loaded once per run and shared by every stage's calibration and fit and by the task similarity
that some methods measure (a pretrained model is the same at every stage); the tiny random one builds its
vocabulary from the texts it first sees, so each switch gets a fresh one."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from llava_cit.config import RunConfig
from llava_cit.data.example import Example
from llava_cit.models.packaged import resolve_model_spec
from llava_cit.tasks.spec import TaskSpec
from llava_cit.train.distributed import Processes
from llava_cit.util.atomic import write_json, writing
from switch import FeatureExtractor, SwitchNetwork
from switch.extractor import TINY_EXTRACTOR
from switch.retention import read_jsonl


def switch_folder(stage: int) -> str:
    return f"switch/stage-{stage:02d}"


class SwitchFitting:
    def __init__(self, config: RunConfig, run_dir: Path, tasks: list[TaskSpec], router: str, say=lambda text: None,
                 procs: Processes | None = None):
        self.config, self.run_dir, self.tasks, self.router, self.say = config, Path(run_dir), tasks, router, say
        self.procs = procs or Processes()
        self._shared: FeatureExtractor | None = None  # the pretrained extractor, once loaded
        self.features_extractor: FeatureExtractor | None = None  # what instruction_features reads with

    def extractor(self) -> str | FeatureExtractor:
        """The switch's extractor: the run's one pretrained model, or the tiny random one's name (built afresh)."""
        s = self.config.switch
        if s.extractor == TINY_EXTRACTOR:
            return TINY_EXTRACTOR
        if self._shared is None:
            self._shared = FeatureExtractor(resolve_model_spec(s.extractor, self.say), layer=s.layer,
                                            pooling=s.pooling, seed=self.config.seed)
        return self._shared

    def new_switch(self) -> SwitchNetwork:
        s = self.config.switch
        return SwitchNetwork(self.extractor(), hidden=s.hidden, layer=s.layer, pooling=s.pooling,
                             epochs=s.epochs, lr=s.lr, reject=s.reject, seed=self.config.seed, router=self.router,
                             margin=s.reject_margin, reject_quantile=s.reject_quantile, reject_layer=s.reject_layer,
                             reject_pooling=s.reject_pooling, reject_metric=s.reject_metric, reject_also=s.reject_also)

    def instruction_features(self, texts: list[str]) -> torch.Tensor:
        """Features of instructions from the switch's extractor (task similarity, for methods that ask)."""
        if self.features_extractor is None:  # the tiny one keeps the vocabulary of the texts it first saw
            s, shared = self.config.switch, self.extractor()
            self.features_extractor = (shared if isinstance(shared, FeatureExtractor)
                                       else FeatureExtractor(shared, layer=s.layer, pooling=s.pooling,
                                                             seed=self.config.seed))
        return self.features_extractor(texts)

    # -- calibrated rejection --------------------------------------------------------------
    def _calibration_view(self, switch: SwitchNetwork) -> dict:
        """What a task's calibration distances were measured in: a later stage uses them only in the same view."""
        layer, pooling = switch.views[1]
        view = {"extractor": self.config.switch.extractor, "layer": layer, "pooling": pooling, "metric": switch.reject_metric}
        return {**view, "also": [list(v) for v in switch.reject_also]} if switch.reject_also else view

    def calibrate(self, stage: int, task: TaskSpec, kept: list[Example], train: list[Example]) -> None:
        """With `switch.reject_calibration` (rank 0): distances of up to that many of the task's training
        instructions that were not retained to the nearest retained one, and its position in the retained file;
        only these numbers are kept."""
        s = self.config.switch
        if not (s.reject and s.reject_calibration):
            return
        self.procs.on_main(lambda: self._write_calibration(stage, task, kept, train))

    def _write_calibration(self, stage: int, task: TaskSpec, kept: list[Example], train: list[Example]) -> None:
        path = self.run_dir / "retained" / f"{task.name}.calibration.json"
        retained_ids = {ex.id for ex in kept}
        others = [ex for ex in train if ex.id not in retained_ids]
        rng = random.Random(self.config.retention.seed + stage)
        others = rng.sample(others, min(len(others), self.config.switch.reject_calibration))
        switch = self.new_switch()
        pairs, *also = switch.calibration_distances_by_view(
            [ex.instruction for ex in kept], [ex.instruction for ex in others], [ex.input for ex in kept],
            [ex.input for ex in others])
        found = {"task": task.name, "view": self._calibration_view(switch), "instructions": len(pairs),
                 "distances": [d for d, _ in pairs], "nearest": [i for _, i in pairs]}
        if also:  # the further views', in reject_also's order
            found["also"] = [{"distances": [d for d, _ in p], "nearest": [i for _, i in p]} for p in also]
        write_json(path, found)
        self.say(f"stage {stage} ({task.name}): rejection radii calibrated on {len(pairs)} training instructions "
                 "that were not retained")

    def _calibration(self, switch: SwitchNetwork, stage: int) -> dict[str, list] | None:
        """task -> its calibration pairs (one list per rejection view with `reject_also`), for the tasks seen so far
        whose distances were measured in the switch's views."""
        if not (self.config.switch.reject and self.config.switch.reject_calibration):
            return None
        calibration, view = {}, self._calibration_view(switch)
        for t in self.tasks[: stage + 1]:
            path = self.run_dir / "retained" / f"{t.name}.calibration.json"
            if not path.is_file():
                continue
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("view") != view:
                self.say(f"stage {stage}: {path.name} was measured in {saved.get('view')}, not {view}: "
                         f"{t.name} keeps the leave-one-out radius")
                continue
            pairs = list(zip(saved["distances"], saved["nearest"]))
            also = [list(zip(v["distances"], v["nearest"])) for v in saved.get("also", [])]
            calibration[t.name] = [pairs, *also] if switch.reject_also else pairs
        return calibration or None

    # -- the switch ------------------------------------------------------------------------
    def fit(self, stage: int) -> SwitchNetwork:
        """Rank 0 fits and saves the switch; the other ranks of a multi-process run load what it saved."""
        switch = self.procs.on_main(lambda: self._fit_and_save(stage))
        return switch if switch is not None else SwitchNetwork.load(self.run_dir / switch_folder(stage))

    def _fit_and_save(self, stage: int) -> SwitchNetwork:
        s = self.config.switch
        rows = [row for t in self.tasks[: stage + 1] for row in read_jsonl(self.run_dir / "retained" / f"{t.name}.jsonl")]
        switch = self.new_switch()
        switch.fit([r["instruction"] for r in rows], [r["task"] for r in rows], [r["input"] for r in rows],
                   calibration=self._calibration(switch, stage))
        with writing(self.run_dir / switch_folder(stage)):
            switch.save(self.run_dir / switch_folder(stage))
        rejection = "off" if not s.reject else "on, calibrated" if switch.rejection.calibrated else "on"
        self.say(f"stage {stage}: switch fitted on {len(rows)} retained instructions "
                 f"({switch.parameter_count} parameters, rejection {rejection})")
        return switch
