"""Resolve dataset-relative paths, refusing any that escape their data root."""

from __future__ import annotations

import os
from pathlib import Path

from llava_cit.util.errors import UserError


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


SYSTEM_FOLDERS = ("/etc", "/bin", "/sbin", "/boot", "/dev", "/proc", "/sys", "/usr", "/lib", "/lib32", "/lib64",
                  "/var", "/root", "/run", "/srv", "/opt", "/home")
UNDER_SYSTEM = ("/etc", "/bin", "/sbin", "/boot", "/dev", "/proc", "/sys", "/usr/bin", "/usr/sbin", "/usr/lib")


def refuse_system_root(root: str | Path, what: str) -> Path:
    """`root` resolved, unless it is the filesystem root, the home folder, a system folder (or inside /etc, /usr/bin,
    ...): images are looked up under it, and a record naming `etc/passwd` must not be readable as data."""
    resolved = Path(root).resolve()
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError):  # no home folder known
        home = Path(resolved.anchor)
    if resolved == Path(resolved.anchor):
        kind = "the filesystem root"
    elif resolved == home or resolved in home.parents:
        kind = "the home folder" if resolved == home else "a folder holding home folders"
    elif resolved in [Path(p) for p in SYSTEM_FOLDERS] or any(Path(p) in (resolved, *resolved.parents) for p in UNDER_SYSTEM):
        kind = "a system folder"
    else:
        return resolved
    raise UserError(f"{what} '{root}' is {kind} ({resolved}), which holds system or private files: point it at the "
                    f"folder that holds the images")
