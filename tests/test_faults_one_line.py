"""A fault corpus (issue 27, one-line errors and a new user's frictions): each fault is kept here as a tiny fixture,
so a later change cannot bring its traceback (or its surprise) back. User faults end in one `error: ...` line on
stderr and exit code 2."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llava_cit.util.errors import UserError

NOT_UTF8 = b"name: caf\xe9\n"  # Latin-1, as an editor on another system may save it


def cli(*args, env=None, preexec_fn=None):
    return subprocess.run([sys.executable, "-m", "llava_cit.cli", *args], capture_output=True, text=True,
                          timeout=600, env=env, preexec_fn=preexec_fn)


def one_line_error(result, *expected: str) -> str:
    """The error line of a refused command (exit 2, one line, no traceback), checked to name `expected`."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def file_size_limit(limit: int):
    """preexec_fn: the child may write files of at most `limit` bytes (a full disk, made small); SIGXFSZ ignored
    so a write past it fails with EFBIG instead of killing the process."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


TASK_FILE = {"name": "my-shapes", "train": {"type": "synthetic", "generator": "synth-shapes", "count": 16},
             "test": {"type": "synthetic", "generator": "synth-shapes", "count": 4}, "max_new_tokens": 3}


def tiny_config(tasks) -> dict:
    """One stage, one optimizer step (fewer than train.logging_steps), no switch: a run in seconds."""
    return {"model": "tiny-llava", "method": "seq-lora", "tasks": tasks, "train_limit": 16,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "projector_lr": None},
            "train": {"epochs": 1, "lr": 1e-3, "batch_size": 16, "max_length": 48, "save_steps": 2, "logging_steps": 10},
            "retention": {"min_count": 4}, "eval": {"limit": 4, "batch_size": 4, "max_new_tokens": 3}}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A finished one-stage run of a task file's task (`my-shapes` in shapes_task.yaml), trained by the CLI."""
    root = tmp_path_factory.mktemp("faults")
    env = dict(os.environ, LLAVA_CIT_CACHE=str(tmp_path_factory.getbasetemp() / "cache"))
    (root / "shapes_task.yaml").write_text(yaml.safe_dump(TASK_FILE))
    (root / "config.yaml").write_text(yaml.safe_dump(tiny_config(["shapes_task.yaml"])))
    result = cli("train", str(root / "config.yaml"), "--out", str(root / "run"), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "run": root / "run", "env": env, "train": result}


# -- non-UTF-8 input files --------------------------------------------------------------------------------------------

def test_non_utf8_config_and_instruction_file_are_one_line_errors(tmp_path):
    (tmp_path / "config.yaml").write_bytes(b"model: tiny-llava\ntasks: [synth-shapes]\n# r\xe9sum\xe9\n")
    one_line_error(cli("train", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "run")),
                   "config.yaml", "line 3", "not UTF-8")
    assert not (tmp_path / "run").exists()
    (tmp_path / "instructions.txt").write_bytes(b"What colour is it?\n\xff\xfe\n")
    one_line_error(cli("route", str(tmp_path / "no-switch"), "--file", str(tmp_path / "instructions.txt")),
                   "instructions.txt", "line 2", "not UTF-8")


def test_non_utf8_task_and_data_files_name_the_file(tmp_path):
    from llava_cit.data.llava_format import read_records
    from llava_cit.data_prep.json_stream import iter_json_array
    from llava_cit.tasks.registry import load_task_file

    (tmp_path / "task.yaml").write_bytes(NOT_UTF8)
    (tmp_path / "task.json").write_bytes(b'{"name": "caf\xe9"}')
    (tmp_path / "data.json").write_bytes(b'[{"id": "1", "conversations": []}, {"id": "\xe9"}]')
    (tmp_path / "data.jsonl").write_bytes(b'{"id": "1"}\n{"id": "\xe9"}\n')
    for path in ("task.yaml", "task.json"):
        with pytest.raises(UserError, match=f"{path}: line 1: not UTF-8"):
            load_task_file(tmp_path / path)
    with pytest.raises(UserError, match="data.json: line 1: not UTF-8"):
        read_records(tmp_path / "data.json")
    with pytest.raises(UserError, match="data.jsonl: line 2: not UTF-8"):
        read_records(tmp_path / "data.jsonl")
    with pytest.raises(UserError, match="data.json: not UTF-8"):
        list(iter_json_array(tmp_path / "data.json"))
    from llava_cit.continual.report import read_results

    (tmp_path / "results.json").write_bytes(b'{"method": "caf\xe9"}')
    with pytest.raises(UserError, match="results.json: line 1: not UTF-8"):
        read_results(tmp_path)


# -- --set values -----------------------------------------------------------------------------------------------------

