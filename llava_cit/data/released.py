"""The released files of the field's task sequences (UCIT, MLLM-DCL, CoIN), read in their published layout.

Two source types, declared in a task's `train` / `test` (the shipped task files under llava_cit/tasks/sequences/):

* `instructions` — LLaVA-format training records `{"id", "image", "conversations": [...]}` (a JSON list). The
  released UCIT train files repeat ids (a VizWiz or Flickr30k image is one record per caption), so a repeated id is
  keyed `<id>#<n>` from its second occurrence on.
* `questions` — a released test file: a JSON list of `{"question_id", "image", "text", "answer", ...}`, the form
  LLaVA's model_vqa.py reads and the benchmarks' eval scripts score. `text` carries the instruction template.
  Options:
  - `answer_field`: the gold answer's field (default `answer`; CoIN's grounding: `answer_bbox`);
  - `captions`: a COCO-type reference file (UCIT's `val_coco_type_3000.json`): the references of the i-th record
    are the annotations of image id i + 1, whose file name must be the record's image file name;
  - `vqa_answers`: `{path, format: textvqa|vqav2|vizwiz, optional}`, the ten human answers of each question from
    the dataset's own annotation file (TextVQA_0.5.1_val.json, v2_mscoco_val2014_annotations.json, VizWiz's
    val.json), for VQA accuracy; `optional: true` reads them only where the file is there;
  - `suffix_by_answer`: `{answer: text, "*": text}` appended to `text` by the gold answer, as MLLM-CL's finance
    evaluation (model_fin.py) chooses its answer-format line;
  - `meta_fields`: record fields kept with the sample (e.g. grounding's `size`).

`path` may list several candidate files (a benchmark's repositories name them differently, e.g. UCIT's
`test_3000.json` on the Hub and `test.json` in MCITlib's configs): the first that exists is read. Paths may start
with `$LLAVA_CIT_DATA`. Images are resolved under `image_folder` (never outside it) and opened only when used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llava_cit.data.example import Example
from llava_cit.data.llava_format import conversation_turns, read_records
from llava_cit.data.paths import expand_data_root, refuse_system_root, resolve_under
from llava_cit.util.errors import UserError
from llava_cit.util.text_files import read_utf8

SOURCE_TYPES = ("instructions", "questions")
VQA_ANSWER_FORMATS = ("textvqa", "vqav2", "vizwiz")


def candidates(value: Any, where: str) -> list[Path]:
    """The candidate files of a source's `path` (a string or a list), with $LLAVA_CIT_DATA expanded."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise UserError(f"{where}: 'path' must be a file path or a list of them")
    return [Path(expand_data_root(v, where)) for v in values]


def first_existing(value: Any, where: str) -> Path:
    """The first candidate file that exists; a one-line error naming every candidate when none does."""
    paths = candidates(value, where)
    for path in paths:
        if path.is_file():
            return path
    shown = " or ".join(str(p) for p in paths)
    raise UserError(f"{where}: file not found: {shown} (download the benchmark's released files; "
                    f"`llava-cit data check` lists what is missing)")


def unique_keys(ids: list[str]) -> list[str]:
    """`id` for an id's first record, `id#n` for its n-th (n >= 2): the released train files repeat ids."""
    seen: dict[str, int] = {}
    keys = []
    for rid in ids:
        seen[rid] = seen.get(rid, 0) + 1
        keys.append(rid if seen[rid] == 1 else f"{rid}#{seen[rid]}")
    return keys


def _image_folder(source: dict, where: str, data_file: Path) -> Path:
    folder = expand_data_root(source.get("image_folder"), where)
    return Path(folder) if folder else data_file.parent


