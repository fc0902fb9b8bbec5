"""`llava-cit status RUN`: where a running or stopped run is, read from its files. Never writes to the run."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from llava_cit.continual.manifest import Manifest
from llava_cit.continual.train_log import read_train_log
from llava_cit.errors import UserError
from llava_cit.run_lock import lock_holder
from llava_cit.run_log import RunLog


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


def run_status(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no config.yaml)")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    tasks = [t if isinstance(t, str) else (t.get("name") if isinstance(t, dict) else str(t)) for t in config.get("tasks", [])]
    tasks = [Path(t).stem if isinstance(t, str) and t.endswith((".yaml", ".yml", ".json", ".py")) else t for t in tasks]
    manifest = Manifest(run_dir)
    finished = []
    for index, stage in enumerate(manifest.stages):
        try:
            manifest.verify(index)
            verified = "verified"
        except UserError as err:
            verified = f"NOT verified: {err}"
        finished.append({"stage": index, "task": stage["task"], "checksums": verified,
                         "scores": stage.get("scores"), "seconds": stage.get("seconds")})
    current = len(manifest.stages)
    status = {"run": str(run_dir), "model": config.get("model"), "method": config.get("method"), "tasks": tasks,
              "finished": finished, "complete": current >= len(tasks) and bool(tasks), "lock_holder": lock_holder(run_dir)}
    if not status["complete"]:
        rows = [r for r in read_train_log(run_dir) if r.get("stage") == current]
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
    error = RunLog(run_dir / "run.log").last_error()
    status["last_error"] = error if (status["lock_holder"] is None and not status["complete"]) else None
    return status


def print_status(status: dict, echo=print) -> None:
    holder = status["lock_holder"]
    echo(f"run {status['run']}: {status['method']} on {status['model']}, tasks {' -> '.join(status['tasks'])}")
    echo(f"process: {'running, process ' + str(holder) if holder else 'none holds the run (stopped or finished)'}")
    for stage in status["finished"]:
        scores = ", ".join(f"{s:.3f}" for s in stage["scores"] or [])
        echo(f"  stage {stage['stage']} {stage['task']}: finished, checksums {stage['checksums']}; scores {scores}")
    if status["complete"]:
        echo("all stages finished: results.json is final")
    current = status.get("current")
    if current:
        step = f"step {current['step']}/{current['total_steps']}" if current["step"] is not None else "no step logged yet"
        loss = f", last loss {current['last_loss']:.4f}" if current["last_loss"] is not None else ""
        eta = f", ETA {current['eta_seconds'] / 60:.1f} min" if current["eta_seconds"] is not None else ""
        speed = f", {current['tokens_per_second']:.0f} tokens/s" if current["tokens_per_second"] else ""
        echo(f"  stage {current['stage']} {current['task']}: {step}{loss}{speed}{eta}")
    if status.get("last_error"):
        echo(f"stopped with: {status['last_error']}")


def status_json(status: dict) -> str:
    return json.dumps(status, indent=2)
