"""`llava-cit data ocrbench`: OCRBench's 1,000 records and images from its Hugging Face copy
(`echo840/OCRBench`: columns dataset, question, question_type, answer, image), written in the official
layout, `OUT/OCRBench.json` + `OUT/OCRBench_Images/`, for users without the official archive.

Records carry the official fields (dataset_name, id, image_path, question, answers, type). The Hugging Face
copy has no `id` and no image path: `id` is the record's position in it (which is its sample key, `index`,
in `llava-cit eval`) and images are written as `<dataset_name>/<position>.<ext>`.
"""

from __future__ import annotations

import json
from pathlib import Path

from llava_cit.data.paths import resolve_under
from llava_cit.util.atomic import write_text
from llava_cit.util.errors import UserError

HF_COLUMNS = ("dataset", "question", "question_type", "answer", "image")
OFFICIAL_FIELDS = ("dataset_name", "id", "image_path", "question", "answers", "type")


def export_ocrbench(source: str, out: Path, split: str = "test", progress=None) -> int:
    import datasets

    try:
        rows = datasets.load_dataset(source, split=split)
    except Exception as err:
        raise UserError(f"cannot load OCRBench from '{source}' ({type(err).__name__}: {err})") from None
    missing = [c for c in HF_COLUMNS if c not in rows.column_names]
    if missing:
        raise UserError(f"{source}: not OCRBench's Hugging Face layout (missing columns: {', '.join(missing)})")
    images = out / "OCRBench_Images"
    records = []
    for index, row in enumerate(rows):
        image = row["image"]
        ext = (image.format or "PNG").lower().replace("jpeg", "jpg")
        rel = f"{row['dataset']}/{index}.{ext}"
        target = resolve_under(images, rel, f"{source}: record {index}, field 'dataset'", "the images folder")
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.partial")
            image.save(tmp, format=image.format or "PNG")
            tmp.replace(target)
        answers = list(row["answer"]) if isinstance(row["answer"], (list, tuple)) else row["answer"]
        records.append({"dataset_name": row["dataset"], "id": index, "image_path": rel, "question": row["question"],
                        "answers": answers[0] if isinstance(answers, list) and len(answers) == 1 else answers,
                        "type": row["question_type"]})
        if progress:
            progress(1)
    write_text(out / "OCRBench.json", json.dumps(records, ensure_ascii=False, indent=1) + "\n")
    return len(records)
