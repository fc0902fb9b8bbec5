"""Fault corpus (issue 27, resume): a run killed anywhere and resumed is the run it would have been; a run's task
files are part of its identity; each process pre-trains a cache entry in a staging folder of its own."""

import json

import pytest
import torch
import yaml
from conftest import tiny_run_config

from llava_cit.config import load_config
from llava_cit.continual.runner import ContinualRunner
from llava_cit.util.errors import UserError
from switch import FeatureExtractor, SwitchNetwork
from switch.tiny import tiny_opt, words_of

INSTRUCTIONS = ["what colour is the cube", "which colour is the ball", "is the cube red",
                "read the word", "what does the sign say", "read the text on the sign"]
TASKS = ["colours"] * 3 + ["reading"] * 3


def fitted_switch_bytes(extractor: FeatureExtractor, folder) -> bytes:
    switch = SwitchNetwork(extractor, hidden=16, epochs=20, seed=3)
    switch.fit(INSTRUCTIONS, TASKS)
    switch.save(folder)
    return (folder / "switch.safetensors").read_bytes()


def test_a_switch_does_not_depend_on_what_the_process_drew_before(tmp_path):
    """The classifier was built before its seed was set: its initial weights followed the process's history."""
    model, tokenizer = tiny_opt(words_of(INSTRUCTIONS), seed=0)
    extractor = FeatureExtractor.from_model(model, tokenizer, "a-loaded-extractor")  # loaded once, as runs share it
    first = fitted_switch_bytes(extractor, tmp_path / "first")
    torch.rand(1000)  # e.g. a stage's training ran in this process, and not in a resumed one
    state = torch.get_rng_state()
    assert fitted_switch_bytes(extractor, tmp_path / "second") == first
    assert torch.equal(torch.get_rng_state(), state)  # fitting leaves the process's random state alone


def run_files(run) -> dict[str, bytes]:
    """Every adapter, switch and prediction file of a run, by path."""
    return {str(p.relative_to(run)): p.read_bytes() for folder in ("adapters", "switch", "predictions")
            for p in sorted((run / folder).rglob("*")) if p.is_file()}


def results_without_timings(run) -> dict:
    results = json.loads((run / "results.json").read_text())
    results.pop("timings")
    return results


def test_a_run_killed_mid_stage_1_evaluation_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    """Resumed, stage 1 reuses its saved adapter (no training in this process) and fits its switch again: the switch
    must not differ from the uninterrupted run's (it did, with an extractor loaded once per run)."""
    model, tokenizer = tiny_opt(words_of(["what colour is the shape", "read the word in the image"]), seed=0)
    model.save_pretrained(tmp_path / "extractor")
    tokenizer.save_pretrained(tmp_path / "extractor")
    config = tiny_run_config(switch={"extractor": str(tmp_path / "extractor"), "hidden": 32, "epochs": 100})
    ContinualRunner(load_config(None, base=config), tmp_path / "whole").run()

    from llava_cit.continual.matrix_evaluation import MatrixEvaluation

    answer = MatrixEvaluation.answer

    def killed_in_stage_1_evaluation(self, model, examples, routes, label):
        if label == "stage 1 evaluation":
            answer(self, model, examples[:1], routes[:1], label)  # one answer, then the kill
            raise RuntimeError("simulated kill")
        return answer(self, model, examples, routes, label)

    with monkeypatch.context() as patch:
        patch.setattr(MatrixEvaluation, "answer", killed_in_stage_1_evaluation)
        with pytest.raises(RuntimeError, match="simulated kill"):
            ContinualRunner(load_config(None, base=config), tmp_path / "resumed").run()
    assert (tmp_path / "resumed/switch/stage-01/switch.safetensors").is_file()  # fitted before the kill
    assert len(json.loads((tmp_path / "resumed/manifest.json").read_text())["stages"]) == 1
    ContinualRunner(load_config(None, base=config), tmp_path / "resumed").run()

    whole, resumed = run_files(tmp_path / "whole"), run_files(tmp_path / "resumed")
    assert "switch/stage-01/switch.safetensors" in whole and "predictions/stage-01/synth-ocr.jsonl" in whole
    assert sorted(resumed) == sorted(whole)
    assert [name for name in whole if whole[name] != resumed[name]] == []
    assert results_without_timings(tmp_path / "resumed") == results_without_timings(tmp_path / "whole")


