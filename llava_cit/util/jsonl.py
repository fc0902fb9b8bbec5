"""JSONL files. Ours are append-only and heal: a torn last line (a crash mid-write) is cut away before the next
append, so a bad line never ends up in the middle of the file. Another tool's are read strictly (`parse_lines`):
every line that is not a JSON object is reported with its number, never skipped silently."""

from __future__ import annotations

import json
import os
from pathlib import Path

from llava_cit.util.atomic import writing
from llava_cit.util.errors import UserError


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


def parse_lines(path: Path) -> list[tuple[int, dict | None, str | None]]:
    """Another tool's JSONL, read strictly: (line number, row, problem) for every non-blank line, `problem` saying
    why a line is not a JSON object (not UTF-8, malformed or torn JSON, another JSON value); nothing is skipped."""
    out: list[tuple[int, dict | None, str | None]] = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    for number, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            out.append((number, None, "not UTF-8 text"))
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            out.append((number, None, f"malformed JSON ({err.msg})"))
            continue
        out.append((number, row, None) if isinstance(row, dict) else
                   (number, None, f"a row must be a JSON object, not {type(row).__name__}"))
    return out