def read_instructions(source: dict, task: str, limit: int | None = None) -> list[Example]:
    """A released LLaVA-format training file as examples (images resolved, not opened)."""
    where = f"task '{task}': the train data"
    path = first_existing(source.get("path"), where)
    folder = _image_folder(source, where, path)
    records = read_records(path)[:limit] if limit is not None else read_records(path)
    ids = [str(r.get("id", i)) if isinstance(r, dict) else str(i) for i, (_, r) in enumerate(records)]
    if any(isinstance(r, dict) and r.get("image") for _, r in records):
        refuse_system_root(folder, f"{path}: the image folder")
    examples = []
    for key, (index, (line, record)) in zip(unique_keys(ids), enumerate(records)):
        at = f"{path}: line {line}" if line else f"{path}: record {index}"
        if not isinstance(record, dict):
            raise UserError(f"{at}: a record must be an object")
        image = resolve_under(folder, record["image"], f"{at}: field 'image': image path") if record.get("image") \
            else None
        examples.append(Example(id=key, turns=conversation_turns(record, at), image_path=image, task=task))
    return examples


def _load_json(path: Path, what: str):
    try:
        return json.loads(read_utf8(path))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: line {err.lineno}: malformed JSON ({err.msg}) in the {what}") from None


def caption_references(source: dict, where: str) -> dict[int, tuple[str, list[str]]]:
    """COCO-type references: image id -> (file name, captions)."""
    path = first_existing(source["captions"], f"{where}: captions")
    data = _load_json(path, "caption references")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or \
            not isinstance(data.get("annotations"), list):
        raise UserError(f"{path}: expected a COCO caption file with 'images' and 'annotations'")
    refs: dict[int, tuple[str, list[str]]] = {}
    for image in data["images"]:
        if isinstance(image, dict) and "id" in image:
            refs[image["id"]] = (str(image.get("file_name", "")), [])
    for note in data["annotations"]:
        if isinstance(note, dict) and note.get("image_id") in refs and isinstance(note.get("caption"), str):
            refs[note["image_id"]][1].append(note["caption"])
    return refs


def human_answers(source: dict, where: str) -> tuple[str | None, dict[str, list[str]]]:
    """(join key: question_id or image, {key: the human answers}) from a dataset's own annotation file; (None, {})
    where the file is `optional` and absent."""
    spec = source["vqa_answers"]
    if not isinstance(spec, dict) or spec.get("format") not in VQA_ANSWER_FORMATS or "path" not in spec:
        raise UserError(f"{where}: 'vqa_answers' must be {{path, format: {'|'.join(VQA_ANSWER_FORMATS)}, "
                        f"optional: true|false}}")
    if spec.get("optional") and not any(p.is_file() for p in candidates(spec["path"], where)):
        return None, {}
    path = first_existing(spec["path"], f"{where}: vqa_answers")
    data = _load_json(path, "human answers")

    def text(answer) -> str:
        return str(answer.get("answer", "")) if isinstance(answer, dict) else str(answer)

    if spec["format"] == "textvqa":
        rows = data.get("data", []) if isinstance(data, dict) else []
        return "question_id", {str(r["question_id"]): [text(a) for a in r.get("answers", [])] for r in rows
                               if isinstance(r, dict) and "question_id" in r}
    if spec["format"] == "vqav2":
        rows = data.get("annotations", []) if isinstance(data, dict) else []
        return "question_id", {str(r["question_id"]): [text(a) for a in r.get("answers", [])] for r in rows
                               if isinstance(r, dict) and "question_id" in r}
    rows = data if isinstance(data, list) else []
    return "image", {Path(str(r["image"])).name: [text(a) for a in r.get("answers", [])] for r in rows
                     if isinstance(r, dict) and "image" in r}


def _question(text: str, has_image: bool, suffixes: dict | None, gold: str) -> str:
    """The instruction as the released inference scripts build it: "<image>" markers dropped and put first, the
    answer-format line chosen by the gold answer appended where the benchmark does that."""
    question = text.replace("<image>", "").strip()
    if suffixes:
        question += suffixes.get(gold, suffixes.get("*", ""))
    return f"<image>\n{question}" if has_image else question


