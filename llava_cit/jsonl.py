"""Append-only JSONL files that heal: a torn last line (a crash mid-write) is cut away before the next
append, so a bad line never ends up in the middle of the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from llava_cit.atomic import writing


def heal(path: Path) -> int:
    """Truncate `path` after its last complete, parseable line; returns the bytes removed."""
    if not path.is_file():
        return 0
    data = path.read_bytes()
    keep = len(data)
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1  # an unterminated last line was torn mid-write
    else:  # a terminated last line that does not parse (torn inside a multi-byte write) goes too
        start = data.rfind(b"\n", 0, len(data) - 1) + 1 if data else 0
        line = data[start:]
        if line.strip():
            try:
                json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                keep = start
    if keep < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
    return len(data) - keep


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append rows durably, after healing a torn last line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    heal(path)
    with writing(path), open(path, "a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        handle.flush()
        os.fsync(handle.fileno())


def read_rows(path: Path) -> list[dict]:
    """Every parseable object row; a torn line is skipped (and healed away by the next append)."""
    rows: list[dict] = []
    if not path.is_file():
        return rows
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows
