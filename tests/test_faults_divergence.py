"""Fault corpus, divergence and interruption (issue 27): a diverged stage stops with one line and publishes nothing
non-finite; an adapter no better than the untrained base is flagged; an interrupted run says where it stopped and
a resume says where it starts from; `status` reads the stop reason of the last session only."""

import json

import pytest
import torch
import yaml
from conftest import tiny_run_config
from safetensors.torch import save_file
from test_cli import cli
from test_switch import extractor
from transformers import TrainerCallback

from llava_cit.config import load_config
from llava_cit.continual.results import below_base
from llava_cit.continual.runner import ContinualRunner, Progress
from llava_cit.continual.status import run_status
from llava_cit.train.trainer import training_arguments
from llava_cit.util.atomic import publish_dir, staging_dir
from llava_cit.util.errors import RunInterrupted, UserError
from switch import SwitchNetwork
from switch.errors import SwitchError


def one_task_config(**train) -> dict:
    config = tiny_run_config(method="seq-lora", tasks=["synth-shapes"], train_limit=16,
                             eval={"limit": 4, "batch_size": 4, "max_new_tokens": 3})
    config["train"].update(batch_size=4, **train)
    return config


def test_a_diverging_run_stops_with_one_line_and_publishes_nothing(tmp_path):
    (tmp_path / "seq.yaml").write_text(yaml.safe_dump(one_task_config()))
    run = tmp_path / "nan"
    result = cli("train", str(tmp_path / "seq.yaml"), "--out", str(run), "--set", "train.lr=1e20",
                 "--set", "train.logging_steps=1", "--set", "train.warmup_ratio=0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # (the Trainer's progress bar may share the terminal line: it ends with a carriage return, not a newline)
    errors = [line[line.index("error:"):] for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert "stage 0 (synth-shapes): training diverged at step 2" in errors[0]
    assert "train.lr (now 1e+20)" in errors[0] and "float32" in errors[0]
    assert not (run / "adapters").exists() and not (run / "manifest.json").exists()  # not finished, nothing published
    results = json.loads((run / "results.json").read_text())
    assert results["diverged"]["stage"] == 0 and results["diverged"]["step"] == 2 and results["matrix"] == []
    logged = [json.loads(line) for line in (run / "logs/train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1]  # the diverged step is never applied, so never logged as a loss of 0.0
    status = run_status(run)
    assert status["finished"] == [] and "training diverged at step 2" in status["last_error"]


def test_lr_overflowing_float32_is_a_one_line_error(tmp_path):
    config = load_config(None, ["train.lr=1e38"], base=one_task_config())
    with pytest.raises(UserError, match=r"stage 0 \(synth-shapes\): training overflowed at step \d+ .*lower train.lr"):
        ContinualRunner(config, tmp_path / "r").run()
    assert not (tmp_path / "r/adapters").exists()


def test_max_grad_norm_reaches_the_trainer(tmp_path):
    assert training_arguments(load_config(None, ["train.max_grad_norm=0.5"], base=one_task_config()).train,
                              tmp_path, 0, False).max_grad_norm == 0.5
    assert training_arguments(load_config(None, base=one_task_config()).train, tmp_path, 0, False).max_grad_norm == 1.0
    with pytest.raises(UserError, match=r"'train.max_grad_norm' = -1.0: must be >= 0"):
        load_config(None, ["train.max_grad_norm=-1"], base=one_task_config())


def test_non_finite_weights_are_never_published(tmp_path):
    target = tmp_path / "adapters/00-a"
    staging = staging_dir(target)
    save_file({"w": torch.tensor([1.0, float("nan")])}, str(staging / "adapter_model.safetensors"))
    with pytest.raises(UserError, match=r"refusing to publish .*00-a: tensor 'w' of adapter_model.safetensors holds NaN"):
        publish_dir(staging, target)
    assert not target.exists()
    save_file({"w": torch.tensor([1.0, 2.0])}, str(staging / "adapter_model.safetensors"))
    publish_dir(staging, target)
    assert (target / "adapter_model.safetensors").is_file()


def test_a_switch_with_non_finite_weights_is_not_saved(tmp_path):
    switch = SwitchNetwork(extractor(), hidden=8, epochs=5).fit(["What color is the car?", "What is the title?"] * 2,
                                                               ["colour", "title"] * 2)
    with torch.no_grad():
        next(switch.classifier.parameters()).fill_(float("inf"))
    with pytest.raises(SwitchError, match="refusing to save the switch .*NaN or infinity"):
        switch.save(tmp_path / "switch/stage-01")
    assert not (tmp_path / "switch/stage-01").exists()


def test_method_state_with_non_finite_values_is_not_saved(tmp_path):
    from llava_cit.methods.base import StageContext
    from llava_cit.methods.regularization import save_state

    ctx = StageContext(0, ["a"], "s00-a", tmp_path / "method_state", {}, list, None, {}, None, print)
    with pytest.raises(UserError, match="refusing to save .*NaN or infinity"):
        save_state(ctx, {"w": torch.zeros(2)}, {"w": torch.tensor([float("nan"), 0.0])})
    assert not list((tmp_path / "method_state").rglob("*.safetensors"))


def test_below_base_flags_an_adapter_no_better_than_the_untrained_base():
    def stage(index, scores, base, upper=None, source="this stage's adapter (trained on the task alone)"):
        return {"stage": index, "task": f"t{index}", "scores": scores, "base_score": base, "upper_bound": upper,
                "upper_bound_source": source}

    stages = [stage(0, [0.5], 0.5), stage(1, [0.2, 0.9], 0.1), stage(2, [0.2, 0.9, 0.05], None)]
    assert below_base(stages, routes=False) == [{"stage": 0, "task": "t0", "score": 0.5, "base_model": 0.5}]
    routed = [stage(1, [0.2, 0.3], 0.4, upper=0.6, source="own adapter (oracle routing)")]  # routing lost, not the adapter
    assert below_base(routed, routes=True) == []
    routed[0]["upper_bound"] = 0.4
    assert below_base(routed, routes=True) == [{"stage": 1, "task": "t1", "score": 0.4, "base_model": 0.4}]


def test_a_run_below_base_is_warned_in_run_log_and_results(tmp_path):
    # a tiny model after four steps answers no better than the untrained base (both 0 on synth-shapes)
    results = ContinualRunner(load_config(None, base=one_task_config()), tmp_path / "r").run()
    low = results["below_base"]
    assert [entry["task"] for entry in low] == ["synth-shapes"] and low[0]["score"] <= low[0]["base_model"]
    assert results["diverged"] is None
    log = (tmp_path / "r/run.log").read_text()
    assert "warning: stage 0 (synth-shapes): its adapter scores" in log and "no better than the untrained base" in log


class InterruptAt(TrainerCallback):
    """Ctrl-C (or SIGTERM, which the CLI turns into one) after optimizer step `step`."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


class CrashAtStep(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("an old, since fixed, failure")


def test_interrupted_run_says_where_and_resume_says_from_which_checkpoint(tmp_path):
    config = load_config(None, base=one_task_config(save_steps=2))
    run = tmp_path / "r"
    with pytest.raises(RuntimeError, match="since fixed"):
        ContinualRunner(config, run, progress=Progress(trainer_callbacks=[CrashAtStep(1)])).run()
    assert "since fixed" in run_status(run)["last_error"]
    with pytest.raises(RunInterrupted) as caught:
        ContinualRunner(config, run, progress=Progress(trainer_callbacks=[InterruptAt(3)])).run()
    assert str(caught.value) == "interrupted at stage 0 step 3 — rerun the same command to resume"
    assert "resuming" not in (run / "run.log").read_text()  # the crash at step 1 left no checkpoint
    status = run_status(run)  # the interrupt is the cause, not the older error
    assert status["last_error"].endswith("interrupted at stage 0 step 3 — rerun the same command to resume")
    results = ContinualRunner(config, run).run()
    assert results["matrix"] and results["diverged"] is None
    log = (run / "run.log").read_text()
    assert "stage 0 (synth-shapes): resuming training from checkpoints/00-synth-shapes/checkpoint-2 (step 2)" in log