def test_set_value_with_a_python_tag_is_refused():
    from llava_cit.config import load_config

    with pytest.raises(UserError, match=r"--set train.lr: the value is not plain YAML \(.*python/object"):
        load_config(None, ['train.lr=!!python/object/apply:os.system ["echo owned"]'], base=tiny_config(["synth-shapes"]))


def test_a_learning_rate_that_overflows_float32_is_one_line(workspace, tmp_path):
    result = cli("train", str(workspace["root"] / "config.yaml"), "--out", str(tmp_path / "run"), "--set",
                 "train.lr=1e38", "--set", "train.warmup_ratio=0", env=workspace["env"])
    one_line_error(result, "training overflowed at step 1 (float32 cannot hold the optimizer's update)",
                   "lower train.lr (now 1e+38)")
    assert not (tmp_path / "run" / "manifest.json").exists()


# -- disk full / file-size limit --------------------------------------------------------------------------------------

def test_file_size_limit_during_train_is_one_line_naming_the_file(workspace, tmp_path):
    """20 kB: the config, logs and data check fit; the first Trainer checkpoint (safetensors) does not."""
    result = cli("train", str(workspace["root"] / "config.yaml"), "--out", str(tmp_path / "run"),
                 env=workspace["env"], preexec_fn=file_size_limit(20_000))
    line = one_line_error(result, "cannot write", str(tmp_path / "run"), "file-size limit")
    assert "SafetensorError" not in line and "rerun the same command" in line
    assert not (tmp_path / "run" / "manifest.json").exists()  # nothing was recorded as finished


def test_file_size_limit_during_eval_is_one_line_naming_the_file(workspace, tmp_path):
    result = cli("eval", "--benchmark", "synth-shapes", "--run", str(workspace["run"]), "--out", str(tmp_path / "eval"),
                 env=workspace["env"], preexec_fn=file_size_limit(1_000))
    one_line_error(result, "cannot write", str(tmp_path / "eval"), "no space left on the device")


