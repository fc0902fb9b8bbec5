"""Resolve dataset-relative paths, refusing any that escape their data root."""

from __future__ import annotations

from pathlib import Path

from llava_cit.errors import UserError


def resolve_under(root: str | Path, relative: str, what: str = "path") -> Path:
    root = Path(root).resolve()
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise UserError(f"{what} '{relative}' escapes its data root {root}")
    return candidate
