"""Reading a user's text file (config, task file, data, instructions): UTF-8, or a one-line error naming the
file, line and offending byte instead of a UnicodeDecodeError traceback."""

from __future__ import annotations

from pathlib import Path

from llava_cit.util.errors import UserError


def read_utf8(path: str | Path) -> str:
    """The text of `path` as `Path.read_text(encoding="utf-8")` gives it (universal newlines)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise not_utf8(path, data, err) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def not_utf8(path: str | Path, data: bytes, err: UnicodeDecodeError) -> UserError:
    """The one-line error for `err`, raised decoding `data` (the file's bytes, or the part read so far)."""
    line = data.count(b"\n", 0, err.start) + 1
    return UserError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                     f"save the file as UTF-8")