def test_is_disk_full_knows_the_libraries_wordings():
    import errno

    from llava_cit.util.atomic import is_disk_full, writing

    assert is_disk_full(OSError(errno.EFBIG, "File too large")) and is_disk_full(OSError(errno.ENOSPC, "full"))
    assert not is_disk_full(OSError(errno.ENOENT, "No such file or directory"))
    SafetensorError = type("SafetensorError", (Exception,), {})
    assert is_disk_full(SafetensorError("Error while serializing: I/O error: File too large (os error 27)"))
    assert not is_disk_full(SafetensorError("invalid header"))
    assert is_disk_full(RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"))
    assert is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 139456 vs 139344"))
    assert not is_disk_full(RuntimeError("CUDA out of memory"))
    with pytest.raises(UserError, match="cannot write out/x.json: no space left"):
        with writing("out/x.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match="No such file"):  # any other error stays what it is
        with writing("out/x.json"):
            raise OSError(errno.ENOENT, "No such file or directory")


# -- status on damaged runs -------------------------------------------------------------------------------------------

def damaged_copy(workspace, tmp_path, name) -> Path:
    run = tmp_path / name
    shutil.copytree(workspace["run"], run, ignore=shutil.ignore_patterns(".lock"))
    return run


def test_status_on_a_list_or_binary_config_is_one_line(workspace, tmp_path):
    from llava_cit.continual.status import run_status

    listed = damaged_copy(workspace, tmp_path, "listed")
    (listed / "config.yaml").write_text("- tiny-llava\n- seq-lora\n")
    one_line_error(cli("status", str(listed)), "config.yaml: not a run config", "got list")
    from llava_cit.continual.run_directory import open_run_directory

    with pytest.raises(UserError, match="config.yaml: not a run config"):  # train's resume reads it too
        open_run_directory(listed, tiny_config(["synth-shapes"]), force=False)
    binary = damaged_copy(workspace, tmp_path, "binary")
    (binary / "config.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(UserError, match="config.yaml: line 1: not UTF-8"):
        run_status(binary)


def test_status_shows_a_stage_without_checksums_and_non_numeric_scores(workspace, tmp_path):
    from llava_cit.continual.status import print_status, run_status

    run = damaged_copy(workspace, tmp_path, "tampered")
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["stages"][0]["checksums"]
    manifest["stages"][0]["scores"] = ["high"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    lines = []
    print_status(run_status(run), lines.append)
    stage = next(line for line in lines if line.strip().startswith("stage 0"))
    assert "checksums NOT verified" in stage and "no 'checksums' of its artifacts" in stage
    assert "'high' (not a number)" in stage
    (run / "manifest.json").write_text(json.dumps({"stages": "none"}))
    with pytest.raises(UserError, match="unreadable manifest"):
        run_status(run)


# -- a new user's frictions -------------------------------------------------------------------------------------------

def test_a_finished_run_has_its_logs_and_no_empty_checkpoints_folder(workspace):
    """One optimizer step, fewer than train.logging_steps: the last step is logged all the same."""
    run = workspace["run"]
    rows = [json.loads(line) for line in (run / "logs" / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1] and rows[0]["loss"] > 0
    assert (run / "loss_curves.png").is_file()
    assert not (run / "checkpoints").exists()


def test_training_shows_one_progress_display(workspace):
    shown = workspace["train"].stdout + workspace["train"].stderr
    assert "train_runtime" not in shown and "it/s]" not in shown  # no Trainer tqdm, no raw log dicts
    assert "training my-shapes-seq-lora" in shown


def test_status_names_the_task_by_its_name(workspace, tmp_path):
    from llava_cit.continual.status import run_status

    assert run_status(workspace["run"])["tasks"] == ["my-shapes"]
    # a stage not trained yet: the name its task file declares, read (never executed)
    (tmp_path / "other_task.yaml").write_text(yaml.safe_dump(dict(TASK_FILE, name="other-shapes")))
    run = damaged_copy(workspace, tmp_path, "extended")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["tasks"] += [str(tmp_path / "other_task.yaml"), {"file": "elsewhere/gone.py"}]
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    status = run_status(run)
    assert status["tasks"] == ["my-shapes", "other-shapes", "gone"] and status["current"]["task"] == "other-shapes"


def test_eval_run_finds_the_runs_task_file_task_by_name(workspace, tmp_path):
    result = cli("eval", "--benchmark", "my-shapes", "--run", str(workspace["run"]), "--out", str(tmp_path / "eval"),
                 env=workspace["env"])
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text())
    assert scores["benchmark"] == "my-shapes" and scores["samples"] == 4
    one_line_error(cli("eval", "--benchmark", "their-shapes", "--run", str(workspace["run"]), env=workspace["env"]),
                   "unknown task 'their-shapes'")


def test_plan_of_a_tiny_model_shows_its_real_size(workspace):
    import torch

    result = cli("plan", str(workspace["root"] / "config.yaml"), env=workspace["env"])
    assert result.returncode == 0, result.stderr[-3000:]
    header = " ".join(result.stdout.split())
    assert "0.000B" not in header and "K parameters" in header and "KB saved per stage" in header
    if not torch.cuda.is_available():
        assert "on CPU" in header and "x 1 process" in header


def test_unknown_words_of_a_tiny_model_say_how_to_list_its_vocabulary(tmp_path):
    from llava_cit.config import load_config
    from llava_cit.continual.data_validation import validate_data
    from llava_cit.models.tiny import tiny_tokenizer
    from llava_cit.tasks.registry import resolve_task

    (tmp_path / "zebras.json").write_text(json.dumps([{"id": "1", "conversations": [
        {"from": "human", "value": "How many zebras are there?"}, {"from": "gpt", "value": "two"}]}]))
    (tmp_path / "zebras.yaml").write_text(yaml.safe_dump({"name": "zebras", "train": {"path": "zebras.json"},
                                                          "test": {"path": "zebras.json"}}))
    config = load_config(None, base=tiny_config([str(tmp_path / "zebras.yaml")]))
    with pytest.raises(UserError, match=r"'zebras' .*`llava-cit vocab tiny-llava` lists its words"):
        validate_data([resolve_task(config.tasks[0])], config, tiny_tokenizer("tiny-llava"))
    result = cli("vocab", "tiny-llava")
    assert result.returncode == 0
    words = result.stdout.split()
    assert "many" in words and "zebras" not in words and "<unk>" not in words
    one_line_error(cli("vocab", "gpt2"), "built-in tiny model")


def test_readme_task_file_example_works_as_written(tmp_path):
    """The README's chartqa.yaml, copied from the README, with data where it says: listed beside gqa and ocrvqa
    as the README lists it, it resolves, and its data passes the check before training."""
    from llava_cit.config import load_config
    from llava_cit.continual.data_validation import validate_data
    from llava_cit.tasks.registry import resolve_task

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Adding a VQA task", 1)[1]
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "chartqa.yaml").write_text(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert "`tasks: [gqa, ocrvqa, tasks/chartqa.yaml]`" in section
    data = tmp_path / "tasks" / "data"
    (data / "images").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8), "white").save(data / "images" / "chart.png")
    record = {"id": "c1", "image": "chart.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is the highest bar?"}, {"from": "gpt", "value": "2019"}]}
    for split in ("train", "test"):
        (data / f"chartqa_{split}.json").write_text(json.dumps([record]))
    tasks = [resolve_task(entry, tmp_path) for entry in ("gqa", "ocrvqa", "tasks/chartqa.yaml")]
    assert [t.name for t in tasks] == ["gqa", "ocrvqa", "chartqa"]
    config = load_config(None, base={"model": "llava-hf/llava-1.5-7b-hf", "tasks": ["tasks/chartqa.yaml"]})
    assert validate_data([tasks[2]], config) == {"chartqa/train": 1, "chartqa/test": 1}
