"""The evaluation files of the benchmarks, read into examples (llava_cit.data.example.Example, the one type that
evaluation serves and scores): OCRBench's annotation file, GQA's question file, LLaVA-format records (OCR-VQA and
any LLaVA-format test file). A task's test source of type `benchmark` names one of these readers
(llava_cit.data.sources); `llava-cit eval --data FILE` reads FILE with the task's `data_reader`.

Every sample has a unique key (its `id`): OCRBench's is the record's position in the official file
(VLMEvalKit's `index`; `id` repeats across OCRBench's datasets, `(dataset_name, id)` does not),
GQA's the question id, a LLaVA-format or task file's the record id (`<id>#<turn>` for the turns of a
multi-turn record). `meta` keeps the record's own fields (`id`, `dataset_name`, `type`, ...: written into each
prediction row) and its `answers`. A record that cannot be served (a missing field, an image path outside the
root, no answer) becomes a bad sample with its reason (`meta["error"]`): counted and listed, never a crash.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import gqa, ocrbench
from llava_cit.data.example import Example
from llava_cit.data.hf_datasets import load_hf_dataset
from llava_cit.data.llava_format import conversation_turns, read_records
from llava_cit.data.paths import refuse_system_root, resolve_under
from llava_cit.data.prompts import with_image_token, without_image_token
from llava_cit.util.errors import UserError

NO_ANSWER = "missing answer field"


def _sample(key: str, question: str, answers: list[str], meta: dict, image_path: Path | None = None, image=None,
            error: str | None = None, history: list[tuple[str, str]] = ()) -> Example:
    """One sample: its question asked after `history` (gold earlier turns), `<image>` placed where it has one."""
    turns = [*history, (question, answers[0] if answers else "")]
    if image_path is not None or image is not None:
        turns[0] = (with_image_token(turns[0][0]), turns[0][1])
    error = error or (None if answers else NO_ANSWER)
    return Example(id=key, turns=turns, image=image, image_path=image_path,
                   meta={**meta, "answers": answers, **({"error": error} if error else {})})


def _under(root: Path, relative) -> tuple[Path | None, str | None]:
    """The resolved image path, or the reason it is refused (recorded as a bad sample, not raised)."""
    if not isinstance(relative, str) or not relative:
        return None, "field 'image_path' is missing or empty"
    try:
        return resolve_under(root, relative, "image path", root_name="the images root"), None
    except UserError as err:
        return None, str(err)


def _answers(value) -> list[str]:
    if value is None:
        return []
    return [str(a) for a in value] if isinstance(value, list) else [str(value)]


def _refuse_duplicates(keys: list, source: str, what: str) -> None:
    seen = set()
    for key in keys:
        if key in seen:
            raise UserError(f"{source}: duplicate {what} {key!r} (sample keys must be unique)")
        seen.add(key)


def read_ocrbench(data: str, images: str | None) -> list[Example]:
    """OCRBench's official annotation file (or hf:<id>), one sample per record keyed by its position."""
    samples = []
    if data.startswith("hf:"):
        for index, row in enumerate(load_hf_dataset(data[3:], split="test")):
            meta = {"index": index, "id": row.get("id", index), "dataset_name": row.get("dataset", ""),
                    "type": row.get("question_type", "")}
            samples.append(_sample(str(index), row.get("question") or "", _answers(row.get("answer")), meta,
                                   image=row["image"]))
        return samples
    try:
        records = ocrbench.load_annotations(data)
    except (OSError, ValueError) as err:
        raise UserError(str(err)) from None
    _refuse_duplicates([(r["dataset_name"], r["id"]) for r in records if isinstance(r, dict)
                        and "dataset_name" in r and "id" in r], data, "(dataset_name, id)")
    root = Path(images) if images else Path(data).parent / "OCRBench_Images"
    refuse_system_root(root, "the images root")
    for index, record in enumerate(records):
        record = record if isinstance(record, dict) else {}
        missing = ocrbench.missing_fields(record)
        path, error = _under(root, record.get("image_path"))
        if missing:
            error = f"record {index}: missing field '{missing[0]}'"
        meta = {"index": index, "id": record.get("id"), "dataset_name": record.get("dataset_name", ""),
                "type": record.get("type", "")}
        samples.append(_sample(str(index), str(record.get("question") or ""), _answers(record.get("answers")), meta,
                               image_path=path, error=error))
    return samples


