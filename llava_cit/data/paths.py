"""Resolve dataset-relative paths, refusing any that escape their data root."""

from __future__ import annotations

from pathlib import Path

from llava_cit.errors import UserError


def resolve_under(root: str | Path, relative: str, what: str = "path", root_name: str = "its data root") -> Path:
    shown = root
    root = Path(root).resolve()
    candidate = (root / relative).resolve()
    if root not in candidate.parents:  # the root itself is a folder, never a file of the dataset
        raise UserError(f"{what} '{relative}' escapes {root_name} {shown}")
    return candidate
