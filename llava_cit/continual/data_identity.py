"""A task's data as loaded, in one checksum: what `eval.upper_bound_from` compares between two runs.

Each example counts with its id, conversation, text input, scoring metadata and image: an image in memory by its
pixels, an image file by its name (the same data under another folder is the same data).
"""

from __future__ import annotations

import hashlib
import json

from llava_cit.data.example import Example


def examples_sha256(examples: list[Example]) -> str:
    digest = hashlib.sha256()
    for ex in examples:
        fields = {"id": ex.id, "turns": [list(turn) for turn in ex.turns], "input": ex.input,
                  "meta": json.dumps(ex.meta, sort_keys=True, default=str),
                  "image_file": ex.image_path.name if ex.image_path is not None else None}
        digest.update(json.dumps(fields, sort_keys=True).encode())
        if ex.image is not None:
            digest.update(f"{ex.image.mode}{ex.image.size}".encode())
            digest.update(hashlib.sha256(ex.image.tobytes()).digest())
    return digest.hexdigest()
