"""Load a task's examples from its declared source: synthetic, LLaVA-format files, or a HF dataset."""

from __future__ import annotations

from typing import Any

from llava_cit.data import released, synthetic
from llava_cit.data.benchmark_files import read_benchmark
from llava_cit.data.ct0_datasets import READERS, read_ct0
from llava_cit.data.example import Example
from llava_cit.data.hf_datasets import load_hf_dataset
from llava_cit.data.holdout import holdout_examples
from llava_cit.data.llava_format import load_llava, split_turns
from llava_cit.data.paths import expand_data_root
from llava_cit.data.prompts import with_image_token, without_image_token
from llava_cit.tasks import ct0_prompts
from llava_cit.util.errors import UserError

SOURCE_TYPES = ("synthetic", "llava", "hf", "jsonl", "ct0", "benchmark", "holdout", *released.SOURCE_TYPES)


def _hf_examples(source: dict[str, Any], limit: int | None, task: str) -> list[Example]:
    data = load_hf_dataset(source["path"], source.get("name"), source.get("split", "train"), source.get("data_files"))
    images = None
    if isinstance(source.get("images"), dict):  # e.g. lmms-lab/GQA: images in a separate config, keyed by id
        spec = source["images"]
        image_rows = load_hf_dataset(spec["path"], spec.get("name"), spec.get("split", "train"))
        images = {row["id"]: row["image"] for row in image_rows}
    q, a = source.get("question_field", "question"), source.get("answer_field", "answer")
    image_field, id_field = source.get("image_field", "image"), source.get("id_field", "id")
    examples = []
    for index, row in enumerate(data):
        if limit is not None and index >= limit:
            break
        image = images[row[source.get("image_id_field", "imageId")]] if images is not None else row.get(image_field)
        question = row[q] if image is None else with_image_token(row[q])
        answer = row[a] if isinstance(row[a], str) else row[a][0]
        examples.append(Example(id=str(row.get(id_field, index)), turns=[(question, answer)],
                                image=image.convert("RGB") if image is not None else None, task=task,
                                input=row.get(source.get("input_field", "input"), "") or "",
                                meta={"answers": row[a] if isinstance(row[a], list) else [row[a]]}))
    return examples


def _benchmark_examples(source: dict[str, Any], limit: int | None, task: str, split: str) -> list[Example]:
    """A benchmark's file read by its own reader (llava_cit.data.benchmark_files: keyed and described as the
    benchmark does; its scoring goes with the task's `metric`, e.g. ocrbench), optionally only some of its types:
    {"type": "benchmark", "benchmark": "ocrbench", "path": "OCRBench.json", "images": "OCRBench_Images",
    "types": ["Scene Text-centric VQA"]}."""
    where = f"task '{task}': the {split} data"
    if "benchmark" not in source or "path" not in source:
        raise UserError(f"{where}: a source of type benchmark needs 'benchmark' and 'path'")
    every = read_benchmark(source["benchmark"], expand_data_root(source["path"], where),
                           expand_data_root(source.get("images"), where))
    types = source.get("types")
    examples = [ex for ex in every if not types or ex.meta.get("type") in types]
    if types and not examples:
        known = sorted({ex.meta.get("type") for ex in every})
        raise UserError(f"{where}: no sample of type {types} in {source['path']} (types: {', '.join(map(str, known))})")
    return examples[:limit] if limit is not None else examples


def _jsonl_text_examples(source: dict[str, Any], limit: int | None, task: str, keep_bad: bool = False) -> list[Example]:
    """Text-track JSONL: {"instruction", "input", "output"} per line.

    Optional per line: "references" (every acceptable output, e.g. ASSET's ten), "source" (the text
    SARI compares against; default: the input), "constraint" ({"type": start|contain|end, "word": ...}).
    """
    from llava_cit.data.llava_format import read_records

    examples = []
    for number, record in read_records(source["path"]):
        if limit is not None and len(examples) >= limit:
            break
        missing = [key for key in ("instruction", "output") if not isinstance(record, dict) or key not in record]
        if missing:
            error = f"{source['path']}: line {number}: missing field '{missing[0]}'"
            if not keep_bad:
                raise UserError(error)
            rid = str(record.get("id", number)) if isinstance(record, dict) else str(number)
            examples.append(Example(id=rid, turns=[(str(record.get("instruction", "")) if isinstance(record, dict)
                                                    else "", "")], task=task, meta={"error": error}))
            continue
        meta = {"answers": list(record["references"])} if record.get("references") else {}
        if record.get("source"):
            meta["source"] = record["source"]
        constraint = record.get("constraint")
        if constraint is not None:
            if not (isinstance(constraint, dict) and constraint.get("type") in ct0_prompts.CONSTRAINT_TYPES
                    and isinstance(constraint.get("word"), str)):
                raise UserError(f"{source['path']}: line {number}: field 'constraint' must be "
                                f"{{\"type\": start|contain|end, \"word\": ...}}")
            meta["constraint"] = constraint
        examples.append(Example(id=str(record.get("id", number)), turns=[(record["instruction"], record["output"])],
                                task=task, input=record.get("input", ""), meta=meta))
    return examples


