"""Read the records of a top-level JSON array one at a time, in bounded memory (for ~1 GB files such as
LLaVA-1.5's llava_v1_5_mix665k.json): memory holds one chunk and one record, never the file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from llava_cit.util.errors import UserError

CHUNK = 1 << 20


def iter_json_array(path: Path, chunk_size: int = CHUNK) -> Iterator[dict]:
    """Each element of the array in `path`, in order; a one-line error naming the file for anything else."""
    decoder = json.JSONDecoder()
    buffer, offset, consumed, started = "", 0, 0, False
    with open(path, encoding="utf-8") as handle:
        while True:
            try:
                data = handle.read(chunk_size)
            except UnicodeDecodeError:
                raise UserError(f"{path}: not UTF-8 text (after character {consumed + len(buffer)}); save the file "
                                "as UTF-8") from None
            eof = not data
            consumed += offset
            buffer, offset = buffer[offset:] + data, 0
            while True:
                skip = " \t\r\n," if started else " \t\r\n\ufeff"
                while offset < len(buffer) and buffer[offset] in skip:
                    offset += 1
                if offset >= len(buffer):
                    break
                if not started:
                    if buffer[offset] != "[":
                        raise UserError(f"{path}: not a JSON array of records (it starts with {buffer[offset]!r})")
                    started, offset = True, offset + 1
                    continue
                if buffer[offset] == "]":
                    return
                try:
                    record, end = decoder.raw_decode(buffer, offset)
                except json.JSONDecodeError as err:
                    if eof:
                        raise UserError(f"{path}: malformed JSON at character {consumed + err.pos} ({err.msg})") from None
                    break  # the record continues in the next chunk
                offset = end
                yield record
            if eof:
                if not started:
                    raise UserError(f"{path}: empty file, not a JSON array")
                raise UserError(f"{path}: the JSON array is not closed (truncated file?)")
