"""No non-finite weight is ever published: every tensor of an artifact is checked for NaN and infinity before the
artifact is put in place (adapters, models, method state; the switch checks its own in switch/storage.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from llava_cit.util.errors import UserError

ADVICE = "training diverged: lower the learning rate (train.lr, pretrain.lr), keep train.max_grad_norm > 0, or train in float32"


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors holding a NaN or an infinity."""
    return [name for name, value in tensors.items()
            if value.is_floating_point() and not bool(torch.isfinite(value).all())]


def require_finite(tensors: dict[str, torch.Tensor], target: str | Path) -> None:
    """Refuse to write `target` from `tensors` when any of them is not finite (one line naming the first)."""
    bad = non_finite_tensors(tensors)
    if bad:
        raise UserError(f"refusing to save {target}: {len(bad)} tensor(s) hold NaN or infinity (first: {bad[0]}); "
                        f"{ADVICE}")


def require_finite_files(folder: str | Path, target: str | Path) -> None:
    """Every tensor of every .safetensors file under `folder` is finite, or a one-line error naming the file and tensor."""
    from safetensors import safe_open

    for path in sorted(Path(folder).rglob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                if non_finite_tensors({name: handle.get_tensor(name)}):
                    raise UserError(f"refusing to publish {target}: tensor '{name}' of {path.name} holds NaN or "
                                    f"infinity; {ADVICE}")
