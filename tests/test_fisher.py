"""EWC's Fisher against the analytic Fisher of a toy softmax model: per example, the squared gradient of the whole
answer's log-likelihood (the sum over its tokens), the mean over examples; empirical (the data's answers) or sampled
from the model (method_args.fisher: true, Kirkpatrick et al.)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from llava_cit.data.collation import IGNORE_INDEX
from llava_cit.methods.ewc import answer_log_likelihood, fisher_diagonal, sample_answer

V, D = 5, 3


class Bigram(torch.nn.Module):
    """A causal 'LM' whose next-token distribution depends on the current token only: p(. | x) = softmax(W h_x)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.h = torch.randn(V, D)  # fixed token features
        self.W = torch.nn.Parameter(torch.randn(V, D))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.h[input_ids] @ self.W.T)

    def probs(self, token: int) -> torch.Tensor:
        return torch.softmax(self.W.detach() @ self.h[token], 0)


def batch(tokens: list[int], prompt: int) -> dict:
    ids = torch.tensor([tokens])
    labels = ids.clone()
    labels[:, :prompt] = IGNORE_INDEX
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def score(model: Bigram, previous: int, answer: int) -> torch.Tensor:
    """d log p(answer | previous) / dW = (e_answer - p) h_previous^T."""
    return torch.outer(torch.nn.functional.one_hot(torch.tensor(answer), V).float() - model.probs(previous),
                       model.h[previous])


def test_empirical_fisher_is_the_mean_squared_score_of_the_whole_answer():
    model = Bigram()
    examples = [[0, 3, 1], [2, 4, 4], [1, 0, 2]]  # one prompt token, a two-token answer
    fisher = fisher_diagonal(model, {"W": model.W}, [batch(e, 1) for e in examples])["W"]
    analytic = sum((score(model, x, y1) + score(model, y1, y2)) ** 2 for x, y1, y2 in examples) / len(examples)
    assert torch.allclose(fisher, analytic, rtol=1e-5, atol=1e-7)
    token_mean = sum(((score(model, x, y1) + score(model, y1, y2)) / 2) ** 2 for x, y1, y2 in examples) / len(examples)
    assert not torch.allclose(fisher, token_mean, rtol=0.1)  # the token-averaged loss's: about 1/L^2 of it


def test_answer_log_likelihood_sums_the_answer_tokens_only():
    model = Bigram()
    value = answer_log_likelihood(model, batch([0, 3, 1], 1))
    expected = torch.log(model.probs(0)[3]) + torch.log(model.probs(3)[1])
    assert float(value) == pytest.approx(float(expected), rel=1e-5)


def test_sampled_fisher_matches_the_analytic_fisher_of_the_model():
    """One-token answers y ~ p(. | x): E[(e_y - p)_k^2] h_j^2 = p_k (1 - p_k) h_j^2, whatever the data's answer."""
    model = Bigram()
    prompts = [0, 2, 4]
    draws = 1500
    examples = [batch([x, 1], 1) for x in prompts for _ in range(draws)]
    fisher = fisher_diagonal(model, {"W": model.W}, examples, sample=True, seed=3)["W"]
    analytic = sum(torch.outer(model.probs(x) * (1 - model.probs(x)), model.h[x] ** 2) for x in prompts) / len(prompts)
    assert torch.allclose(fisher, analytic, rtol=0.12, atol=0.01)
    empirical = fisher_diagonal(model, {"W": model.W}, [batch([x, 1], 1) for x in prompts])["W"]
    assert not torch.allclose(empirical, analytic, rtol=0.2)  # the data's answer (always 1) gives another matrix


def test_a_sampled_answer_keeps_the_prompt_stops_at_eos_and_labels_only_the_drawn_tokens():
    model = Bigram()
    with torch.no_grad():
        model.W.zero_()
        model.W[4] = 100 * model.h[0]  # from token 0, token 4 (the end) is all but sure
    drawn = sample_answer(model, batch([0, 1, 2, 3], 1), eos_token_id=4, generator=torch.Generator().manual_seed(0))
    assert drawn["input_ids"].tolist() == [[0, 4]]  # stopped after the end token
    assert drawn["labels"].tolist() == [[IGNORE_INDEX, 4]]
    longer = sample_answer(model, batch([1, 1, 2, 3], 1), eos_token_id=None, generator=torch.Generator().manual_seed(0))
    assert longer["input_ids"].shape[1] == 4 and longer["input_ids"][0, 0] == 1  # at most the data's answer length
