"""A switch's directory: switch.safetensors (tensors), switch.json (description and checksums) and, for the tiny
in-code extractor, extractor/ (its weights and tokenizer). Written atomically; read back only when every file it
names lies inside the directory and (unless the caller has just verified them) matches its checksum."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from switch.errors import SwitchError
from switch.extractor import TINY_EXTRACTOR, FeatureExtractor

FORMAT_VERSION = 1
WEIGHTS, META, EXTRACTOR_DIR = "switch.safetensors", "switch.json", "extractor"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _inside(directory: Path, name, field: str) -> Path:
    """`directory / name`, refused unless it (symlinks followed) stays inside `directory`."""
    root = directory.resolve()
    path = (root / str(name)).resolve()
    if root not in path.parents:
        raise SwitchError(f"{directory / META}: {field} '{name}' escapes the switch directory")
    return path


def write_switch(directory: str | Path, tensors: dict[str, torch.Tensor], meta: dict,
                 extractor: FeatureExtractor) -> None:
    """Write `tensors` and `meta` (plus format version, extractor path and checksums) as the switch `directory`,
    replacing it whole. Refuses tensors holding NaN or infinity."""
    directory = Path(directory)
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:  # never a switch that routes on NaN
        raise SwitchError(f"refusing to save the switch {directory}: {len(bad)} tensor(s) hold NaN or infinity "
                          f"(first: {bad[0]}); lower switch.lr")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS))
        extractor_path = None
        if extractor.model_id == TINY_EXTRACTOR:
            extractor.save_model(tmp / EXTRACTOR_DIR)
            extractor_path = EXTRACTOR_DIR
        files = [p for p in sorted(tmp.rglob("*")) if p.is_file()]
        described = {"format_version": FORMAT_VERSION, "extractor": extractor.model_id,
                     "extractor_path": extractor_path, **meta,
                     "checksums": {str(p.relative_to(tmp)): _sha256(p) for p in files}}
        (tmp / META).write_text(json.dumps(described, indent=2) + "\n", encoding="utf-8")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_switch(directory: str | Path, verify_checksums: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """switch.json and switch.safetensors of a saved switch, every named file checked."""
    directory = Path(directory)
    meta_path = directory / META
    if not meta_path.is_file():
        raise SwitchError(f"{directory}: not a switch directory (no {META})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SwitchError(f"{meta_path}: line {err.lineno}: malformed JSON ({err.msg})") from None
    for name, digest in meta.get("checksums", {}).items():
        path = _inside(directory, name, "a checksummed file")
        if not path.is_file():
            raise SwitchError(f"{directory}: missing file {name}")
        if verify_checksums and _sha256(path) != digest:
            raise SwitchError(f"{directory}: checksum mismatch for {name} (file changed since it was saved)")
    if WEIGHTS not in meta.get("checksums", {}):
        raise SwitchError(f"{directory}: {META} lists no checksum for {WEIGHTS}")
    return meta, load_file(str(directory / WEIGHTS))


def saved_extractor(directory: str | Path, meta: dict, cache_dir: str | None = None) -> FeatureExtractor:
    """The extractor a saved switch names: the one saved beside it (tiny), or the model id it names."""
    directory = Path(directory)
    if meta.get("extractor_path"):
        from transformers import AutoModel, AutoTokenizer

        path = _inside(directory, meta["extractor_path"], "extractor_path")
        return FeatureExtractor.from_model(
            AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path), meta["extractor"],
            layer=meta["layer"], pooling=meta["pooling"], cache_dir=cache_dir, seed=meta.get("seed", 0))
    return FeatureExtractor(meta["extractor"], layer=meta["layer"], pooling=meta["pooling"], cache_dir=cache_dir)
