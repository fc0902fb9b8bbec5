"""The evaluation files of the benchmarks, read into samples (EvalItem): OCRBench's annotation file, GQA's question
file, LLaVA-format records (OCR-VQA and any LLaVA-format test file). Scoring and reports: llava_cit.evaluation.items.

Every sample has a unique `key`: OCRBench's is the record's position in the official file
(VLMEvalKit's `index`; `id` repeats across OCRBench's datasets, `(dataset_name, id)` does not),
GQA's the question id, a LLaVA-format or task file's the record id (`<id>#<turn>` for the turns of a
multi-turn record). A record that cannot be served (a missing field, an image path outside the
root) becomes a bad sample with its reason: counted and listed, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from benchmarks import gqa, ocrbench
from llava_cit.data.example import Example
from llava_cit.data.hf_datasets import load_hf_dataset
from llava_cit.data.images import open_image
from llava_cit.data.llava_format import conversation_turns, read_records
from llava_cit.data.paths import refuse_system_root, resolve_under
from llava_cit.util.errors import UserError


@dataclass
class EvalItem:
    key: str  # unique within the benchmark: predictions, resume and scoring use it
    question: str
    answers: list[str]
    image_path: Path | None = None
    image: Image.Image | None = None
    meta: dict = field(default_factory=dict)  # written into each prediction row (id, dataset_name, type, ...)
    error: str | None = None  # set when the sample cannot be served (bad record, path outside the root)
    input: str = ""  # text track: the example's separate input, if any
    history: list[tuple[str, str]] = field(default_factory=list)  # earlier turns (gold answers) of a multi-turn record
    max_new_tokens: int | None = None  # the sample's own generation budget (task items), else the benchmark's

    def example(self) -> Example:
        """The model-facing example; opens the image now (raises BadImage if it cannot)."""
        image = self.image
        if image is None and self.image_path is not None:
            image = open_image(self.image_path)
        turns = [*self.history, (self.question, self.answers[0] if self.answers else "")]
        if image is not None and "<image>" not in turns[0][0]:
            turns[0] = (f"<image>\n{turns[0][0]}", turns[0][1])
        return Example(id=self.key, turns=turns, image=image, input=self.input,
                       meta={"answers": self.answers, **self.meta})


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


def read_ocrbench(data: str, images: str | None) -> list[EvalItem]:
    """OCRBench's official annotation file (or hf:<id>), one sample per record keyed by its position."""
    items = []
    if data.startswith("hf:"):
        for index, row in enumerate(load_hf_dataset(data[3:], split="test")):
            meta = {"index": index, "id": row.get("id", index), "dataset_name": row.get("dataset", ""),
                    "type": row.get("question_type", "")}
            items.append(EvalItem(str(index), row.get("question") or "", _answers(row.get("answer")), image=row["image"],
                                  meta=meta))
    else:
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
            items.append(EvalItem(str(index), str(record.get("question") or ""), _answers(record.get("answers")),
                                  image_path=path, error=error, meta=meta))

    return items


def read_gqa(data: str, images: str | None) -> list[EvalItem]:
    """GQA's official question file (or hf:<id>, testdev), keyed by question id."""
    items = []
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
        items.append(EvalItem(str(record.get("id", index)), f"{question}\n{gqa.PROMPT_SUFFIX}" if question.strip() else "",
                              _answers(record.get("answer")), image_path=path, image=record.get("image"), error=error,
                              meta={"id": record.get("id", index), "types": record.get("types") or {}}))
    return items


def read_llava_format(data: str, images: str | None) -> list[EvalItem]:
    """LLaVA-format test records; a multi-turn record gives one sample per turn (`<id>#<turn>`, asked after the
    gold answers of the earlier turns), so every answer is scored once."""
    root = Path(images) if images else Path(data).parent
    items: list[EvalItem] = []
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
            items.append(EvalItem(rid, "", [], error=str(err), meta={"id": rid}))
            continue
        for k, (question, answer) in enumerate(turns):
            key = rid if len(turns) == 1 else f"{rid}#{k + 1}"
            items.append(EvalItem(key, question.replace("<image>", "").strip(), [answer], image_path=path, error=error,
                                  history=turns[:k], meta={"id": rid, **({"turn": k + 1} if len(turns) > 1 else {})}))
    return items


READERS = {"ocrbench": read_ocrbench, "gqa": read_gqa, "ocrvqa": read_llava_format}


def read_benchmark(name: str, data: str | None, images: str | None) -> list[EvalItem]:
    """The samples of benchmark `name` (one of READERS) from its file `data` (or hf:<dataset id>)."""
    if name not in READERS:
        raise UserError(f"unknown benchmark file format '{name}' (known: {', '.join(READERS)})")
    if not data:
        raise UserError(f"--data is required for '{name}' (a local file, or hf:<dataset id>)")
    if not data.startswith("hf:") and not Path(data).is_file():
        raise UserError(f"data file not found: {data}")
    return READERS[name](data, images)
