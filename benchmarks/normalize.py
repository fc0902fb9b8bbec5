"""Answer normalisers used by the scorers (the LLaVA evaluation pipeline's conventions)."""

from __future__ import annotations


def gqa(answer: str) -> str:
    """LLaVA's GQA rule: strip, drop a trailing period, lower-case ("Yes." -> "yes")."""
    return answer.strip().rstrip(".").strip().lower()


def lower(answer: str) -> str:
    """Lower-case exact match after stripping (OCR-VQA, the synthetic tasks)."""
    return " ".join(answer.strip().lower().split())


NORMALIZERS = {"gqa": gqa, "lower": lower, "none": lambda answer: answer}
