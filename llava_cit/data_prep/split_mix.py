"""`llava-cit data split-mix`: LLaVA-1.5's instruction mixture (llava_v1_5_mix665k.json) split into one
LLaVA-format file per source, streaming.

A record's source is the first folder of its `image` path (`coco/`, `gqa/`, `ocr_vqa/`, `textvqa/`, `vg/`);
records without an image go to `text.json`. Records are copied unchanged (multi-turn stays multi-turn).
Each output is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path, PurePosixPath

from llava_cit.data_prep.json_stream import CHUNK, iter_json_array
from llava_cit.util.errors import UserError

TEXT_ONLY = "text"


def record_source(record, path: Path, index: int) -> str:
    where = f"{path}: record {index}" + (f" (id {record.get('id')})" if isinstance(record, dict) else "")
    if not isinstance(record, dict):
        raise UserError(f"{where}: not a JSON object")
    if not isinstance(record.get("conversations"), list) or not record["conversations"]:
        raise UserError(f"{where}: no 'conversations' field")
    image = record.get("image")
    if image is None:
        return TEXT_ONLY
    if not isinstance(image, str) or not image:
        raise UserError(f"{where}: field 'image' must be a relative path")
    parts = PurePosixPath(image).parts
    if PurePosixPath(image).is_absolute() or ".." in parts or len(parts) < 2:
        raise UserError(f"{where}: field 'image' = {image!r} escapes the image root (or names no source folder)")
    return parts[0]


def split_mix(path: Path, out: Path, progress=None, chunk_size: int = CHUNK) -> dict[str, int]:
    """Write out/<source>.json for every source; returns the record count per source."""
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    out.mkdir(parents=True, exist_ok=True)
    handles, counts, temps = {}, Counter(), {}
    try:
        for index, record in enumerate(iter_json_array(path, chunk_size)):
            source = record_source(record, path, index)
            if source not in handles:
                temps[source] = out / f".{source}.json.partial"
                handles[source] = open(temps[source], "w", encoding="utf-8")
                handles[source].write("[\n")
            else:
                handles[source].write(",\n")
            handles[source].write(json.dumps(record, ensure_ascii=False))
            counts[source] += 1
            if progress is not None:
                progress(1)
        for source, handle in handles.items():
            handle.write("\n]\n")
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(temps[source], out / f"{source}.json")
    finally:
        for source, handle in handles.items():
            if not handle.closed:
                handle.close()
                Path(temps[source]).unlink(missing_ok=True)
    return dict(sorted(counts.items()))
