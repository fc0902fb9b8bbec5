"""Watching a long run: TensorBoard events, train_log.jsonl, run.log, loss curves, `llava-cit status`."""

import json

import pytest
from conftest import tiny_run_config
from test_cli import cli
from test_runner import CrashAt

from llava_cit.config import load_config
from llava_cit.continual.runner import ContinualRunner, Progress
from llava_cit.continual.status import run_status


def watched_config(**extra):
    config = tiny_run_config(**extra)
    config["train"].update(epochs=4, lr=3e-3, logging_steps=1, report_to="tensorboard")
    return config


def test_tensorboard_train_log_run_log_and_loss_curves(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results = ContinualRunner(load_config(None, base=watched_config()), tmp_path / "r").run()
    run = tmp_path / "r"
    rows = [json.loads(line) for line in (run / "logs/train_log.jsonl").read_text().splitlines()]
    for stage, task in enumerate(results["tasks"]):
        stage_rows = [r for r in rows if r["stage"] == stage]
        steps = [r["step"] for r in stage_rows]
        assert steps == list(range(1, stage_rows[-1]["max_steps"] + 1))  # one row per logged step (logging_steps=1)
        assert all(r["task"] == task and r["learning_rate"] is not None and r["tokens_per_second"] for r in stage_rows)
        losses = [r["loss"] for r in stage_rows]
        half = len(losses) // 2
        assert sum(losses[half:]) / (len(losses) - half) < sum(losses[:half]) / half  # the demo task is learned
        events = list((run / "logs" / f"{stage:02d}-{task}").glob("events.out.tfevents.*"))
        assert events, "no TensorBoard event file for the stage"
        accumulator = EventAccumulator(str(events[0].parent))
        accumulator.Reload()
        assert len(accumulator.Scalars("train/loss")) == len(stage_rows)
    assert (run / "loss_curves.png").stat().st_size > 0
    log = (run / "run.log").read_text()
    assert "stage 0 (synth-shapes): training with switchcit" in log and "stage 1 evaluation" in log


def test_status_of_a_killed_run(tmp_path):
    with pytest.raises(RuntimeError, match="simulated crash"):
        ContinualRunner(load_config(None, base=watched_config(method="seq-lora")), tmp_path / "r",
                        progress=Progress(trainer_callbacks=[CrashAt(1, 5)])).run()
    before = sorted(p.name for p in (tmp_path / "r").rglob("*"))
    status = run_status(tmp_path / "r")
    assert [s["task"] for s in status["finished"]] == ["synth-shapes"] and status["finished"][0]["checksums"] == "verified"
    current = status["current"]
    assert current["stage"] == 1 and current["task"] == "synth-ocr" and current["step"] == 4
    assert current["total_steps"] == 12 and current["last_loss"] > 0 and current["eta_seconds"] is not None
    assert status["lock_holder"] is None and "simulated crash" in status["last_error"]
    result = cli("status", str(tmp_path / "r"))
    assert result.returncode == 0 and "stage 1 synth-ocr: step 4/12" in result.stdout
    assert sorted(p.name for p in (tmp_path / "r").rglob("*")) == before  # status never writes
