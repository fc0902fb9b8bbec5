"""OCRBench (Liu et al. 2023): the official annotation file, its scoring rule and report layout."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

HME_DATASET = "HME100k"
RECOGNITION_TYPES = (
    "Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
    "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition",
)
OTHER_TYPES = (
    "Scene Text-centric VQA", "Doc-oriented VQA", "Key Information Extraction",
    "Handwritten Mathematical Expression Recognition",
)
SCENE_VQA = "Scene Text-centric VQA"


def score(prediction: str, answers: str | Sequence[str], dataset_name: str = "") -> int:
    """1 if any answer occurs in the prediction under the official OCRBench rule, else 0.

    Default: lower-case, strip, newlines to spaces, then substring test. HME100k: no
    lower-casing; every space and newline removed on both sides. A gold answer that is empty after this
    (none in the official file) matches nothing: it would be contained in every prediction.
    """
    golds = [answers] if isinstance(answers, str) else list(answers)
    for gold in golds:
        if dataset_name == HME_DATASET:
            a = gold.strip().replace("\n", " ").replace(" ", "")
            p = prediction.strip().replace("\n", " ").replace(" ", "")
        else:
            a = gold.lower().strip().replace("\n", " ")
            p = prediction.lower().strip().replace("\n", " ")
        if a and a in p:
            return 1
    return 0


FIELDS = ("dataset_name", "id", "image_path", "question", "answers", "type")


def load_annotations(path: str | Path) -> list:
    """The official `OCRBench.json` records (dataset_name, id, image_path, question, answers, type).

    Only the file's shape is checked here; a record missing a field is the caller's to count (see
    `missing_fields`). Note that `id` alone is not unique in the official file: (dataset_name, id) is.
    """
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}: malformed JSON ({err.msg})") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of OCRBench records")
    return records


def missing_fields(record) -> list[str]:
    if not isinstance(record, dict):
        return list(FIELDS)
    return [key for key in FIELDS if key not in record]


def report(rows: Sequence[dict]) -> dict:
    """Per-type totals, 'Text Recognition' (the six recognition types, out of 300), the final score and, as the
    official script prints for a subset of the file, the accuracy per source dataset.

    `rows` carry `type`, `dataset_name` and `score` (0/1), one per sample: a sample without a prediction is a row
    scored 0, as in the official script (whose totals are the file's 50/200/100 per type, answered or not).
    """
    per_type: OrderedDict[str, dict] = OrderedDict()
    for name in RECOGNITION_TYPES + OTHER_TYPES:
        per_type[name] = {"correct": 0, "total": 0}
    per_dataset: dict[str, dict] = {}
    for row in rows:
        for entry in (per_type.setdefault(row["type"], {"correct": 0, "total": 0}),
                      per_dataset.setdefault(str(row.get("dataset_name", "")), {"correct": 0, "total": 0})):
            entry["correct"] += int(row["score"])
            entry["total"] += 1
    recognition = {k: sum(per_type[t][k] for t in RECOGNITION_TYPES) for k in ("correct", "total")}
    final = {k: sum(v[k] for v in per_type.values()) for k in ("correct", "total")}
    scene = per_type[SCENE_VQA]
    return {
        "per_type": dict(per_type),
        "Text Recognition": recognition,
        "Scene Text-centric VQA accuracy": scene["correct"] / scene["total"] if scene["total"] else None,
        "Final Score": final,
        "per_dataset": {name: {**entry, "accuracy": entry["correct"] / entry["total"]}
                        for name, entry in sorted(per_dataset.items())},
    }
