"""The switch's defaults, in one place: SwitchNetwork's arguments and a run config's `switch:` section
(llava_cit.config.SwitchSettings) both take theirs from `SWITCH_DEFAULTS`.

Rejection is off and the classifier trains 200 epochs: what the run configs and the README document (SwitchCIT's
switch has no rejection; turn it on with `reject=True` / `switch.reject: true`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SwitchDefaults:
    extractor: str = "facebook/opt-125m"
    layer: int = -1  # hidden-state layer of the routing features (0 = the embeddings)
    pooling: str = "last"
    hidden: int = 200  # the classifier's hidden width (~154K parameters for 5 tasks at 768-d features)
    epochs: int = 200
    lr: float = 1e-3
    reject: bool = False
    reject_metric: str = "euclidean"
    reject_quantile: float = 0.95
    reject_margin: float = 0.1


SWITCH_DEFAULTS = SwitchDefaults()
