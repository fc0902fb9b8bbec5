"""`llava-cit status RUN`: where a running or stopped run is, read from its files. Never writes to the run."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from llava_cit.continual.manifest import Manifest
from llava_cit.continual.run_directory import read_run_config
from llava_cit.continual.train_log import read_train_log
from llava_cit.util.errors import UserError
from llava_cit.util.run_lock import lock_holder
from llava_cit.util.run_log import SESSION_START, RunLog
from llava_cit.util.text_files import read_utf8


def _eta(rows: list[dict]) -> tuple[float | None, float | None]:
    """(seconds per step, seconds left) from the current stage's last logged rows of one session."""
    if len(rows) < 2:
        return None, None
    last = rows[-1]
    session = [r for r in rows if r["time"] <= last["time"]]
    first = next((r for r in reversed(session[:-1]) if r["step"] < last["step"]), None)
    if first is None or last["time"] <= first["time"]:
        return None, None
    per_step = (last["time"] - first["time"]) / (last["step"] - first["step"])
    left = max(0, (last.get("max_steps") or last["step"]) - last["step"]) * per_step
    return per_step, left


TASK_FILE_SUFFIXES = (".yaml", ".yml", ".json", ".py")


def _task_name(entry) -> str:
    """A config `tasks:` entry's task name, as the rest of the tool names it: a built-in's name, or the `name` a
    task file declares (read, never executed: a Python task file, or one not found from here, shows its stem)."""
    if isinstance(entry, dict):
        if isinstance(entry.get("name"), str):
            return entry["name"]
        entry = entry.get("file")
    if not isinstance(entry, str):
        return str(entry)
    if not entry.endswith(TASK_FILE_SUFFIXES):
        return entry
    path = Path(entry)
    if path.suffix != ".py" and path.is_file():
        try:
            data = yaml.safe_load(read_utf8(path))
        except (UserError, yaml.YAMLError, OSError):
            data = None
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            return data["name"]
    return path.stem


def run_status(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no config.yaml)")
    config = read_run_config(config_path)
    entries = config.get("tasks") or []
    if not isinstance(entries, list):
        raise UserError(f"{config_path}: 'tasks' must be a list, got {type(entries).__name__}")
    tasks = [_task_name(entry) for entry in entries]
    manifest = Manifest(run_dir)
    finished = []
    for index, stage in enumerate(manifest.stages):
        try:
            manifest.verify(index)
            verified = "verified"
        except UserError as err:
            verified = f"NOT verified: {err}"
        if isinstance(stage.get("task"), str) and index < len(tasks):
            tasks[index] = stage["task"]  # the name the stage was trained under
        finished.append({"stage": index, "task": stage.get("task"), "checksums": verified,
                         "scores": stage.get("scores"), "seconds": stage.get("seconds")})
    current = len(manifest.stages)
    status = {"run": str(run_dir), "model": config.get("model"), "method": config.get("method"), "tasks": tasks,
              "finished": finished, "complete": current >= len(tasks) and bool(tasks), "lock_holder": lock_holder(run_dir)}
    if not status["complete"]:
        rows = [r for r in read_train_log(run_dir) if r.get("stage") == current
                and all(isinstance(r.get(key), (int, float)) for key in ("time", "step"))]
        adapter_rows = [r for r in rows if r.get("kind", "adapter") == "adapter"]
        last = (adapter_rows or rows or [None])[-1]
        per_step, left = _eta(adapter_rows)
        status["current"] = {
            "stage": current, "task": tasks[current] if current < len(tasks) else None,
            "step": last["step"] if last else None, "total_steps": last.get("max_steps") if last else None,
            "last_loss": last.get("loss") if last else None,
            "tokens_per_second": last.get("tokens_per_second") if last else None,
            "seconds_per_step": per_step, "eta_seconds": left,
        }
    error = RunLog(run_dir / "run.log").last_error(session_start=SESSION_START)
    status["last_error"] = error if (status["lock_holder"] is None and not status["complete"]) else None
    return status


def _shown(value, fmt: str = "{:.3f}") -> str:
    """A number as `fmt`; anything else (a tampered or torn file) as itself, marked, instead of a traceback."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt.format(value)
    return f"{value!r} (not a number)"


def print_status(status: dict, echo=print) -> None:
    holder = status["lock_holder"]
    echo(f"run {status['run']}: {status['method']} on {status['model']}, tasks {' -> '.join(status['tasks'])}")
    echo(f"process: {'running, process ' + str(holder) if holder else 'none holds the run (stopped or finished)'}")
    for stage in status["finished"]:
        values = stage["scores"] if isinstance(stage["scores"], list) else [stage["scores"]]
        scores = ", ".join(_shown(s) for s in values if s is not None) or "none"
        echo(f"  stage {stage['stage']} {stage['task']}: finished, checksums {stage['checksums']}; scores {scores}")
    if status["complete"]:
        unverified = [str(stage["stage"]) for stage in status["finished"] if stage["checksums"] != "verified"]
        echo(f"all stages finished, but stage {', '.join(unverified)} NOT verified: do not trust results.json" if unverified
             else "all stages finished: results.json is final")
    current = status.get("current")
    if current:
        step = f"step {current['step']}/{current['total_steps']}" if current["step"] is not None else "no step logged yet"
        loss = f", last loss {_shown(current['last_loss'], '{:.4f}')}" if current["last_loss"] is not None else ""
        eta = f", ETA {current['eta_seconds'] / 60:.1f} min" if current["eta_seconds"] is not None else ""
        speed = f", {_shown(current['tokens_per_second'], '{:.0f}')} tokens/s" if current["tokens_per_second"] else ""
        echo(f"  stage {current['stage']} {current['task']}: {step}{loss}{speed}{eta}")
    if status.get("last_error"):
        echo(f"stopped with: {status['last_error']}")


def status_json(status: dict) -> str:
    return json.dumps(status, indent=2)
