"""The run directory: one writer at a time (a lock), and a config that matches the run it holds.

A rerun resumes when its config equals the stored one (every key, `eval.*` included) except for tasks
appended at the end of the sequence; any other change is refused (`--force` moves the old run aside).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from llava_cit.atomic import write_text
from llava_cit.errors import UserError
from llava_cit.run_lock import DirectoryLock
from llava_cit.text_files import read_utf8


def _identity(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    data.pop("tasks", None)
    return data


def changed_keys(previous: dict, current: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(previous) | set(current)):
        a, b = previous.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def read_run_config(config_path: Path) -> dict:
    """A run directory's config.yaml as a mapping, or a one-line error naming the file."""
    try:
        config = yaml.safe_load(read_utf8(config_path)) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{config_path}: malformed YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(config, dict):
        raise UserError(f"{config_path}: not a run config (a YAML mapping expected, got {type(config).__name__})")
    return config


def open_run_directory(run_dir: Path, current: dict, force: bool, say=lambda text: None) -> DirectoryLock:
    """Lock `run_dir` (created if needed) and write the config; refuses a different run's directory."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = DirectoryLock(run_dir).acquire()
    try:
        config_path = run_dir / "config.yaml"
        if config_path.is_file():
            previous = read_run_config(config_path)
            old_tasks, new_tasks = previous.get("tasks", []), current["tasks"]
            changed = changed_keys(_identity(previous), _identity(current))
            if new_tasks[: len(old_tasks)] != old_tasks:
                changed.append("tasks")
            if changed:
                if not force:
                    raise UserError(f"{run_dir} holds a run of a different config ({', '.join(changed[:6])} differ); "
                                    f"use another --out, or --force to move the old run aside and start over")
                aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
                aside.mkdir()
                for entry in run_dir.iterdir():
                    if entry.name != ".lock":
                        entry.rename(aside / entry.name)
                say(f"moved the previous run to {aside}")
        write_text(config_path, yaml.safe_dump(current, sort_keys=False))
    except BaseException:
        lock.release()
        raise
    return lock
