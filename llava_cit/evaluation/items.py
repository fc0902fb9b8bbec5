"""What each benchmark asks: its records, images, prompt, scorer and report, behind one interface.

Every sample has a unique `key`: OCRBench's is the record's position in the official file
(VLMEvalKit's `index`; `id` repeats across OCRBench's datasets, `(dataset_name, id)` does not),
GQA's the question id, a LLaVA-format or task file's the record id (`<id>#<turn>` for the turns of a
multi-turn record). A record that cannot be served (a missing field, an image path outside the
root) becomes a bad sample with its reason: counted and listed, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from benchmarks import gqa, ocrbench, ocrvqa
from llava_cit.data.example import Example
from llava_cit.data.hf_datasets import load_hf_dataset
from llava_cit.data.images import BadImage, open_image
from llava_cit.data.llava_format import conversation_turns, read_records
from llava_cit.data.paths import resolve_under
from llava_cit.errors import UserError


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


@dataclass
class Benchmark:
    name: str
    items: list[EvalItem]
    score: Callable[[str, EvalItem], float]
    report: Callable[[list[dict]], dict]
    # optional: score a whole list at once (BERTScore loads its model once) and add per-sample extras
    score_batch: Callable[[list[str], list[EvalItem]], list[dict]] | None = None
    max_new_tokens: int = 128  # the benchmark's generation budget (LLaVA's evaluation default)
    data: str = ""  # the annotation file (or hf:<id>) it was read from

    def key_for_row(self, row: dict, source: str) -> str | None:
        """Which sample an external prediction row answers: by `key`, `index`, `dataset_name`+`id`, or `id`
        (only where ids are unique in this benchmark's file)."""
        if "key" in row:
            return str(row["key"])
        if "index" in row and row["index"] is not None:
            index = int(row["index"])
            return self.items[index].key if 0 <= index < len(self.items) and _positional(self) else str(index)
        if "dataset_name" in row and "id" in row:
            return _by_dataset_id(self).get((str(row["dataset_name"]), str(row["id"])))
        if "id" in row:
            ids = _by_id(self)
            if ids is None:
                raise UserError(f"{source}: rows are keyed by 'id' alone, but ids repeat in {self.data} "
                                f"({len({i.meta.get('id') for i in self.items})} distinct of {len(self.items)}): "
                                f"key each row by 'index' (its position in the file) or by 'dataset_name' + 'id'")
            return ids.get(str(row["id"]))
        return None


def _positional(bench: Benchmark) -> bool:
    return bool(bench.items) and all("index" in item.meta for item in bench.items)


def _by_dataset_id(bench: Benchmark) -> dict[tuple[str, str], str]:
    return {(str(i.meta.get("dataset_name")), str(i.meta.get("id", i.key))): i.key for i in bench.items}


def _by_id(bench: Benchmark) -> dict[str, str] | None:
    ids = [str(i.meta.get("id", i.key)) for i in bench.items]
    if len(set(ids)) != len(ids):
        return None
    return dict(zip(ids, (i.key for i in bench.items)))


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


def load_ocrbench(data: str, images: str | None) -> Benchmark:
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

    def score(prediction: str, item: EvalItem) -> float:
        return float(ocrbench.score(prediction, item.answers, item.meta["dataset_name"]))

    return Benchmark("ocrbench", items, score, ocrbench.report, max_new_tokens=128, data=data)


def load_gqa(data: str, images: str | None) -> Benchmark:
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
    for index, record in enumerate(records):
        missing = gqa.missing_fields(record)
        path, error = (None, None) if "image" in record else _under(root, f"{record.get('imageId')}.jpg")
        if missing:
            error = f"record {record.get('id', index)}: missing field '{missing[0]}'"
        question = str(record.get("question") or "")
        items.append(EvalItem(str(record.get("id", index)), f"{question}\n{gqa.PROMPT_SUFFIX}" if question.strip() else "",
                              _answers(record.get("answer")), image_path=path, image=record.get("image"), error=error,
                              meta={"id": record.get("id", index), "types": record.get("types") or {}}))
    return Benchmark("gqa", items, lambda prediction, item: float(gqa.score(prediction, item.answers[0])), gqa.report,
                     max_new_tokens=16, data=data)


def load_llava_format(data: str, images: str | None) -> list[EvalItem]:
    """LLaVA-format test records; a multi-turn record gives one sample per turn (`<id>#<turn>`, asked after the
    gold answers of the earlier turns), so every answer is scored once."""
    root = Path(images) if images else Path(data).parent
    items: list[EvalItem] = []
    records = read_records(data)
    _refuse_duplicates([str(r["id"]) for _, r in records if isinstance(r, dict) and "id" in r], data, "id")
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


def load_ocrvqa(data: str, images: str | None) -> Benchmark:
    items = load_llava_format(data, images)
    return Benchmark("ocrvqa", items, lambda prediction, item: float(ocrvqa.score(prediction, item.answers)),
                     ocrvqa.report, max_new_tokens=128, data=data)


def load_task(name: str, data: str | None, images: str | None, trained: dict | None = None) -> Benchmark:
    """Any registered task (or task file) evaluated on its declared test source (or --data: a LLaVA-format
    file for a vision task, a JSONL {"instruction","input","output"} file for a text task). `trained`: the task
    files' tasks of the run being evaluated ({name: TaskSpec}), found by name."""
    from llava_cit.data.sources import load_source
    from llava_cit.scoring import mean_defined, score_samples
    from llava_cit.tasks.registry import resolve_task

    task = (trained or {}).get(name) or resolve_task(name)
    source = dict(task.test)
    if data:
        source = {"type": "jsonl", "path": data} if task.kind == "text" else {
            "type": "llava", "path": data, "image_folder": images}
    examples = load_source(source, task.name, "test", suffix=task.suffix, keep_bad=True)
    items = [EvalItem(ex.id, ex.turns[-1][0].replace("<image>", "").strip(), ex.meta.get("answers") or [ex.answer],
                      image=ex.image, image_path=ex.image_path, meta={"id": ex.id, "task": task.name}, input=ex.input,
                      history=list(ex.turns[:-1]), max_new_tokens=task.max_new_tokens, error=ex.meta.get("error"))
             for ex in examples]
    by_id = {ex.id: ex for ex in examples}

    def score_batch(predictions: list[str], batch: list[EvalItem]) -> list[dict]:
        return score_samples(task, predictions, [by_id[item.key] for item in batch])

    def report(rows: list[dict]) -> dict:  # "score": the mean of the task's metric over the samples, in [0, 1]
        return {"score": mean_defined([r["score"] for r in rows]), "metric": task.metric,
                **{m: mean_defined([r.get(m) for r in rows]) for m in task.extra_metrics}}

    return Benchmark(task.name, items, lambda prediction, item: score_batch([prediction], [item])[0]["score"], report,
                     score_batch=score_batch, max_new_tokens=task.max_new_tokens, data=data or str(source.get("path", "")))


LOADERS = {"ocrbench": load_ocrbench, "gqa": load_gqa, "ocrvqa": load_ocrvqa}


def load_benchmark(name: str, data: str | None, images: str | None, trained: dict | None = None) -> Benchmark:
    if name in LOADERS:
        if not data:
            raise UserError(f"--data is required for '{name}' (a local file, or hf:<dataset id>)")
        if not data.startswith("hf:") and not Path(data).is_file():
            raise UserError(f"data file not found: {data}")
        return LOADERS[name](data, images)
    return load_task(name, data, images, trained)


__all__ = ["BadImage", "Benchmark", "EvalItem", "load_benchmark"]
