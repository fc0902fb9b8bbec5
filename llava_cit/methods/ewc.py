"""EWC: seq-lora pulled towards earlier stages' parameters in proportion to their diagonal Fisher information,
estimated after each stage from that task's retained examples:

    F_k = 1/N sum_n ( d/d theta_k  log p(y_n | x_n) )^2,   log p(y | x) = sum over the answer's tokens of log p(y_t | x, y_<t)

one example at a time: the gradient of the example's whole answer log-likelihood (the sum over its tokens, not their
mean: the mean's gradient squared is ~1/L^2 of the sequence's Fisher, with the tokens' gradients cancelling). By
default y_n is the example's own answer (the empirical Fisher); `method_args.fisher: true` samples y_n from the model
instead (the Fisher itself, as Kirkpatrick et al.: the last turn's answer drawn token by token at temperature 1, for at
most as many tokens as the data's answer, stopping at the end-of-sequence token; earlier turns are context).
Online accumulation over stages (llava_cit.methods.regularization).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llava_cit.data.collation import IGNORE_INDEX
from llava_cit.methods.registry import register
from llava_cit.methods.regularization import ImportanceRegularized, RegularizerSettings, batches, gradients_over
from llava_cit.methods.settings import setting


@dataclass(frozen=True)
class EWCSettings(RegularizerSettings):
    strength: float = setting(5000.0, "λ: the pull towards the earlier stages' parameters", at_least=0)
    fisher: bool = setting(False, "sample the answers from the model (the Fisher, as Kirkpatrick et al.) instead of "
                                  "using the data's (the empirical Fisher)")


def answer_log_likelihood(model, batch: dict) -> torch.Tensor:
    """log p(answer | prompt): the sum over the labelled tokens of their log-probabilities (labels shifted as the
    model's own loss shifts them)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits[:, :-1].float()
    targets = batch["labels"][:, 1:].to(logits.device)
    mask = targets != IGNORE_INDEX
    log_probs = torch.log_softmax(logits[mask], dim=-1)
    return log_probs.gather(1, targets[mask].unsqueeze(1)).sum()


def _last_answer(labels: torch.Tensor) -> tuple[int, int] | None:
    """[start, end) of the last run of labelled positions of a one-example batch's labels."""
    labelled = (labels[0] != IGNORE_INDEX).nonzero().flatten().tolist()
    if not labelled:
        return None
    end = start = labelled[-1]
    while start - 1 in labelled:
        start -= 1
    return start, end + 1


@torch.no_grad()
def sample_answer(model, batch: dict, eos_token_id: int | None, generator: torch.Generator) -> dict:
    """`batch` (one example) with its last answer replaced by one drawn from the model, token by token at
    temperature 1, for at most as many tokens as the data's answer (stopping after `eos_token_id`); only the drawn
    tokens are labelled."""
    span = _last_answer(batch["labels"])
    if span is None:
        return batch
    start, end = span
    extras = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "labels")}
    ids = batch["input_ids"][:, :start]
    for _ in range(end - start):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **extras).logits[:, -1].float()
        token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
        ids = torch.cat([ids, token.to(ids.dtype)], dim=1)
        if eos_token_id is not None and int(token) == eos_token_id:
            break
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, start:] = ids[:, start:]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, **extras}


def fisher_diagonal(model, params: dict[str, torch.nn.Parameter], examples, sample: bool = False,
                    eos_token_id: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """The diagonal Fisher of `params` over `examples` (one-example batches): the mean of the squared gradient of
    each example's answer log-likelihood, the answer the data's (empirical) or drawn from the model (`sample`; the
    n-th example's draw seeded from (seed, n))."""
    drawn = [0]

    def objective(model, batch):
        if sample:
            device = batch["input_ids"].device
            generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + drawn[0])
            drawn[0] += 1
            batch = sample_answer(model, batch, eos_token_id, generator)
        return answer_log_likelihood(model, batch)

    return gradients_over(model, params, examples, objective, squared=True)


@dataclass(frozen=True)
class EWC(ImportanceRegularized):
    settings_type: type = EWCSettings

    def importance(self, ctx, model, params, hooks):
        return fisher_diagonal(model, params, batches(ctx, ctx.retained()), sample=ctx.settings.fisher,
                               eos_token_id=ctx.encoder.tokenizer.eos_token_id, seed=ctx.stage)


register(EWC("ewc",
            description="seq-lora + elastic weight consolidation (diagonal Fisher of each retained example's answer "
                        "log-likelihood)",
            paper="Kirkpatrick et al. 2017, Overcoming catastrophic forgetting in neural networks (PNAS)"))
