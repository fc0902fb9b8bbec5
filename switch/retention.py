"""Which examples a task keeps for the switch: a tiny, seeded fraction with a minimum count."""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from pathlib import Path
from typing import Any


def retained_count(total: int, fraction: float = 0.0001, min_count: int = 16) -> int:
    if not 0 <= fraction <= 1:
        raise ValueError(f"retention fraction must be in [0, 1], got {fraction}")
    return min(total, max(min_count, math.ceil(fraction * total)))


def retain(records: list[Any], fraction: float = 0.0001, min_count: int = 16, seed: int = 0) -> list[Any]:
    """A deterministic sample of `records`, in their original order."""
    k = retained_count(len(records), fraction, min_count)
    picked = sorted(random.Random(seed).sample(range(len(records)), k))
    return [records[i] for i in picked]


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {number}: malformed JSON ({err.msg})") from None
    return rows
