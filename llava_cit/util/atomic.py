"""Atomic file writes: write to a temporary sibling, then rename over the target."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llava_cit.util.errors import UserError

DISK_FULL_ERRNOS = (errno.EFBIG, errno.ENOSPC, errno.EDQUOT)
# how libraries that hide the OSError say it: safetensors ("os error 27"), torch.save (its stream writer's
# "file write failed", "basic_ios::clear: iostream error", "[enforce fail at inline_container.cc] unexpected pos")
DISK_FULL_TEXT = re.compile(r"os error (27|28|122)\b|file too large|no space left on device|disk quota exceeded|"
                            r"file write failed|basic_ios::clear|inline_container\.cc.*unexpected pos", re.IGNORECASE)
DISK_FULL_ADVICE = "no space left on the device, or a file-size limit reached; free space (or raise the limit), then " \
                   "rerun the same command to resume"


def is_disk_full(err: BaseException) -> bool:
    """An error from writing a file that is the disk (or a quota, or RLIMIT_FSIZE) saying no."""
    if isinstance(err, OSError) and err.errno is not None:
        return err.errno in DISK_FULL_ERRNOS
    if isinstance(err, (OSError, RuntimeError)) or type(err).__name__ == "SafetensorError":
        return bool(DISK_FULL_TEXT.search(str(err)))
    return False


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Writes to `path` inside the block: a full disk or a file-size limit becomes one line naming it."""
    try:
        yield
    except Exception as err:
        if is_disk_full(err):
            raise UserError(f"cannot write {path}: {DISK_FULL_ADVICE}") from None
        raise


def write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with writing(path), os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling path to write (by any library); renamed over `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with writing(path):
            yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def publish_dir(tmp_dir: str | Path, final_dir: str | Path) -> None:
    """Move a fully written temporary directory into place; refuses to replace a finished one, and to publish
    weights that are not finite (llava_cit.util.finite_weights)."""
    from llava_cit.util.finite_weights import require_finite_files

    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    if final_dir.exists():
        raise FileExistsError(f"{final_dir} already exists; finished artifacts are never overwritten")
    require_finite_files(tmp_dir, final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp_dir, final_dir)


def staging_path(final_dir: str | Path) -> Path:
    """Where `final_dir` is staged before it is published (staging_dir creates it)."""
    final_dir = Path(final_dir)
    return final_dir.parent / f".{final_dir.name}.partial"


def staging_dir(final_dir: str | Path) -> Path:
    """A fresh temporary directory next to `final_dir` (same filesystem, so publish is a rename)."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    stale = staging_path(final_dir)
    if stale.exists():
        shutil.rmtree(stale)
    stale.mkdir()
    return stale


def own_staging_dir(final_dir: str | Path) -> Path:
    """A staging directory of this process's own next to `final_dir`, for a shared cache entry that several
    processes may build at once: they never share, or delete, one another's (its name holds the process id)."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}.{os.getpid()}-", suffix=".partial"))


def publish_cache_entry(staging: str | Path, final_dir: str | Path, complete: str) -> bool:
    """Rename `staging` (from own_staging_dir) to `final_dir`; when another process published the same entry first
    (the same key, so the same content), it stays and `staging` goes. `complete`: a file the published entry holds.
    Returns whether this process's copy was published."""
    staging, final_dir = Path(staging), Path(final_dir)
    try:
        os.replace(staging, final_dir)
        return True
    except OSError:
        if not (final_dir / complete).is_file():
            raise
        shutil.rmtree(staging, ignore_errors=True)
        return False


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dir_checksums(directory: str | Path) -> dict[str, str]:
    directory = Path(directory)
    return {
        str(p.relative_to(directory)): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }
