"""Batch evaluation: predictions appended as they are produced, resumable, scored at the end.

Every row carries the sample's unique `key`. Re-running the same command on the same output directory
skips every sample already in predictions.jsonl, so the final scores equal those of an uninterrupted
run. A sample that cannot be served (unreadable or missing image, empty or over-long question, missing
answer) is counted and listed (scored as wrong, or excluded with skip_bad); it never stops a run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from llava_cit.data.example import Example
from llava_cit.data.images import BadImage
from llava_cit.evaluation.batch_size import LARGEST
from llava_cit.evaluation.items import EvalSet
from llava_cit.util.atomic import write_json
from llava_cit.util.errors import UserError
from llava_cit.util.jsonl import append_rows, parse_lines, read_rows

PREDICTIONS, SCORES = "predictions.jsonl", "scores.json"
WINDOW = 8  # batches routed and generated together (grouped by route) between two appends


def read_predictions(path: Path) -> dict[str, dict]:
    """Our own rows by key; a torn last line (a crash mid-write) is ignored and will be redone."""
    return {str(row["key"]): row for row in read_rows(path) if "key" in row}


ROW_LEAVES_OUT = ("answers", "error", "where")  # in a row's own columns (gold, error), or the error's own words


def described(item: Example) -> dict:
    """What a prediction row and a scored row say about their sample: its id, the reader's fields (a benchmark's
    `id`, `dataset_name`, `type`, ...; a text task's `source`, `constraint`) and its task."""
    fields = {k: v for k, v in item.meta.items() if k not in ROW_LEAVES_OUT}
    if "id" not in fields:  # a benchmark's record id, where its reader keeps one (OCRBench's repeats: key != id)
        fields = {"id": item.id, **fields}
    return {**fields, "task": item.task} if item.task else fields


def _row(item: Example, prediction: str | None, routed=None, confidence=None, error=None) -> dict:
    return {"key": item.id, **described(item), "question": item.question, "prediction": prediction,
            "gold": item.references, "routed_task": routed, "confidence": confidence, "error": error}


def require_images(benchmark: EvalSet, images: str | None, limit: int | None = None) -> None:
    """Before generating: where the samples name image files and not one of them exists, a one-line error (every
    sample would be a bad one, scored wrong): the images folder was guessed wrong or not given."""
    items = benchmark.items[:limit] if limit else benchmark.items
    paths = [item.image_path for item in items if item.image_path is not None and not item.error]
    if paths and not any(path.is_file() for path in paths):
        hint = f"check --images {images}" if images else "pass --images FOLDER (the folder the records' image paths are under)"
        raise UserError(f"none of the {len(paths)} images of {benchmark.name} exists (the first: {paths[0]}): {hint}")


