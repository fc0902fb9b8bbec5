"""Find tasks by name (built-in) or by file (a researcher's YAML/JSON/Python task file)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import yaml

import llava_cit.tasks.builtin  # noqa: F401  (registers the built-in tasks)
from llava_cit.tasks.catalog import TASKS, register  # noqa: F401  (register: a task file's or a plugin's one line)
from llava_cit.tasks.spec import TaskSpec
from llava_cit.util.errors import UserError
from llava_cit.util.text_files import read_utf8


def known_tasks() -> list[str]:
    return TASKS.names()


def _relative(value: str) -> bool:
    """A path to resolve against the task file's folder: neither absolute, nor under $LLAVA_CIT_DATA, nor a benchmark
    file's hf:<id>."""
    return not Path(value).is_absolute() and not value.startswith(("$", "hf:"))


def _absolutise(source: dict, base: Path) -> dict:
    """Relative local paths in a task file are relative to the file's folder (Hub ids and hf:<id> stay as they are;
    paths under $LLAVA_CIT_DATA are expanded when the data is read)."""
    source = dict(source)
    hub = source.get("type", "llava") in ("hf", "ct0")
    for key in ("data_files",) if hub else ("path", "image_folder", "images", "captions"):
        value = source.get(key)
        if isinstance(value, str) and _relative(value):
            source[key] = str((base / value).resolve())
        elif isinstance(value, list):
            source[key] = [str((base / v).resolve()) if isinstance(v, str) and _relative(v) else v for v in value]
    return source


def load_task_file(path: str | Path) -> TaskSpec:
    """A task from a `.yaml`/`.yml`/`.json` spec, or a `.py` file defining `TASK = TaskSpec(...)`.

    Relative data paths inside the file are taken relative to the file's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"task file not found: {path}")
    if path.suffix == ".py":
        module_spec = importlib.util.spec_from_file_location(f"llava_cit_task_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        spec = getattr(module, "TASK", None)
        if not isinstance(spec, TaskSpec):
            raise UserError(f"{path}: a Python task file must define TASK = TaskSpec(...)")
        data = None
    else:
        try:
            text = read_utf8(path)
            data = yaml.safe_load(text) if path.suffix != ".json" else json.loads(text)
        except (yaml.YAMLError, json.JSONDecodeError) as err:
            mark = getattr(err, "problem_mark", None)
            line = mark.line + 1 if mark else getattr(err, "lineno", "?")
            raise UserError(f"{path}: line {line}: malformed task file") from None
        if not isinstance(data, dict) or "name" not in data:
            raise UserError(f"{path}: a task file is a mapping with at least 'name'")
        try:
            spec = TaskSpec(**{k: v for k, v in data.items() if k != "source_file"})
        except TypeError as err:
            raise UserError(f"{path}: {err}") from None
    spec.train = _absolutise(spec.train, path.parent)
    spec.test = _absolutise(spec.test, path.parent)
    spec.source_file = str(path)
    return spec.validate()


def resolve_task(entry: Any, base_dir: Path | None = None) -> TaskSpec:
    """A config `tasks:` entry: a registered name, a task file path, or {name|file, ...overrides}."""
    known = known_tasks()
    overrides: dict[str, Any] = {}
    if isinstance(entry, dict):
        entry = dict(entry)
        reference = entry.pop("file", None) or entry.pop("name", None)
        overrides = entry
    else:
        reference = entry
    if not isinstance(reference, str):
        raise UserError(f"a task entry needs a name or a file, got {entry!r}")
    if reference in TASKS:
        spec = TASKS.get(reference)
    elif reference.endswith((".yaml", ".yml", ".json", ".py")):
        path = Path(reference)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        spec = load_task_file(path)
    else:
        raise UserError(f"unknown task '{reference}' (known: {', '.join(known)}; or a task file path)")
    return spec.with_overrides(overrides).validate() if overrides else spec


from llava_cit.tasks.sequences import load_shipped  # noqa: E402  (the task sequences' task files: UCIT, CoIN, MLLM-DCL)

load_shipped(load_task_file)