def read_gqa(data: str, images: str | None) -> list[Example]:
    """GQA's official question file (or hf:<id>, testdev), keyed by question id; each question carries LLaVA-1.5's
    answer-format line."""
    samples = []
    if data.startswith("hf:"):
        records = [dict(row) for row in load_hf_dataset(data[3:], split="testdev")]
    else:
        try:
            records = gqa.load_questions(data)
        except (OSError, ValueError) as err:
            raise UserError(str(err)) from None
    _refuse_duplicates([str(r["id"]) for r in records if "id" in r], data, "question id")
    root = Path(images) if images else Path(data).parent / "images"
    if any("image" not in record for record in records):
        refuse_system_root(root, "the images root")
    for index, record in enumerate(records):
        missing = gqa.missing_fields(record)
        path, error = (None, None) if "image" in record else _under(root, f"{record.get('imageId')}.jpg")
        if missing:
            error = f"record {record.get('id', index)}: missing field '{missing[0]}'"
        question = str(record.get("question") or "")
        samples.append(_sample(str(record.get("id", index)), f"{question}\n{gqa.PROMPT_SUFFIX}" if question.strip() else "",
                               _answers(record.get("answer")), {"id": record.get("id", index),
                                                                "types": record.get("types") or {}},
                               image_path=path, image=record.get("image"), error=error))
    return samples


def read_llava_format(data: str, images: str | None) -> list[Example]:
    """LLaVA-format test records; a multi-turn record gives one sample per turn (`<id>#<turn>`, asked after the
    gold answers of the earlier turns), so every answer is scored once."""
    root = Path(images) if images else Path(data).parent
    samples: list[Example] = []
    records = read_records(data)
    _refuse_duplicates([str(r["id"]) for _, r in records if isinstance(r, dict) and "id" in r], data, "id")
    if any(isinstance(r, dict) and r.get("image") for _, r in records):
        refuse_system_root(root, "the images root")
    for index, (line, record) in enumerate(records):
        where = f"{data}: line {line}" if line else f"{data}: record {index}"
        record = record if isinstance(record, dict) else {}
        rid = str(record.get("id", index))
        path, error = _under(root, record["image"]) if record.get("image") else (None, None)
        try:
            turns = conversation_turns(record, where)
        except UserError as err:
            samples.append(_sample(rid, "", [], {"id": rid}, error=str(err)))
            continue
        for k, (question, answer) in enumerate(turns):
            key = rid if len(turns) == 1 else f"{rid}#{k + 1}"
            samples.append(_sample(key, without_image_token(question), [answer],
                                   {"id": rid, **({"turn": k + 1} if len(turns) > 1 else {})},
                                   image_path=path, error=error, history=turns[:k]))
    return samples


READERS = {"ocrbench": read_ocrbench, "gqa": read_gqa, "ocrvqa": read_llava_format}


def read_benchmark(name: str, data: str | None, images: str | None) -> list[Example]:
    """The samples of benchmark file format `name` (one of READERS) from its file `data` (or hf:<dataset id>)."""
    if name not in READERS:
        raise UserError(f"unknown benchmark file format '{name}' (known: {', '.join(READERS)})")
    if not data:
        raise UserError(f"--data is required for '{name}' (a local file, or hf:<dataset id>)")
    if not data.startswith("hf:") and not Path(data).is_file():
        raise UserError(f"data file not found: {data}")
    return READERS[name](data, images)