def read_questions(source: dict, task: str, limit: int | None = None, keep_bad: bool = True) -> list[Example]:
    """A released test file as examples; a record that cannot be served keeps its reason in `meta["error"]`."""
    where = f"task '{task}': the test data"
    path = first_existing(source.get("path"), where)
    folder = _image_folder(source, where, path)
    data = _load_json(path, "test file")
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of {{question_id, image, text, answer}} records")
    records = data[:limit] if limit is not None else data
    answer_field = source.get("answer_field", "answer")
    captions = caption_references(source, where) if source.get("captions") else None
    join, answers = human_answers(source, where) if source.get("vqa_answers") else (None, {})
    suffixes = source.get("suffix_by_answer")
    if any(isinstance(r, dict) and r.get("image") for r in records):
        refuse_system_root(folder, f"{path}: the image folder")
    ids = [str(r.get("question_id", i)) if isinstance(r, dict) else str(i) for i, r in enumerate(records)]
    examples = []
    for index, (key, record) in enumerate(zip(unique_keys(ids), records)):
        examples.append(_question_example(record, index, key, path, folder, answer_field, captions, join, answers,
                                          suffixes, source.get("meta_fields", []), task))
    if not keep_bad:
        bad = next((ex for ex in examples if ex.meta.get("error")), None)
        if bad is not None:
            raise UserError(bad.meta["error"])
    return examples


def _question_example(record, index: int, key: str, path: Path, folder: Path, answer_field: str, captions, join,
                      answers: dict, suffixes, meta_fields: list, task: str) -> Example:
    at = f"{path}: record {index}"
    if not isinstance(record, dict):
        return _bad(key, task, f"{at}: a record must be an object")
    missing = next((f for f in ("text", answer_field) if f not in record and not (f == answer_field and captions)),
                   None)
    if missing:
        return _bad(key, task, f"{at}: missing field '{missing}'")
    gold = str(record.get(answer_field, ""))
    image = record.get("image")
    meta: dict[str, Any] = {"question_id": record.get("question_id", index), "image_file": image or "",
                            "question_text": record["text"],
                            **{f: record[f] for f in meta_fields if f in record}}
    references = [gold]
    if captions is not None:
        found = _caption_refs(captions, index, image, at)
        if isinstance(found, str):
            return _bad(key, task, found)
        references = found
    if join is not None:
        lookup = str(record.get("question_id")) if join == "question_id" else Path(str(image or "")).name
        if lookup not in answers:
            return _bad(key, task, f"{at}: no human answers for {join} '{lookup}' in the vqa_answers file")
        meta["vqa_answers"] = answers[lookup]
    image_path = None
    if image:
        try:
            image_path = resolve_under(folder, image, f"{at}: field 'image': image path")
        except UserError as err:
            return _bad(key, task, str(err))
    return Example(id=key, turns=[(_question(record["text"], bool(image), suffixes, gold), references[0])],
                   task=task, image_path=image_path, meta={"answers": references, "answer": gold, **meta})


def _caption_refs(captions: dict, index: int, image, at: str) -> list[str] | str:
    """The references of the index-th record (image id index + 1), or the reason they cannot be used."""
    entry = captions.get(index + 1)
    if entry is None:
        return f"{at}: the caption file has no image with id {index + 1}"
    name, refs = entry
    if image and Path(name).name != Path(str(image)).name:
        return f"{at}: the caption file's image {index + 1} is '{name}', the record's image is '{image}'"
    if not refs:
        return f"{at}: the caption file has no caption for image {index + 1}"
    return refs


def _bad(key: str, task: str, error: str) -> Example:
    return Example(id=key, turns=[("", "")], task=task, meta={"error": error})


def load_released(source: dict, task: str, split: str, limit: int | None = None, keep_bad: bool = False
                  ) -> list[Example]:
    """Examples of a source of type `instructions` or `questions`."""
    kind = source.get("type")
    if kind == "instructions":
        return read_instructions(source, task, limit)
    return read_questions(source, task, limit, keep_bad=keep_bad)
