"""Kill it anywhere and rerun: locks, typed config, data checked before training, healing files, trust."""

import json
import os
import shutil

import pytest
import yaml
from conftest import tiny_run_config
from PIL import Image
from test_benchmarks import stand_in_benchmark
from test_cli import cli
from test_runner import CrashAt

from llava_cit.config import load_config
from llava_cit.continual.runner import ContinualRunner, Progress
from llava_cit.train.trainer import last_complete_checkpoint
from llava_cit.util.errors import UserError
from llava_cit.util.jsonl import append_rows, heal, read_rows
from llava_cit.util.run_lock import DirectoryLock, lock_holder


def test_typed_config_values_and_one_line_errors(tmp_path):
    config = load_config(None, ["train.lr=3e-3", "retention.fraction=1e-4"], base=tiny_run_config())
    assert config.train.lr == 0.003 and isinstance(config.train.lr, float) and config.retention.fraction == 1e-4
    with pytest.raises(UserError, match=r"config key 'train.epochs' = 'two': expected a number"):
        load_config(None, ["train.epochs=two"], base=tiny_run_config())
    with pytest.raises(UserError, match=r"config key 'train.batch_size' = 0: must be >= 1"):
        load_config(None, ["train.batch_size=0"], base=tiny_run_config())
    with pytest.raises(UserError, match=r"config key 'train.bf16' = 'yes please': expected true/false"):
        load_config(None, ["train.bf16=yes please"], base=tiny_run_config())
    with pytest.raises(UserError, match=r"switch.reject_calibration needs switch.reject_metric: cosine"):
        load_config(None, ["switch.reject_calibration=512"], base=tiny_run_config())
    with pytest.raises(UserError, match=r"switch.reject_also needs switch.reject_metric: cosine"):
        load_config(None, ["switch.reject_also=[[26, last]]"], base=tiny_run_config())
    with pytest.raises(UserError, match=r"'switch.reject_also' = \[\[26, 'max'\]\]: must be a list of \[layer, pooling\]"):
        load_config(None, ["switch.reject_also=[[26, max]]", "switch.reject_metric=cosine"], base=tiny_run_config())
    assert load_config(None, ["switch.reject_also=[[26, last]]", "switch.reject_metric=cosine"],
                       base=tiny_run_config()).switch.reject_also == [[26, "last"]]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(dict(tiny_run_config(), train={"epochs": "two"})))
    result = cli("train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "never"))
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: config key 'train.epochs' = 'two': expected a number"]
    assert not (tmp_path / "never").exists()  # no run folder for an invalid config


def test_one_writer_per_run_directory(tmp_path):
    holder = DirectoryLock(tmp_path / "r").acquire()
    assert lock_holder(tmp_path / "r") == os.getpid()
    with pytest.raises(UserError, match=rf"in use by process {os.getpid()}"):
        ContinualRunner(load_config(None, base=tiny_run_config()), tmp_path / "r")
    assert not (tmp_path / "r/config.yaml").exists()  # nothing of the holder's run touched
    holder.release()
    assert lock_holder(tmp_path / "r") is None
    runner = ContinualRunner(load_config(None, base=tiny_run_config()), tmp_path / "r")
    runner.close()


def test_every_stage_data_is_checked_before_stage_0_trains(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "empty.json").write_text("")
    Image.new("RGB", (8, 8)).save(folder / "ok.png")
    (folder / "bad.png").write_bytes(b"not an image")
    conv = [{"from": "human", "value": "<image>\nwhat shape ?"}, {"from": "gpt", "value": "red"}]
    records = [{"id": str(i), "image": "bad.png" if i == 0 else "ok.png", "conversations": conv} for i in range(3)]
    records.append({"id": "x", "image": "../../escape.png", "conversations": conv})
    (folder / "train.json").write_text(json.dumps(records))
    (folder / "a.yaml").write_text(yaml.safe_dump({"name": "a", "train": {"type": "llava", "path": "missing.json"},
                                                   "test": {"type": "llava", "path": "empty.json"}}))
    (folder / "b.yaml").write_text(yaml.safe_dump({"name": "b", "train": {"type": "llava", "path": "train.json"},
                                                   "test": {"type": "llava", "path": "train.json"}}))
    cfg = load_config(None, base=tiny_run_config(tasks=["synth-shapes", str(folder / "a.yaml"), str(folder / "b.yaml")]))
    with pytest.raises(UserError) as caught:
        ContinualRunner(cfg, tmp_path / "r").run()
    message = str(caught.value)
    assert "data problem(s) found before training" in message
    assert "task 'a' (train): data file not found" in message and "empty.json: the file is empty" in message
    assert "task 'b' (train)" in message and "escapes" in message
    assert not (tmp_path / "r/adapters").exists()  # stage 0 never trained


def test_tiny_model_refuses_words_outside_its_vocabulary(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    conv = [{"from": "human", "value": "<image>\nWhich way does the arrow point?"}, {"from": "gpt", "value": "up"}]
    (tmp_path / "d.json").write_text(json.dumps([{"id": str(i), "image": "a.png", "conversations": conv} for i in range(3)]))
    (tmp_path / "arrows.yaml").write_text(yaml.safe_dump({"name": "arrows", "train": {"type": "llava", "path": "d.json"},
                                                          "test": {"type": "llava", "path": "d.json"}}))
    cfg = load_config(None, base=tiny_run_config(tasks=[str(tmp_path / "arrows.yaml")]))
    with pytest.raises(UserError, match=r"task 'arrows' \(train\): words outside the tiny model's vocabulary.*'which'"):
        ContinualRunner(cfg, tmp_path / "r").run()


def test_incomplete_checkpoint_is_skipped_and_timings_add_up(tmp_path):
    cfg = tiny_run_config(method="seq-lora")
    with pytest.raises(RuntimeError, match="simulated crash"):
        ContinualRunner(load_config(None, base=cfg), tmp_path / "r",
                        progress=Progress(trainer_callbacks=[CrashAt(1, 3)])).run()
    checkpoints = tmp_path / "r/checkpoints/01-synth-ocr"
    torn = checkpoints / "checkpoint-3"  # a kill mid-save: the weights written, trainer_state.json not yet
    shutil.copytree(checkpoints / "checkpoint-2", torn)
    (torn / "trainer_state.json").unlink()
    before = json.loads((tmp_path / "r/timings/stage-01.json").read_text())["train"]
    assert last_complete_checkpoint(checkpoints).name == "checkpoint-2" and not torn.exists()
    shutil.copytree(checkpoints / "checkpoint-2", torn)
    (torn / "trainer_state.json").write_text('{"global_st')  # torn mid-write
    runner = ContinualRunner(load_config(None, base=cfg), tmp_path / "r")
    results = runner.run()
    assert runner.manifest.stages[1]["train"]["resumed_from"] == "checkpoint-2"
    assert results["timings"]["per_stage"][1]["train"] > before > 0  # the time before the kill is counted


def test_jsonl_heals_a_torn_last_line(tmp_path):
    path = tmp_path / "p.jsonl"
    append_rows(path, [{"key": "a"}])
    with open(path, "a") as handle:
        handle.write('{"key": "b", "predic')
    assert [r["key"] for r in read_rows(path)] == ["a"]
    append_rows(path, [{"key": "c"}])
    assert path.read_text().splitlines() == ['{"key": "a"}', '{"key": "c"}']
    path.write_text('{"key": "a"}\n{"key": "b"\n')  # terminated but unparseable
    assert heal(path) > 0 and path.read_text() == '{"key": "a"}\n'


def test_task_file_eval_keeps_the_bad_sample_rule(tmp_path):
    Image.new("RGB", (32, 32), "red").save(tmp_path / "ok.png")
    (tmp_path / "corrupt.png").write_bytes(b"corrupt")
    conv = [{"from": "human", "value": "<image>\nwhat shape is on the left ?"}, {"from": "gpt", "value": "red"}]
    records = [{"id": str(i), "image": img, "conversations": conv}
               for i, img in enumerate(["ok.png", "missing.png", "corrupt.png", "../outside.png", "ok.png"])]
    (tmp_path / "test.json").write_text(json.dumps(records))
    (tmp_path / "task.yaml").write_text(yaml.safe_dump({"name": "mine", "train": {"type": "llava", "path": "test.json"},
                                                        "test": {"type": "llava", "path": "test.json"}}))
    for flag, scored in (("--skip-bad", 2), ("--no-skip-bad", 5)):
        out = tmp_path / f"e{flag}"
        result = cli("eval", "--benchmark", str(tmp_path / "task.yaml"), "--data", str(tmp_path / "test.json"),
                     "--images", str(tmp_path), "--model", "tiny-llava", flag, "--out", str(out), "--max-new-tokens", "2")
        assert result.returncode == 0, result.stderr
        scores = json.loads((out / "scores.json").read_text())
        assert scores["scored"] == scored and len(scores["bad_samples"]) == 3
        assert {b["key"] for b in scores["bad_samples"]} == {"1", "2", "3"}


def test_run_files_cannot_point_outside_the_run(tmp_path):
    from llava_cit.serve.run_server import RunServer

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(tiny_run_config(trust_remote_code=True)))
    (run / "results.json").write_text(json.dumps({"method": "switchcit", "tasks": ["a"],
                                                  "adapters": {"a": "../../elsewhere/adapter"}}))
    with pytest.raises(UserError, match="adapter path of 'a'.*escapes the run directory"):
        RunServer(run)


def test_an_eval_into_a_folder_another_process_writes_is_refused_at_once(tmp_path):
    data, root = stand_in_benchmark(tmp_path, n=2)
    out = tmp_path / "e"
    holder = DirectoryLock(out, "evaluation folder").acquire()
    result = cli("eval", "--benchmark", "ocrbench", "--data", data, "--images", root, "--model", "tiny-llava",
                 "--out", str(out))
    holder.release()
    assert result.returncode == 2 and f"in use by process {os.getpid()}" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written by the refused process
