"""The switch's classifier: a 2-layer MLP with ReLU (hidden 200 by default, as in SwitchCIT)."""

from __future__ import annotations

import torch
from torch import nn

from switch.defaults import SWITCH_DEFAULTS


class SwitchClassifier(nn.Module):
    def __init__(self, feature_dim: int, num_classes: int, hidden: int = SWITCH_DEFAULTS.hidden, seed: int = 0):
        """Initial weights from `seed` alone, never from whatever the process drew before (a resumed run fits the
        switch its uninterrupted twin fitted); the process's own random state is left as it was."""
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def train_classifier(
    classifier: SwitchClassifier,
    features: torch.Tensor,
    labels: torch.Tensor,
    epochs: int = SWITCH_DEFAULTS.epochs,
    lr: float = SWITCH_DEFAULTS.lr,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> float:
    """Full-batch AdamW with class-balanced cross-entropy (few examples per class are normal). Seeded by `seed`
    without touching the process's own random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        counts = torch.bincount(labels, minlength=classifier.net[-1].out_features).float()
        weights = torch.where(counts > 0, counts.sum() / (len(counts) * counts.clamp(min=1)), torch.zeros_like(counts))
        loss_fn = nn.CrossEntropyLoss(weight=weights)
        optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=weight_decay)
        classifier.train()
        loss = torch.tensor(0.0)
        for _ in range(epochs):
            optimizer.zero_grad()
            loss = loss_fn(classifier(features), labels)
            loss.backward()
            optimizer.step()
    classifier.eval()
    return float(loss.detach())
