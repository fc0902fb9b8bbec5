"""A-GEM (Chaudhry et al. 2019): the step's unclipped gradient is projected against the buffer's, and a parameter
without a task gradient is left without one."""

from __future__ import annotations

import torch
from toy_trainer import Quadratic, train_toy

from llava_cit.methods.agem import ReferenceProjection, project
from llava_cit.methods.base import TrainingHooks

H, TARGET, START = torch.tensor([1.0, 4.0]), torch.tensor([0.0, 0.0]), torch.tensor([3.0, -2.0])
REFERENCE = torch.tensor([-1.0, 0.2])  # the buffer's loss gradient: conflicts with the task's (3, -8)


def reference_loss(model, step):
    """A loss whose gradient on theta is REFERENCE, and which also reaches the parameter the task loss never uses."""
    return (model.theta.view(-1) * REFERENCE).sum() + model.layer.lora_B["a"].weight.sum()


def test_the_trainer_runs_before_step_on_the_unclipped_gradient(tmp_path):
    class Record(TrainingHooks):
        norms = []

        def before_step(self, model):
            self.norms.append(float(model.theta.grad.norm()))

    hooks = Record()
    train_toy(Quadratic(H, TARGET, START), 1, 0.1, max_grad_norm=0.5, hooks=hooks, out=tmp_path)
    assert hooks.norms == [float((H * START).norm())]  # 8.54, not the clipped 0.5


def test_agem_projects_then_the_trainer_clips(tmp_path):
    lr, clip = 0.1, 0.5
    model = Quadratic(H, TARGET, START)
    hooks = ReferenceProjection("a", reference_loss)
    train_toy(model, 1, lr, max_grad_norm=clip, hooks=hooks, out=tmp_path)
    projected = project(H * START, REFERENCE)
    assert torch.dot(projected, REFERENCE) > -1e-6 and hooks.projected == 1
    expected = START - lr * projected * min(1.0, clip / float(projected.norm()))
    assert torch.allclose(model.theta.detach().view(-1), expected, atol=1e-6)
    clipped_first = project(H * START * clip / float((H * START).norm()), REFERENCE)  # the order it had before
    assert not torch.allclose(model.theta.detach().view(-1), START - lr * clipped_first, atol=1e-3)


def test_a_parameter_without_a_task_gradient_keeps_none():
    model = Quadratic(H, TARGET, START)
    model(None)["loss"].backward()
    assert model.layer.lora_B["a"].weight.grad is None
    hooks = ReferenceProjection("a", reference_loss)
    hooks.before_step(model)
    assert model.layer.lora_B["a"].weight.grad is None  # the reference pass's gradient is not left on it
    assert torch.allclose(model.theta.grad.view(-1), project(H * START, REFERENCE))