def test_a_gem_resumed_from_a_checkpoint_draws_the_reference_batches_it_would_have_drawn(tmp_path, monkeypatch):
    """A-GEM drew its reference batches from one stream per stage, which a resume restarted at the checkpoint."""
    from test_runner import CrashAt

    import llava_cit.methods.agem as agem
    from llava_cit.continual.runner import Progress

    drawn, batches = [], agem.batches

    def recorded(ctx, sample, batch_size):
        drawn.append((ctx.stage, sorted(ex.id for ex in sample)))
        return batches(ctx, sample, batch_size=batch_size)

    monkeypatch.setattr(agem, "batches", recorded)
    config = tiny_run_config(method="a-gem", method_args={"reference_batch": 2})
    ContinualRunner(load_config(None, base=config), tmp_path / "whole").run()
    whole_draws, drawn[:] = list(drawn), []
    with pytest.raises(RuntimeError, match="simulated crash"):
        ContinualRunner(load_config(None, base=config), tmp_path / "resumed",
                        progress=Progress(trainer_callbacks=[CrashAt(1, 3)])).run()
    drawn[:] = []
    runner = ContinualRunner(load_config(None, base=config), tmp_path / "resumed")
    runner.run()
    assert runner.manifest.stages[1]["train"]["resumed_from"] == "checkpoint-2"
    assert len(whole_draws) == 3 and drawn == whole_draws[2:]  # the resumed run's step 3 drew what step 3 drew
    whole, resumed = run_files(tmp_path / "whole"), run_files(tmp_path / "resumed")
    assert any(name.startswith("adapters/01-") for name in whole) and sorted(resumed) == sorted(whole)
    assert [name for name in whole if whole[name] != resumed[name]] == []


def test_a_task_file_edited_after_the_run_is_refused_naming_the_task(tmp_path):
    """A task file's normalizer or max_new_tokens edited after the run was accepted, and results.json rewritten
    without re-evaluation: its content is part of the run's identity, as the config is."""
    from test_cli import cli

    task = tmp_path / "my-task.yaml"
    spec = {"name": "my-shapes", "train": {"type": "synthetic", "generator": "synth-shapes", "count": 16},
            "test": {"type": "synthetic", "generator": "synth-shapes", "count": 8}, "normalizer": "lower", "max_new_tokens": 4}
    task.write_text(yaml.safe_dump(spec))
    config = tiny_run_config(tasks=["synth-ocr", str(task)])
    ContinualRunner(load_config(None, base=config), tmp_path / "r").close()
    assert json.loads((tmp_path / "r/task_files.json").read_text())["my-shapes"]["spec"]["max_new_tokens"] == 4
    ContinualRunner(load_config(None, base=config), tmp_path / "r").close()  # unchanged: the same run goes on
    task.write_text(yaml.safe_dump({**spec, "normalizer": "none", "max_new_tokens": 8}))
    with pytest.raises(UserError, match=r"task 'my-shapes': \S*my-task.yaml changed since the run read it "
                                        r"\(max_new_tokens, normalizer\)"):
        ContinualRunner(load_config(None, base=config), tmp_path / "r")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    refused = cli("train", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "r"))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.startswith("error: ") and "task 'my-shapes'" in refused.stderr
    task.write_text(yaml.safe_dump({**spec, "name": "renamed"}))  # found by its file when the edit renames the task
    with pytest.raises(UserError, match=r"task 'renamed': .*\(name\)"):
        ContinualRunner(load_config(None, base=config), tmp_path / "r")
    task.write_text(yaml.safe_dump(spec) + "# a comment\n")
    with pytest.raises(UserError, match=r"task 'my-shapes': .*\(its text\)"):
        ContinualRunner(load_config(None, base=config), tmp_path / "r")
    ContinualRunner(load_config(None, base=config), tmp_path / "r", force=True).close()  # --force starts over
    assert list(tmp_path.glob("r.old-*/task_files.json"))