def _ct0_examples(source: dict[str, Any], limit: int | None, task: str, seed: int, split: str) -> list[Example]:
    """A CT0 dataset (see llava_cit.data.ct0_datasets) from the Hub or local files, with the CT0 prompts."""
    reader = source.get("reader")
    if reader not in READERS:
        raise UserError(f"task '{task}': a ct0 source needs 'reader' (one of: {', '.join(READERS)})")
    rows = load_hf_dataset(source["path"], source.get("name"), source.get("split", "train"), source.get("data_files"))
    return read_ct0(reader, rows, limit, seed, split)


def source_name(source: dict[str, Any]) -> str:
    return str(source.get("path") or source.get("generator") or source.get("type", "?"))


def check_unique_ids(examples: list[Example], where: str) -> None:
    """Every sample key is unique: resume, scoring and replay all look samples up by it."""
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise UserError(f"{where}: duplicate sample id '{example.id}' (sample keys must be unique)")
        seen.add(example.id)


def load_source(source: dict[str, Any], task: str, split: str, limit: int | None = None, seed: int = 0,
                suffix: str = "", keep_bad: bool = False) -> list[Example]:
    """A task's examples from its declared source. `keep_bad` (evaluation): records that cannot be served are
    kept, their reason in `meta["error"]`, to be counted as bad samples."""
    if not source:
        raise UserError(f"task '{task}' declares no {split} data (e.g. a benchmark that is for evaluation only)")
    kind = source.get("type", "llava")
    if source.get("max_records") is not None:  # the source's own cap (the paper trains on 100,000 per task)
        limit = source["max_records"] if limit is None else min(limit, source["max_records"])
    if kind == "synthetic":
        count = source.get("count", 200) if limit is None else min(limit, source.get("count", limit))
        generator = source.get("generator", task)
        if generator not in synthetic.GENERATORS:
            raise UserError(f"unknown synthetic generator '{generator}' (known: {', '.join(synthetic.GENERATORS)})")
        examples = synthetic.generate(generator, count, seed=source.get("seed", seed), split=split)
    elif kind == "llava":
        if "path" not in source:
            raise UserError(f"task '{task}': {split} source of type llava needs 'path'")
        where = f"task '{task}': the {split} data"
        examples = load_llava(expand_data_root(source["path"], where),
                              expand_data_root(source.get("image_folder"), where), limit, task, keep_bad)
    elif kind == "hf":
        examples = _hf_examples(source, limit, task)
    elif kind == "jsonl":
        examples = _jsonl_text_examples(source, limit, task, keep_bad)
    elif kind == "benchmark":
        examples = _benchmark_examples(source, limit, task, split)
    elif kind == "ct0":
        examples = _ct0_examples(source, limit, task, seed, split)
    elif kind in released.SOURCE_TYPES:  # a task sequence's released files (UCIT, MLLM-DCL, CoIN)
        examples = released.load_released(source, task, split, limit, keep_bad)
    elif kind == "holdout":  # a validation split carved from the training data (llava_cit.data.holdout)
        examples = holdout_examples(source, task, lambda inner, t, s, n: load_source(inner, t, s, n, seed))[:limit]
    else:
        raise UserError(f"task '{task}': unknown source type '{kind}' (known: {', '.join(SOURCE_TYPES)})")
    if not examples:
        raise UserError(f"task '{task}': the {split} dataset is empty")
    if split == "test" and kind != "benchmark":  # a benchmark's reader gives one sample per answer already
        examples = split_turns(examples)
    check_unique_ids(examples, f"task '{task}': {split} source {source_name(source)}")
    for example in examples:
        example.task = task
        if suffix:  # every question carries the answer-format line, as in LLaVA-1.5's data
            example.turns = [(f"{q}\n{suffix}" if without_image_token(q) and suffix not in q else q, a)
                             for q, a in example.turns]
    return examples
