"""OCR-VQA (Mishra et al. 2019): lower-case exact match, accuracy."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.exact_match import exact_match


def score(prediction: str, answers: str | Sequence[str]) -> int:
    return int(exact_match(prediction, answers, "lower"))


def report(rows: Sequence[dict]) -> dict:
    total = len(rows)
    correct = sum(int(r["score"]) for r in rows)
    return {"accuracy": correct / total if total else None, "correct": correct, "total": total}
