"""What each benchmark asks: its records, images, prompt, scorer and report, behind one interface."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from benchmarks import gqa, ocrbench, ocrvqa
from llava_cit.data.example import Example
from llava_cit.data.hf_datasets import load_hf_dataset
from llava_cit.data.images import BadImage, open_image
from llava_cit.data.llava_format import read_records
from llava_cit.data.paths import resolve_under
from llava_cit.errors import UserError


@dataclass
class EvalItem:
    id: str
    question: str
    answers: list[str]
    image_path: Path | None = None
    image: Image.Image | None = None
    meta: dict = field(default_factory=dict)
    error: str | None = None  # set when the sample cannot be served (bad image, path outside the root)
    input: str = ""  # text track: the example's separate input, if any

    def example(self) -> Example:
        """The model-facing example; opens the image now (raises BadImage if it cannot)."""
        image = self.image
        if image is None and self.image_path is not None:
            image = open_image(self.image_path)
        question = self.question if image is None else f"<image>\n{self.question}"
        return Example(id=self.id, turns=[(question, self.answers[0])], image=image, input=self.input,
                       meta={"answers": self.answers, **self.meta})


@dataclass
class Benchmark:
    name: str
    items: list[EvalItem]
    score: Callable[[str, EvalItem], float]
    report: Callable[[list[dict]], dict]
    # optional: score a whole list at once (BERTScore loads its model once) and add per-sample extras
    score_batch: Callable[[list[str], list[EvalItem]], list[dict]] | None = None


def _under(root: Path, relative: str) -> tuple[Path | None, str | None]:
    """The resolved image path, or the reason it is refused (recorded as a bad sample, not raised)."""
    try:
        return resolve_under(root, relative, "image path", root_name="the images root"), None
    except UserError as err:
        return None, str(err)


def load_ocrbench(data: str, images: str | None) -> Benchmark:
    items = []
    if data.startswith("hf:"):
        for row in load_hf_dataset(data[3:], split="test"):
            answers = row["answer"] if isinstance(row["answer"], list) else [row["answer"]]
            items.append(EvalItem(str(row.get("id", len(items))), row["question"], answers, image=row["image"],
                                  meta={"type": row["question_type"], "dataset_name": row.get("dataset", "")}))
    else:
        try:
            records = ocrbench.load_annotations(data)
        except (OSError, ValueError) as err:
            raise UserError(str(err)) from None
        root = Path(images) if images else Path(data).parent / "OCRBench_Images"
        for record in records:
            path, error = _under(root, record["image_path"])
            answers = record["answers"] if isinstance(record["answers"], list) else [record["answers"]]
            items.append(EvalItem(str(record["id"]), record["question"], answers, image_path=path, error=error,
                                  meta={"type": record["type"], "dataset_name": record["dataset_name"]}))

    def score(prediction: str, item: EvalItem) -> float:
        return float(ocrbench.score(prediction, item.answers, item.meta["dataset_name"]))

    return Benchmark("ocrbench", items, score, ocrbench.report)


def load_gqa(data: str, images: str | None) -> Benchmark:
    items = []
    if data.startswith("hf:"):
        rows = load_hf_dataset(data[3:], split="testdev")
        records = [dict(row) for row in rows]
    else:
        try:
            records = gqa.load_questions(data)
        except (OSError, ValueError) as err:
            raise UserError(str(err)) from None
    root = Path(images) if images else Path(data).parent / "images"
    for record in records:
        path, error = _under(root, f"{record['imageId']}.jpg") if "image" not in record else (None, None)
        items.append(EvalItem(str(record["id"]), f"{record['question']}\n{gqa.PROMPT_SUFFIX}", [record["answer"]],
                              image_path=path, image=record.get("image"), error=error,
                              meta={"types": record.get("types") or {}}))
    return Benchmark("gqa", items, lambda prediction, item: float(gqa.score(prediction, item.answers[0])), gqa.report)


def load_llava_format(data: str, images: str | None) -> list[EvalItem]:
    root = Path(images) if images else Path(data).parent
    items = []
    for line, record in read_records(data):
        conversations = record.get("conversations") or []
        if len(conversations) < 2:
            raise UserError(f"{data}: line {line}: field 'conversations' needs a question and an answer")
        question = conversations[0]["value"].replace("<image>", "").strip()
        path, error = _under(root, record["image"]) if record.get("image") else (None, None)
        items.append(EvalItem(str(record.get("id", len(items))), question, [conversations[1]["value"]],
                              image_path=path, error=error))
    return items


def load_ocrvqa(data: str, images: str | None) -> Benchmark:
    items = load_llava_format(data, images)
    return Benchmark("ocrvqa", items, lambda prediction, item: float(ocrvqa.score(prediction, item.answers)),
                     ocrvqa.report)


def load_task(name: str, data: str | None, images: str | None) -> Benchmark:
    """Any registered task (or task file) evaluated on its declared test source (or --data: a LLaVA-format
    file for a vision task, a JSONL {"instruction","input","output"} file for a text task)."""
    from llava_cit.data.sources import load_source
    from llava_cit.scoring import mean_defined, score_samples
    from llava_cit.tasks.registry import resolve_task

    task = resolve_task(name)
    source = dict(task.test)
    if data:
        source = {"type": "jsonl", "path": data} if task.kind == "text" else {
            "type": "llava", "path": data, "image_folder": images}
    examples = load_source(source, task.name, "test", suffix=task.suffix)
    items = [EvalItem(ex.id, ex.instruction.replace("<image>", "").strip(), ex.meta.get("answers") or [ex.answer],
                      image=ex.image, meta={"task": task.name}, input=ex.input) for ex in examples]
    by_id = {ex.id: ex for ex in examples}

    def score_batch(predictions: list[str], batch: list[EvalItem]) -> list[dict]:
        return score_samples(task, predictions, [by_id[item.id] for item in batch])

    def report(rows: list[dict]) -> dict:  # "score": the mean of the task's metric over the samples, in [0, 1]
        return {"score": mean_defined([r["score"] for r in rows]), "metric": task.metric,
                **{m: mean_defined([r.get(m) for r in rows]) for m in task.extra_metrics}}

    return Benchmark(task.name, items, lambda prediction, item: score_batch([prediction], [item])[0]["score"], report,
                     score_batch=score_batch)


LOADERS = {"ocrbench": load_ocrbench, "gqa": load_gqa, "ocrvqa": load_ocrvqa}


def load_benchmark(name: str, data: str | None, images: str | None) -> Benchmark:
    if name in LOADERS:
        if not data:
            raise UserError(f"--data is required for '{name}' (a local file, or hf:<dataset id>)")
        if not data.startswith("hf:") and not Path(data).is_file():
            raise UserError(f"data file not found: {data}")
        return LOADERS[name](data, images)
    return load_task(name, data, images)


__all__ = ["BadImage", "Benchmark", "EvalItem", "load_benchmark"]