def test_two_builders_of_one_pretraining_cache_entry_never_share_a_staging_folder(tmp_path, monkeypatch):
    """Two processes pre-training the same cache key shared one staging folder, and the second to start deleted the
    first's mid-training. Here a second build of the key runs to its end inside the first one's training."""
    from pathlib import Path

    import llava_cit.train.pretraining as pretraining

    config = load_config(None, base=tiny_run_config(pretrain={"task": "synth-caption", "examples": 8, "batch_size": 8}))
    seen = {}

    class OtherProcessBuildsTooWhileThisTrains(pretraining.Trainer):
        def train(self, *args, **kwargs):
            if not seen:
                seen["mine"] = Path(self.args.output_dir).parent
                seen["mine_survives"] = None
                pretraining.pretrained_base(config)  # "the other process": trains and publishes first
                seen["mine_survives"] = seen["mine"].is_dir()
            return super().train(*args, **kwargs)

    monkeypatch.setattr(pretraining, "Trainer", OtherProcessBuildsTooWhileThisTrains)
    loaded = pretraining.pretrained_base(config)  # publishes after the other one: its copy goes, without an error
    assert seen["mine_survives"] is True
    entries = list(seen["mine"].parent.iterdir())
    assert not [p.name for p in entries if p.name.endswith(".partial")]  # no staging folder left behind
    assert [p for p in entries if (p / "model.safetensors").is_file()]
    assert loaded.model is not None


def test_a_stage_resumed_from_a_checkpoint_with_lora_dropout_trains_the_adapter_it_would_have(tmp_path):
    """Dropout masks and the data order after a resume come from the checkpoint's random states."""
    from test_runner import CrashAt

    from llava_cit.continual.runner import Progress

    config = tiny_run_config(method="seq-lora", lora={"r": 4, "alpha": 8, "dropout": 0.3, "projector_lr": None},
                             train={"epochs": 2, "lr": 1e-3, "batch_size": 16, "max_length": 48, "save_steps": 2})
    ContinualRunner(load_config(None, base=config), tmp_path / "whole").run()
    with pytest.raises(RuntimeError, match="simulated crash"):
        ContinualRunner(load_config(None, base=config), tmp_path / "resumed",
                        progress=Progress(trainer_callbacks=[CrashAt(1, 5)])).run()
    runner = ContinualRunner(load_config(None, base=config), tmp_path / "resumed")
    runner.run()
    assert runner.manifest.stages[1]["train"]["resumed_from"] == "checkpoint-4"  # mid-way through the second epoch
    whole, resumed = run_files(tmp_path / "whole"), run_files(tmp_path / "resumed")
    assert any(name.startswith("adapters/01-") for name in whole) and sorted(resumed) == sorted(whole)
    assert [name for name in whole if whole[name] != resumed[name]] == []
    assert results_without_timings(tmp_path / "resumed") == results_without_timings(tmp_path / "whole")


def method_files(run) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for folder in ("adapters", "method_state")
            for p in sorted((run / folder).rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kill", ["mid-training", "after-publishing"])
def test_si_resumed_after_a_kill_is_the_uninterrupted_run(tmp_path, monkeypatch, kill):
    """SI's path integral restarted at the checkpoint (mid-training), or was lost (a kill after the adapter was
    published, before the importance was saved): its state is now saved with each checkpoint and before publishing."""
    from test_runner import CrashAt

    from llava_cit.continual.runner import Progress
    from llava_cit.methods.si import SI

    config = tiny_run_config(method="si", method_args={"strength": 100.0})
    ContinualRunner(load_config(None, base=config), tmp_path / "whole").run()
    with monkeypatch.context() as patch:
        progress = None
        if kill == "mid-training":
            progress = Progress(trainer_callbacks=[CrashAt(0, 3)])
        else:
            def killed(self, ctx, model, hooks=None):
                raise RuntimeError("simulated crash")

            patch.setattr(SI, "after_stage", killed)
        with pytest.raises(RuntimeError, match="simulated crash"):
            ContinualRunner(load_config(None, base=config), tmp_path / "resumed", progress=progress).run()
    if kill == "after-publishing":
        assert (tmp_path / "resumed/adapters/00-synth-shapes").is_dir()
        assert (tmp_path / "resumed/method_state/hooks/00-synth-shapes.safetensors").is_file()
    runner = ContinualRunner(load_config(None, base=config), tmp_path / "resumed")
    runner.run()
    if kill == "mid-training":
        assert runner.manifest.stages[0]["train"]["resumed_from"] == "checkpoint-2"
    whole, resumed = method_files(tmp_path / "whole"), method_files(tmp_path / "resumed")
    assert "method_state/00-synth-shapes.safetensors" in whole and sorted(resumed) == sorted(whole)
    assert [name for name in whole if whole[name] != resumed[name]] == []
    assert not (tmp_path / "resumed/method_state/hooks").exists()  # the hooks' state goes once the stage is recorded
