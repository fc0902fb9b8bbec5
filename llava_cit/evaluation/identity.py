"""What produced an evaluation folder (`producer.json`): the run or model, adapter and switch checksums, the
generation settings, the prompt and the data file's checksum. Resuming into a folder made by another
producer or with other settings would mix two evaluations in one predictions file: it is refused."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from llava_cit.continual.manifest import Manifest
from llava_cit.util.atomic import write_json
from llava_cit.util.errors import UserError

PRODUCER = "producer.json"


def run_checksums(run_dir: Path, adapter: str | None) -> dict[str, dict]:
    """The manifest's checksums of a run's artifacts (every stage's, or the stage that learned `adapter`): they name
    the default output folder before anything loads. producer.json records those computed from the files loaded
    (RunServer.checksums)."""
    checksums: dict[str, dict] = {}
    for stage in Manifest(run_dir).stages:
        if isinstance(stage, dict) and (adapter is None or stage.get("task") == adapter):
            checksums.update(stage.get("checksums") or {})
    return dict(sorted(checksums.items()))


def producer(benchmark: str, data: str, data_sha256: str, source: dict, generation: dict, prompt: dict) -> dict:
    return {"benchmark": benchmark, "data": data, "data_sha256": data_sha256, "source": source,
            "generation": generation, "prompt": prompt}


def default_output(benchmark: str, label: str, identity: dict) -> Path:
    """`evals/<benchmark>-<run or model>-<hash>`: the hash of the producer, so two runs never share a folder."""
    digest = hashlib.sha256(json.dumps(identity["source"], sort_keys=True).encode()).hexdigest()[:8]
    return Path("evals") / f"{benchmark}-{label}-{digest}"


def _move_aside(out_dir: Path, say) -> None:
    """Start over: everything in `out_dir` but its lock moves to a dated sibling folder."""
    aside = out_dir.with_name(f"{out_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    aside.mkdir(parents=True, exist_ok=True)
    for entry in out_dir.iterdir():
        if entry.name != ".lock":
            entry.rename(aside / entry.name)
    say(f"moved the previous evaluation to {aside}")


def claim(out_dir: Path, identity: dict, force: bool, say=lambda text: None) -> None:
    """Record `identity` in `out_dir` (locked by the caller), or refuse when the folder holds another producer's
    evaluation."""
    path = out_dir / PRODUCER
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != identity:
            if not force:
                changed = sorted(k for k in set(previous) | set(identity) if previous.get(k) != identity.get(k))
                raise UserError(f"{out_dir} holds an evaluation by another producer or with other settings "
                                f"({', '.join(changed)} differ); use another --out, or --force to start over")
            _move_aside(out_dir, say)
    elif force and any(e.name != ".lock" for e in out_dir.iterdir()):
        _move_aside(out_dir, say)
    write_json(path, identity)
