"""Wall-clock timing that waits for the GPU, shared by the benchmark scripts."""

from __future__ import annotations

import time

import torch


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def clock(fn, repeats: int = 1, warmup: bool = False) -> float:
    """Best of `repeats` timed calls of `fn` (after one untimed call if `warmup`)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - start)
    return best
