"""Exact-match accuracy after a named normaliser (GQA, OCR-VQA, the synthetic tasks)."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.normalize import NORMALIZERS


def exact_match(prediction: str, answers: str | Sequence[str], normalizer: str = "lower") -> float:
    norm = NORMALIZERS[normalizer]
    golds = [answers] if isinstance(answers, str) else list(answers)
    return float(any(norm(prediction) == norm(gold) for gold in golds))
