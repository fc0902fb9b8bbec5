"""The run directory: one writer at a time (a lock), and a config that matches the run it holds.

A rerun resumes when its config equals the stored one (every key, `eval.*` included) except for tasks
appended at the end of the sequence, and when every task file it read is unchanged (task_files.json keeps each
file's checksum and what it declared); any other change is refused (`--force` moves the old run aside).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import yaml

from llava_cit.util.atomic import sha256_file, write_json, write_text
from llava_cit.util.errors import UserError
from llava_cit.util.run_lock import DirectoryLock
from llava_cit.util.text_files import read_utf8

TASK_FILES = "task_files.json"


# Settings that change how a run goes (memory, logging, checkpoint spacing), never what it learns: a run resumes
# across a change of them.
HOW_NOT_WHAT = {"train": ("gradient_checkpointing", "logging_steps", "report_to", "save_steps")}


def _identity(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    data.pop("tasks", None)
    for section, keys in HOW_NOT_WHAT.items():
        for key in keys:
            (data.get(section) or {}).pop(key, None)
    return data


# Values written by older code that mean what a newer value means for every run that code could write: the key, the
# old value, the new one. Before `auto` existed only LLaVA-1.5 processors took images, and `auto` pads for them.
SAME_AS_BEFORE = [("image_aspect_ratio", "pad", "auto")]


def _as_now(previous: dict, current: dict) -> dict:
    previous = dict(previous)
    for key, old, new in SAME_AS_BEFORE:
        if previous.get(key) == old and current.get(key) == new:
            previous[key] = new
    return previous


def _added_since(previous: dict, current: dict, defaults: dict) -> dict:
    """`previous` with the settings added to the config since it was written filled in at their defaults (a run
    written before a setting existed ran as its default)."""
    merged = dict(previous)
    for key, value in current.items():
        if key not in previous and key in defaults:
            merged[key] = defaults[key]
        elif isinstance(value, dict) and isinstance(previous.get(key), dict) and isinstance(defaults.get(key), dict):
            merged[key] = _added_since(previous[key], value, defaults[key])
    return merged


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


def task_files(tasks) -> dict[str, dict]:
    """{task name: its file, the file's sha256 and what it declares} for the tasks read from a file (a built-in
    task is the package's)."""
    return {t.name: {"file": t.source_file, "sha256": sha256_file(t.source_file),
                     "spec": {k: v for k, v in dataclasses.asdict(t).items() if k != "source_file"}}
            for t in tasks if t.source_file}


def changed_task_files(run_dir: Path, current: dict[str, dict]) -> list[str]:
    """The task files whose content differs from what the run in `run_dir` read (found by task name, or by file
    when the edit renamed the task), each named with what changed."""
    path = run_dir / TASK_FILES
    if not path.is_file():  # a run from before task files were recorded
        return []
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        stored = {name: (entry["file"], entry["sha256"], entry.get("spec") or {}) for name, entry in stored.items()}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError):
        raise UserError(f"{path}: unreadable (each task's 'file' and 'sha256' expected)") from None
    by_file = {file: (file, digest, spec) for file, digest, spec in stored.values()}
    changed = []
    for name, entry in current.items():
        before = stored.get(name) or by_file.get(entry["file"])
        if before is not None and before[1] != entry["sha256"]:
            keys = changed_keys(before[2], entry["spec"]) if isinstance(before[2], dict) else []
            changed.append(f"task '{name}': {entry['file']} changed since the run read it ({', '.join(keys) or 'its text'})")
    return changed


def open_run_directory(run_dir: Path, current: dict, force: bool, say=lambda text: None,
                       tasks: dict[str, dict] | None = None) -> DirectoryLock:
    """Lock `run_dir` (created if needed) and write the config and `tasks` (task_files' record of the task files
    read); refuses a different run's directory."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = DirectoryLock(run_dir).acquire()
    try:
        config_path = run_dir / "config.yaml"
        if config_path.is_file():
            previous = read_run_config(config_path)
            old_tasks, new_tasks = previous.get("tasks", []), current["tasks"]
            from llava_cit.config import RunConfig

            previous = _as_now(_added_since(previous, current, RunConfig().to_dict()), current)
            changed = changed_keys(_identity(previous), _identity(current))
            if new_tasks[: len(old_tasks)] != old_tasks:
                changed.append("tasks")
            differ = ([f"{', '.join(changed[:6])} differ"] if changed else []) + changed_task_files(run_dir, tasks or {})
            if differ:
                if not force:
                    raise UserError(f"{run_dir} holds a run of a different config ({'; '.join(differ)}); "
                                    f"use another --out, or --force to move the old run aside and start over")
                aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
                aside.mkdir()
                for entry in run_dir.iterdir():
                    if entry.name != ".lock":
                        entry.rename(aside / entry.name)
                say(f"moved the previous run to {aside}")
        write_text(config_path, yaml.safe_dump(current, sort_keys=False))
        if tasks:
            write_json(run_dir / TASK_FILES, tasks)
    except BaseException:
        lock.release()
        raise
    return lock
