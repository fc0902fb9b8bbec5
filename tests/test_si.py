"""SI's path integral (Zenke et al. 2017) on a quadratic toy trained by the real LoraTrainer: omega comes from the task
loss's own gradient, before clipping and without the regularizer's part, and Omega = omega / (move^2 + xi)."""

from __future__ import annotations

import pytest
import torch
from toy_trainer import Quadratic, train_toy

from llava_cit.methods.base import combine
from llava_cit.methods.regularization import PenaltyHooks, PenaltyTerm
from llava_cit.methods.si import XI, PathIntegral

H, TARGET, START = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([0.5, -1.0, 2.0]), torch.tensor([3.0, 1.0, -2.0])


def test_omega_of_plain_gradient_descent_on_a_quadratic_is_the_closed_form(tmp_path):
    """theta_n - target = (1 - lr h)^n delta_0, g_n = h (theta_n - target): omega = lr h^2 delta_0^2 sum (1 - lr h)^2n."""
    lr, steps = 0.1, 12
    model = Quadratic(H, TARGET, START)
    path = PathIntegral("a")
    train_toy(model, steps, lr, max_grad_norm=0.0, hooks=path, out=tmp_path)
    delta0, decay = START - TARGET, 1 - lr * H
    omega = lr * H ** 2 * delta0 ** 2 * sum(decay ** (2 * n) for n in range(steps))
    moved = delta0 * (decay ** steps - 1)
    key = "layer.lora_A.weight"
    assert torch.allclose(path.omega[key].view(-1), omega, rtol=1e-4)
    importance = path.importance({key: model.theta})[key].view(-1)
    assert torch.allclose(importance, omega / (moved ** 2 + XI), rtol=1e-4)


def test_omega_reads_the_unclipped_task_gradient_not_the_penalty(tmp_path):
    """With a penalty pulling towards an anchor and clipping at 0.5, omega sums -g_task . delta theta, where delta theta
    is the clipped update of task + penalty gradient: the same path followed by hand."""
    lr, steps, clip, strength = 0.05, 8, 0.5, 3.0
    anchor, importance = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([2.0, 1.0, 0.5])
    key = "layer.lora_A.weight"
    model = Quadratic(H, TARGET, START)
    pull = PenaltyHooks([PenaltyTerm({key: anchor.view(1, -1)}, {key: importance.view(1, -1)}, strength)], "a")
    path = PathIntegral("a", pull)
    train_toy(model, steps, lr, max_grad_norm=clip, hooks=combine(pull, path), out=tmp_path)
    theta, omega, naive = START.double().clone(), torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for _ in range(steps):
        task = H.double() * (theta - TARGET.double())
        total = task + strength * importance.double() * (theta - anchor.double())
        update = -lr * total * min(1.0, clip / (float(total.norm()) + 1e-6))
        omega -= task * update
        naive -= total * min(1.0, clip / (float(total.norm()) + 1e-6)) * update  # the clipped total gradient
        theta = theta + update
    assert torch.allclose(model.theta.detach().view(-1).double(), theta, atol=1e-5)
    assert torch.allclose(path.omega[key].view(-1).double(), omega, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(omega, naive, rtol=1e-2)  # what the path integral was before: a different number


def test_penalty_gradient_is_the_gradient_of_its_loss():
    key = "w"
    w = torch.nn.Parameter(torch.randn(2, 3))
    terms = [PenaltyTerm({key: torch.randn(2, 3)}, {key: torch.rand(2, 3)}, 7.0),
             PenaltyTerm({key: torch.randn(2, 3)}, {key: torch.rand(2, 3)}, 0.5)]
    pull = PenaltyHooks(terms, "a")
    pull._params = {key: w}
    pull.loss(None).backward()
    assert torch.allclose(pull.gradient(key, w.detach()), w.grad, rtol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 1024.0])
def test_omega_undoes_the_fp16_loss_scale(scale):
    model = Quadratic(H, TARGET, START)
    path = PathIntegral("a")
    model(None)["loss"].mul(scale).backward()
    path.gradient_scale = scale
    path.before_step(model)
    assert torch.allclose(path.grad["layer.lora_A.weight"].view(-1), H * (START - TARGET), rtol=1e-5)
