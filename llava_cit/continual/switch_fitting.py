"""Switch fitting for the runner: after each stage of a routed method, the switch is fitted on every retained
instruction of the tasks seen so far and saved under switch/stage-NN. `switch.extractor` may name a packaged
model (`smollm2-135m`) or a .gguf file, as `model:` can."""

from __future__ import annotations

import torch

from llava_cit.models.packaged import resolve_model_spec
from switch import SwitchNetwork
from switch.retention import read_jsonl


class SwitchFitting:
    """Mixed into ContinualRunner."""

    def _fit_switch(self, stage: int) -> SwitchNetwork:
        """Rank 0 fits and saves the switch; the other ranks of a multi-process run load what it saved."""
        switch = self.procs.on_main(lambda: self._fit_and_save_switch(stage))
        return switch if switch is not None else SwitchNetwork.load(self.run_dir / "switch" / f"stage-{stage:02d}")

    def _fit_and_save_switch(self, stage: int) -> SwitchNetwork:
        s = self.config.switch
        rows = [row for t in self.tasks[: stage + 1] for row in read_jsonl(self.run_dir / "retained" / f"{t.name}.jsonl")]
        switch = SwitchNetwork(resolve_model_spec(s.extractor, self.say), hidden=s.hidden, layer=s.layer, pooling=s.pooling,
                               epochs=s.epochs, lr=s.lr, reject=s.reject, seed=self.config.seed, router=self.method.router,
                               margin=s.reject_margin, reject_quantile=s.reject_quantile, reject_layer=s.reject_layer,
                               reject_pooling=s.reject_pooling, reject_metric=s.reject_metric)
        switch.fit([r["instruction"] for r in rows], [r["task"] for r in rows], [r["input"] for r in rows])
        switch.save(self.run_dir / "switch" / f"stage-{stage:02d}")
        self.say(f"stage {stage}: switch fitted on {len(rows)} retained instructions "
                 f"({switch.parameter_count} parameters, rejection {'on' if s.reject else 'off'})")
        return switch

    def _instruction_features(self, texts: list[str]) -> torch.Tensor:
        """Features of instructions from the switch's extractor (task similarity, for methods that ask)."""
        from switch import FeatureExtractor

        if getattr(self, "_extractor", None) is None:
            s = self.config.switch
            self._extractor = FeatureExtractor(resolve_model_spec(s.extractor, self.say), layer=s.layer, pooling=s.pooling,
                                               seed=self.config.seed)
        return self._extractor(texts)

