"""LLaVA-format instruction data: a JSON list or JSONL of
`{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "..."}]}`
with images under an image folder."""

from __future__ import annotations

import json
from pathlib import Path

from llava_cit.data.example import Example
from llava_cit.data.paths import refuse_system_root, resolve_under
from llava_cit.util.errors import UserError
from llava_cit.util.text_files import read_utf8


def read_records(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, record) pairs from a JSON list or a JSONL file; malformed JSON names file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    text = read_utf8(path)
    stripped = text.lstrip()
    if path.suffix == ".jsonl" or (stripped and stripped[0] == "{" and "\n{" in stripped):
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((number, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise UserError(f"{path}: line {number}: malformed JSON ({err.msg})") from None
        return records
    if not stripped:
        raise UserError(f"{path}: the file is empty (expected a JSON list or JSONL records)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: line {err.lineno}: malformed JSON ({err.msg})") from None
    if isinstance(data, dict):  # id -> record (GQA-style)
        return [(0, {"id": key, **value}) for key, value in data.items()]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a list of records, got {type(data).__name__}")
    return [(0, record) for record in data]


def conversation_turns(record: dict, where: str) -> list[tuple[str, str]]:
    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise UserError(f"{where}: field 'conversations' is missing or empty")
    turns, question = [], None
    for message in conversations:
        role, value = message.get("from"), message.get("value")
        if not isinstance(value, str):
            raise UserError(f"{where}: field 'conversations[].value' must be a string")
        if role in ("human", "user"):
            question = value
        elif role in ("gpt", "assistant"):
            if question is None:
                raise UserError(f"{where}: an answer ('gpt') comes before any question ('human')")
            turns.append((question, value))
            question = None
        else:
            raise UserError(f"{where}: field 'conversations[].from' is '{role}' (expected human or gpt)")
    if not turns:
        raise UserError(f"{where}: no question/answer pair in 'conversations'")
    return turns


def load_llava(path: str | Path, image_folder: str | Path | None = None, limit: int | None = None,
               task: str = "", keep_bad: bool = False) -> list[Example]:
    """Examples of a LLaVA-format file; images are resolved (never outside `image_folder`) but not opened.

    `keep_bad` (evaluation): a record that cannot be served is kept with its reason in `meta["error"]`
    (scored as a bad sample) instead of stopping the load."""
    path = Path(path)
    folder = Path(image_folder) if image_folder else path.parent
    folder_checked = False
    examples = []
    records = read_records(path)
    for index, (line, record) in enumerate(records):
        if limit is not None and len(examples) >= limit:
            break
        records[index] = (line, None)  # each parsed record is dropped once it is an example
        where = f"{path}: line {line}" if line else f"{path}: record {index}"
        if not folder_checked and isinstance(record, dict) and record.get("image"):
            refuse_system_root(folder, f"{path}: the image folder")  # stops the load, even in evaluation
            folder_checked = True
        try:
            if not isinstance(record, dict):
                raise UserError(f"{where}: a record must be an object")
            image_path = None
            if record.get("image"):
                image_path = resolve_under(folder, record["image"], f"{where}: field 'image': image path")
            examples.append(Example(id=str(record.get("id", index)), turns=conversation_turns(record, where),
                                    image_path=image_path, task=task, input=record.get("input", "")))
        except UserError as err:
            if not keep_bad:
                raise
            rid = str(record.get("id", index)) if isinstance(record, dict) else str(index)
            examples.append(Example(id=rid, turns=[("", "")], task=task, meta={"where": where, "error": str(err)}))
    if not examples:
        raise UserError(f"{path}: the dataset is empty")
    return examples


def split_turns(examples: list[Example]) -> list[Example]:
    """Test records with several turns become one sample per turn, keyed `<id>#<turn>` (turn from 1): turn k is
    asked after the gold answers of turns 1..k-1 (teacher forcing), so every answer is scored once."""
    out = []
    for example in examples:
        if len(example.turns) == 1:
            out.append(example)
            continue
        for k in range(1, len(example.turns) + 1):
            out.append(Example(id=f"{example.id}#{k}", turns=list(example.turns[:k]), image=example.image,
                               image_path=example.image_path, task=example.task, input=example.input,
                               meta={**example.meta, "record_id": example.id, "turn": k}))
    return out
