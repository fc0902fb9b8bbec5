"""Resolve dataset-relative paths, refusing any that escape their data root."""

from __future__ import annotations

import os
from pathlib import Path

from llava_cit.errors import UserError


def resolve_under(root: str | Path, relative: str, what: str = "path", root_name: str = "its data root") -> Path:
    shown = root
    root = Path(root).resolve()
    candidate = (root / relative).resolve()
    if root not in candidate.parents:  # the root itself is a folder, never a file of the dataset
        raise UserError(f"{what} '{relative}' escapes {root_name} {shown}")
    return candidate


DATA_ROOT_VAR = "LLAVA_CIT_DATA"


def expand_data_root(value, what: str):
    """`value` with $LLAVA_CIT_DATA (the data root of the built-in gqa / ocrvqa tasks) replaced by its value."""
    if not isinstance(value, str) or DATA_ROOT_VAR not in value:
        return value
    root = os.environ.get(DATA_ROOT_VAR)
    if not root:
        raise UserError(f"{what} lies under ${DATA_ROOT_VAR}, which is not set: prepare the data with "
                        f"`llava-cit data split-mix ... --out $LLAVA_CIT_DATA/llava_cit` (README, 'Reproducing the "
                        f"paper') and export {DATA_ROOT_VAR}=<that data root>")
    return value.replace("${" + DATA_ROOT_VAR + "}", root).replace("$" + DATA_ROOT_VAR, root)
