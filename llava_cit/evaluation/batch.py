"""Batch evaluation: predictions appended as they are produced, resumable, scored at the end.

Re-running the same command on the same output directory skips every sample already in
predictions.jsonl, so the final scores equal those of an uninterrupted run. Unreadable or
missing images are counted and listed (scored as wrong, or excluded with skip_bad); they never
stop a run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from llava_cit.atomic import write_json
from llava_cit.data.images import BadImage
from llava_cit.evaluation.items import Benchmark, EvalItem

PREDICTIONS, SCORES = "predictions.jsonl", "scores.json"


def read_predictions(path: Path) -> dict[str, dict]:
    """Rows by id; a torn last line (a crash mid-write) is ignored and will be redone."""
    rows: dict[str, dict] = {}
    if not path.is_file():
        return rows
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "id" in row:
                rows[str(row["id"])] = row
    return rows


def _append(path: Path, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        handle.flush()
        os.fsync(handle.fileno())


def _row(item: EvalItem, prediction: str | None, routed=None, confidence=None, error=None) -> dict:
    return {"id": item.id, "question": item.question, "prediction": prediction, "gold": item.answers,
            "routed_task": routed, "confidence": confidence, "error": error, **item.meta}


def run_predictions(benchmark: Benchmark, server, out_dir: Path, batch_size: int = 16, max_new_tokens: int = 16,
                    limit: int | None = None, advance: Callable[[int], None] | None = None) -> dict[str, dict]:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PREDICTIONS
    done = read_predictions(path)
    items = benchmark.items[:limit] if limit else benchmark.items
    todo = [item for item in items if item.id not in done]
    if advance:
        advance(len(items) - len(todo))
    for start in range(0, len(todo), batch_size):
        chunk, rows, ready = todo[start:start + batch_size], [], []
        for item in chunk:
            if item.error:
                rows.append(_row(item, None, error=item.error))
                continue
            try:
                ready.append((item, item.example()))
            except BadImage as err:
                rows.append(_row(item, None, error=str(err)))
        if ready:
            answers = server.answer([example for _, example in ready], max_new_tokens)
            rows += [_row(item, answer, routed, confidence) for (item, _), (answer, routed, confidence)
                     in zip(ready, answers)]
        _append(path, rows)
        done.update({row["id"]: row for row in rows})
        if advance:
            advance(len(chunk))
    return {item.id: done[item.id] for item in items if item.id in done}


def score_predictions(benchmark: Benchmark, rows: dict[str, dict], out_dir: Path | None, skip_bad: bool = False,
                      limit: int | None = None) -> dict:
    """Score rows (ours, or predictions made by another tool: JSONL with id + prediction)."""
    items = benchmark.items[:limit] if limit else benchmark.items
    scored, bad, missing, answered = [], [], [], []
    for item in items:
        row = rows.get(item.id)
        if row is None:
            missing.append(item.id)
            continue
        if row.get("error") or row.get("prediction") is None:
            bad.append({"id": item.id, "error": row.get("error") or "no prediction"})
            if not skip_bad:
                scored.append({**item.meta, "id": item.id, "score": 0.0})
            continue
        answered.append((item, str(row["prediction"])))
    if benchmark.score_batch is not None and answered:
        values = benchmark.score_batch([p for _, p in answered], [item for item, _ in answered])
    else:
        values = [{"score": benchmark.score(prediction, item)} for item, prediction in answered]
    scored += [{**item.meta, "id": item.id, **value} for (item, _), value in zip(answered, values)]
    scores = {
        "benchmark": benchmark.name,
        **benchmark.report(scored),
        "samples": len(items),
        "scored": len(scored),
        "missing_predictions": len(missing),
        "bad_samples": bad,
        "bad_policy": "excluded (--skip-bad)" if skip_bad else "scored as wrong",
    }
    if out_dir is not None:
        write_json(out_dir / SCORES, scores)
    return scores


def load_external_predictions(path: str | Path) -> dict[str, dict]:
    rows = read_predictions(Path(path))
    for row in rows.values():
        if "prediction" not in row:
            row["prediction"] = row.get("answer") or row.get("text")
    return rows
