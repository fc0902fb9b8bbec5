"""MAS: seq-lora pulled towards earlier stages' parameters in proportion to how much the model's output moves
with them: |d ||f(x)||^2 / d theta| on the task's retained examples, with f(x) the logits at the answer's
positions (no labels needed), averaged one example at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_cit.data.collation import IGNORE_INDEX
from llava_cit.methods.registry import register
from llava_cit.methods.regularization import ImportanceRegularized, batches, gradients_over


def output_norm(model, batch):
    labels = batch.pop("labels")
    logits = model(**batch).logits
    positions = labels[:, 1:] != IGNORE_INDEX  # the logits that predict the answer's tokens
    return (logits[:, :-1][positions].float() ** 2).sum(-1).mean()


@dataclass(frozen=True)
class MAS(ImportanceRegularized):
    def importance(self, ctx, model, params, hooks):
        return gradients_over(model, params, batches(ctx, ctx.retained()), output_norm, squared=False)


register(MAS("mas",
            description="seq-lora + memory-aware synapses (output-sensitivity importance on the retained examples)",
            paper="Aljundi et al. 2018, Memory Aware Synapses (ECCV)"))
