"""GQA (Hudson & Manning 2019) as the LLaVA-1.5 pipeline evaluates it."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from benchmarks.normalize import gqa as normalize

PROMPT_SUFFIX = "Answer the question using a single word or phrase."


def load_questions(path: str | Path, balanced_only: bool = True) -> list[dict]:
    """The official question file (id -> {imageId, question, answer, types, isBalanced, ...}) as records.

    Records missing a field are returned as they are (the caller counts them as bad samples)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}: malformed JSON ({err.msg})") from None
    if isinstance(data, list):  # already records (e.g. an exported HF split)
        records = [r if isinstance(r, dict) else {} for r in data]
    elif isinstance(data, dict):
        records = [{"id": key, **value} if isinstance(value, dict) else {"id": key} for key, value in data.items()]
    else:
        raise ValueError(f"{path}: expected GQA questions (an object id -> question, or a list of records)")
    if balanced_only:
        records = [r for r in records if r.get("isBalanced", True)]
    return records


def missing_fields(record: dict) -> list[str]:
    return [key for key in ("imageId", "question", "answer") if key not in record]


def score(prediction: str, answer: str) -> int:
    """LLaVA's rule: prediction and gold stripped of a trailing period and lower-cased, then equal."""
    return int(normalize(prediction) == normalize(answer))


def report(rows: Sequence[dict]) -> dict:
    """Accuracy overall and, when the file has them, by structural and semantic question type."""
    by_type: dict[str, dict[str, list[int]]] = {"structural": defaultdict(list), "semantic": defaultdict(list)}
    for row in rows:
        for kind in ("structural", "semantic"):
            value = (row.get("types") or {}).get(kind)
            if value:
                by_type[kind][value].append(int(row["score"]))
    total = len(rows)
    return {
        "accuracy": sum(int(r["score"]) for r in rows) / total if total else None,
        "correct": sum(int(r["score"]) for r in rows),
        "total": total,
        "by_type": {kind: {k: {"accuracy": sum(v) / len(v), "total": len(v)} for k, v in sorted(groups.items())}
                    for kind, groups in by_type.items() if groups},
    }
