"""A validation split carved from a task's training data (what `llava-cit sweep` scores on, never the test set).

    {type: holdout, source: <the task's train source>, part: train | validation, fraction: 0.1, min_count: 8,
     seed: 0, limit: null}

Both parts read the wrapped source the same way (its training split, at most `limit` records, whatever the caller
asks for), then split its examples by a seeded shuffle of their ids: `validation` is the first
max(min_count, round(fraction x n)) of them (at most n - 1), `train` the rest, each in the source's order. The two
parts are disjoint and together the whole, so a run trained on `train` and scored on `validation` never sees a
validation example in training.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from llava_cit.data.example import Example
from llava_cit.util.errors import UserError

PARTS = ("train", "validation")


def validation_ids(ids: list[str], fraction: float, min_count: int, seed: int) -> set[str]:
    """The ids of the validation part of examples `ids`."""
    count = min(len(ids) - 1, max(min_count, round(fraction * len(ids))))
    shuffled = sorted(ids)
    random.Random(f"holdout:{seed}").shuffle(shuffled)
    return set(shuffled[:max(count, 0)])


def holdout_examples(source: dict[str, Any], task: str, load: Callable[..., list[Example]]) -> list[Example]:
    """One part of the wrapped source's examples; `load(source, task, split, limit)` reads a source."""
    part, inner = source.get("part"), source.get("source")
    if part not in PARTS or not isinstance(inner, dict):
        raise UserError(f"task '{task}': a holdout source needs 'source' (a source mapping) and 'part' "
                        f"({' or '.join(PARTS)})")
    fraction, min_count = float(source.get("fraction", 0.1)), int(source.get("min_count", 8))
    if not 0 < fraction < 1 or min_count < 1:
        raise UserError(f"task '{task}': holdout fraction must be in (0, 1) and min_count >= 1")
    examples = load(inner, task, "train", source.get("limit"))
    if len(examples) < 2:
        raise UserError(f"task '{task}': {len(examples)} training example(s): too few to carve a validation split")
    held = validation_ids([ex.id for ex in examples], fraction, min_count, int(source.get("seed", 0)))
    return [ex for ex in examples if (ex.id in held) == (part == "validation")]