def run_predictions(benchmark: EvalSet, server, out_dir: Path, batch_size: int | str = 16, max_new_tokens: int | None = None,
                    limit: int | None = None, advance: Callable[[int], None] | None = None,
                    window: int = WINDOW) -> dict[str, dict]:
    """Answer every sample not yet in `out_dir`/predictions.jsonl; returns the rows of the selected samples.
    `window` batches are routed together (grouped by route) and appended at once."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PREDICTIONS
    done = read_predictions(path)
    items = benchmark.items[:limit] if limit else benchmark.items
    todo = [item for item in items if item.id not in done]
    if advance:
        advance(len(items) - len(todo))
    step = (batch_size if isinstance(batch_size, int) else LARGEST) * window  # auto: up to its largest batch
    for start in range(0, len(todo), step):
        chunk, rows, ready = todo[start:start + step], [], []
        for item in chunk:
            if item.error:
                rows.append(_row(item, None, error=item.error))
                continue
            try:  # opened now: an unreadable image is this sample's error, before it is routed
                ready.append(dataclasses.replace(item, image=item.load_image()))
            except BadImage as err:
                rows.append(_row(item, None, error=str(err)))
        if advance and rows:
            advance(len(rows))
        if ready:
            answers = server.answer(ready, max_new_tokens, batch_size, progress=advance,
                                    default_budget=benchmark.max_new_tokens)
            rows += [_row(item, answer, routed, confidence, error) for item, (answer, routed, confidence, error)
                     in zip(ready, answers)]
        append_rows(path, rows)
        done.update({row["key"]: row for row in rows})
    return {item.id: done[item.id] for item in items if item.id in done}


def score_predictions(benchmark: EvalSet, rows: dict[str, dict], out_dir: Path | None, skip_bad: bool = False,
                      limit: int | None = None, bad_lines: list[dict] | None = None) -> dict:
    """Score rows by sample key (ours, or another tool's: see load_external_predictions). A sample without a
    prediction counts as wrong in every denominator; a bad sample (unreadable image, ...) too, unless `skip_bad`
    excludes it. `bad_lines`: the malformed lines of an external predictions file, recorded with the scores."""
    items = benchmark.items[:limit] if limit else benchmark.items
    scored, bad, missing, answered = [], [], [], []
    for item in items:
        row = rows.get(item.id)
        error = (row or {}).get("error") or item.error
        if error:
            bad.append({"key": item.id, **described(item), "error": error})
            if not skip_bad:
                scored.append({**described(item), "key": item.id, **benchmark.wrong(item)})
            continue
        if row is None or row.get("prediction") is None:
            missing.append(item.id)
            scored.append({**described(item), "key": item.id, **benchmark.wrong(item)})
            continue
        answered.append((item, str(row["prediction"])))
    values = benchmark.score([p for _, p in answered], [item for item, _ in answered]) if answered else []
    scored += [{**described(item), "key": item.id, **value} for (item, _), value in zip(answered, values)]
    order = {item.id: index for index, item in enumerate(items)}
    scored.sort(key=lambda row: order[row["key"]])
    scores = {
        "benchmark": benchmark.name,
        **benchmark.report(scored),
        "samples": len(items),
        "scored": len(scored),
        "missing_predictions": len(missing),
        "bad_samples": bad,
        "bad_policy": "excluded (--skip-bad)" if skip_bad else "scored as wrong",
    }
    if bad_lines is not None:
        scores["bad_lines"] = bad_lines
    if out_dir is not None:
        write_json(out_dir / SCORES, scores)
    return scores


ANSWER_FIELDS = ("prediction", "answer", "text")


class MalformedLine(Exception):
    """Why one line of an external predictions file cannot be used."""


def _external_row(row: dict, benchmark: EvalSet, where: str) -> tuple[str, str | None]:
    """(sample key, prediction or None) of one external row; raises MalformedLine saying what is wrong with it."""
    if row.get("index") is not None:
        index = row["index"]
        if isinstance(index, str) and index.strip().isascii() and index.strip().lstrip("-").isdigit():
            row["index"] = int(index)
        elif isinstance(index, bool) or not isinstance(index, int):
            raise MalformedLine(f"field 'index' is {json.dumps(index)}, not an integer")
    key = benchmark.key_for_row(row, where)
    if key is None:
        raise MalformedLine("no field names its sample ('index', 'dataset_name' + 'id', 'key' or 'id')")
    if key not in benchmark.sample_keys:
        named = {k: row[k] for k in ("key", "index", "dataset_name", "id") if k in row}
        raise MalformedLine(f"{json.dumps(named)} names no sample of {benchmark.data or benchmark.name}")
    field = next((f for f in ANSWER_FIELDS if f in row), None)
    if field is None:
        raise MalformedLine(f"no answer field (one of {', '.join(repr(f) for f in ANSWER_FIELDS)})")
    prediction = row[field]
    if prediction is not None and (isinstance(prediction, bool) or not isinstance(prediction, str | int | float)):
        raise MalformedLine(f"field '{field}' is a {type(prediction).__name__}, not a string")
    return key, None if prediction is None else str(prediction)


def load_external_predictions(path: str | Path, benchmark: EvalSet, bad_lines: list[dict] | None = None
                              ) -> dict[str, dict]:
    """Another tool's predictions (JSONL): rows keyed by `index` (position in the file, as VLMEvalKit), by
    `dataset_name` + `id`, by our `key`, or by `id` alone where ids are unique in the benchmark's file; the
    answer in `prediction`, `answer` or `text` (null: no prediction, scored as wrong). Two rows for one sample
    are refused. A malformed line (torn or invalid JSON, not UTF-8, no sample or an unknown one, a non-integer
    index, a non-string answer) is a UserError naming its line; with `bad_lines` (a list) it is appended there
    instead, its sample left without a prediction."""
    path = Path(path)
    rows: dict[str, dict] = {}
    for number, row, problem in parse_lines(path):
        where = f"{path}: line {number}"
        try:
            if problem is not None:
                raise MalformedLine(problem)
            key, prediction = _external_row(row, benchmark, where)
        except MalformedLine as err:
            if bad_lines is None:
                raise UserError(f"{where}: {err} (--skip-bad lists and counts such lines instead)") from None
            bad_lines.append({"line": number, "error": str(err)})
            continue
        if key in rows:
            raise UserError(f"{where} answers sample '{key}' a second time (rows must be unique)")
        row.pop("error", None)
        rows[key] = {**row, "prediction": prediction}
    return rows


def data_checksum(data: str) -> str:
    if data.startswith("hf:") or not Path(data).is_file():
        return data
    digest = hashlib.sha256()
    with open(data, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
