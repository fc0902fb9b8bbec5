"""OCR-VQA's `dataset.json` (image id -> {"imageURL", "questions", "answers", "title", "authorName", "genre",
"split"}; split 1 train, 2 val, 3 test): the records, checked, and the test split as evaluation records."""

from __future__ import annotations

import json
from pathlib import Path

from llava_cit.util.atomic import write_text
from llava_cit.util.errors import UserError
from llava_cit.util.text_files import read_utf8

SPLITS = {"train": 1, "val": 2, "test": 3}
IMAGE_FOLDER = "ocr_vqa/images"  # where LLaVA's mixture expects the images, relative to the data root


def read_dataset(path: Path) -> dict[str, dict]:
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        data = json.loads(read_utf8(path))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected an object mapping image ids to records, got {type(data).__name__}")
    for image_id, record in data.items():
        if not isinstance(record, dict):
            raise UserError(f"{path}: record {image_id!r}: not a JSON object")
        for field in ("imageURL", "questions", "answers", "split"):
            if field not in record:
                raise UserError(f"{path}: record {image_id!r}: no '{field}' field")
        if "/" in image_id or "\\" in image_id or image_id in ("", ".", ".."):
            raise UserError(f"{path}: record {image_id!r}: an image id that is not a plain file name")
        if len(record["questions"]) != len(record["answers"]):
            raise UserError(f"{path}: record {image_id!r}: {len(record['questions'])} questions but "
                            f"{len(record['answers'])} answers")
    return data


def evaluation_records(data: dict[str, dict]) -> list[dict]:
    """One LLaVA-format evaluation record per test question (split 3), images as LLaVA's mixture names them."""
    records = []
    for image_id, record in data.items():
        if int(record["split"]) != SPLITS["test"]:
            continue
        for k, (question, answer) in enumerate(zip(record["questions"], record["answers"])):
            records.append({"id": f"{image_id}_{k}", "image": f"{IMAGE_FOLDER}/{image_id}.jpg",
                            "conversations": [{"from": "human", "value": f"<image>\n{question}"},
                                              {"from": "gpt", "value": str(answer)}]})
    return records


def write_test_split(dataset: Path, out: Path) -> int:
    records = evaluation_records(read_dataset(dataset))
    write_text(out, json.dumps(records, ensure_ascii=False, indent=1) + "\n")
    return len(records)
