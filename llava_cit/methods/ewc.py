"""EWC: seq-lora pulled towards earlier stages' parameters in proportion to their diagonal Fisher information,
estimated after each stage from that task's retained examples (the squared gradient of the answer's
log-likelihood, one example at a time). Online accumulation over stages (llava_cit.methods.regularization).
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_cit.methods.registry import register
from llava_cit.methods.regularization import ImportanceRegularized, RegularizerSettings, gradients_over
from llava_cit.methods.settings import setting


@dataclass(frozen=True)
class EWCSettings(RegularizerSettings):
    strength: float = setting(5000.0, "λ: the pull towards the earlier stages' parameters", at_least=0)


def answer_loss(model, batch):
    return model(**batch).loss


@dataclass(frozen=True)
class EWC(ImportanceRegularized):
    settings_type: type = EWCSettings

    def importance(self, ctx, model, params, hooks):
        return gradients_over(ctx, model, params, ctx.retained(), answer_loss, squared=True)


register(EWC("ewc",
            description="seq-lora + elastic weight consolidation (diagonal Fisher from the retained examples)",
            paper="Kirkpatrick et al. 2017, Overcoming catastrophic forgetting in neural networks (PNAS)"))
