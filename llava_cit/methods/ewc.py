"""EWC: seq-lora pulled towards earlier stages' parameters in proportion to their diagonal Fisher information,
estimated after each stage from that task's retained examples (the squared gradient of the answer's
log-likelihood, one example at a time). Online accumulation over stages (llava_cit.methods.regularization).
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_cit.methods.registry import register
from llava_cit.methods.regularization import ImportanceRegularized, gradients_over


def answer_loss(model, batch):
    return model(**batch).loss


@dataclass(frozen=True)
class EWC(ImportanceRegularized):
    def importance(self, ctx, model, params):
        return gradients_over(ctx, model, params, ctx.retained(), answer_loss, squared=True)


register(EWC("ewc", default_strength=5000.0,
             description="seq-lora + elastic weight consolidation (diagonal Fisher from the retained examples)",
             paper="Kirkpatrick et al. 2017, Overcoming catastrophic forgetting in neural networks (PNAS)"))
