"""`accelerate launch` with two CPU processes (gloo) on the tiny model, DDP and DeepSpeed ZeRO-2 / ZeRO-3: every rank
trains, rank 0 alone writes the run directory, evaluation is sharded and merged into the results one process writes,
and a killed run resumes."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_run_config

from llava_cit.train.distributed import Processes, collective_timeout
from llava_cit.util.errors import UserError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(config: Path, out: Path, processes: int = 2) -> list[str]:
    """The README's multi-GPU command, with two processes on the CPU (accelerate's torchrun launcher)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), "-m", "llava_cit.cli", "train", str(config), "--out", str(out)]


def environment() -> dict:
    # a rank stuck in a collective fails after 240 s, naming it; PYTHONFAULTHANDLER: SIGABRT dumps every thread
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
            "LLAVA_CIT_DIST_TIMEOUT": "240", "PYTHONFAULTHANDLER": "1"}


def run_launched(command: list[str], timeout: int = 480, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """subprocess.run for a launched run; one that hangs past `timeout` is made to print where every process is
    (SIGABRT to the launcher and its ranks: faulthandler's tracebacks), then the test fails with that output."""
    import psutil

    process = subprocess.Popen(command, env=environment(), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        for member in reversed(family):
            member.send_signal(signal.SIGABRT)
        time.sleep(5)
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"{' '.join(command[-4:])} hung for {timeout} s; stdout:\n{out[-3000:]}\nstderr:\n{err[-12000:]}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def write_config(tmp_path: Path, **extra) -> Path:
    config = tiny_run_config(**extra)
    config["train"] = {**config["train"], "batch_size": 8, "global_batch_size": 16}  # 8 x 2 processes, or 8 x 2 steps
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def shape(value, path: str = "") -> set[str]:
    """Every key path of a JSON value (list items share one path)."""
    if isinstance(value, dict):
        return {f"{path}.{k}" for k in value} | set().union(*(shape(v, f"{path}.{k}") for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(shape(v, f"{path}[]") for v in value)) if value else set()
    return set()


def files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and p.name != ".lock"
            and not p.name.startswith("events.out")}


def test_two_processes_write_the_run_one_process_writes(tmp_path):
    config = write_config(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    single = run_launched([sys.executable, "-m", "llava_cit.cli", "train", str(config), "--out", str(one)])
    assert single.returncode == 0, single.stderr[-2000:]
    launched = run_launched(launch_command(config, two))
    assert launched.returncode == 0, launched.stderr[-3000:]
    a, b = (json.loads((run / "results.json").read_text()) for run in (one, two))
    assert shape(a) == shape(b) and len(b["matrix"]) == 2
    assert files(one) == files(two)  # the same artifacts, written once (rank 0)
    events = [len(list(run.rglob("events.out*"))) for run in (one, two)]
    assert events[0] == events[1]  # TensorBoard logs (when installed) from rank 0 only
    for stage_file in sorted((two / "predictions").rglob("*.jsonl")):  # sharded, then merged back in order
        rows = [json.loads(line) for line in stage_file.read_text().splitlines()]
        alone = [json.loads(line) for line in (one / stage_file.relative_to(two)).read_text().splitlines()]
        assert [r["id"] for r in rows] == [r["id"] for r in alone] and len(rows) == 12
        assert all(r["prediction"] is not None for r in rows)
    log = (two / "run.log").read_text()
    assert log.count("stage 1 (synth-ocr): scores") == 1  # one writer: each line once
    assert "stage 1 evaluation: 12/12 items" in log  # rank 0 answered its half of the 24 queries
    manifest = json.loads((two / "manifest.json").read_text())
    assert [s["train"]["steps"] for s in manifest["stages"]] == [3, 3]  # 48 examples at a global batch of 16


def test_a_killed_multi_process_run_resumes(tmp_path):
    (tmp_path / "captions.yaml").write_text(yaml.safe_dump({  # a third task, as a task file
        "name": "captions", "train": {"type": "synthetic", "generator": "synth-caption", "count": 200},
        "test": {"type": "synthetic", "generator": "synth-caption", "count": 50}, "max_new_tokens": 4}))
    config = write_config(tmp_path, tasks=["synth-shapes", "synth-ocr", "captions.yaml"])
    run = tmp_path / "run"
    process = subprocess.Popen(launch_command(config, run), env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    manifest = run / "manifest.json"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if manifest.is_file() and len(json.loads(manifest.read_text())["stages"]) >= 1:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the launched run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and both ranks, mid-sequence
    process.wait()
    done = len(json.loads(manifest.read_text())["stages"])
    assert 1 <= done < 3, "the run was not stopped mid-sequence"
    resumed = run_launched(launch_command(config, run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert len(results["matrix"]) == 3 and all(len(row) == 3 for row in results["matrix"])
    assert "stage 0 (synth-shapes): finished earlier, skipped" in (run / "run.log").read_text()


def test_methods_with_one_process_state_are_refused_under_several(tmp_path):
    config = write_config(tmp_path, method="ewc")
    launched = run_launched(launch_command(config, tmp_path / "run"))
    assert launched.returncode != 0
    assert "error: method 'ewc' keeps per-stage state that one process computes" in launched.stderr


def test_one_process_is_rank_0_of_1():
    processes = Processes()
    assert (processes.rank, processes.world, processes.is_main) == (0, 1, True)
    assert processes.shard(5) == [0, 1, 2, 3, 4] and processes.merge(3, ["a", "b", "c"]) == ["a", "b", "c"]
    assert processes.on_main(lambda: 7) == 7


def test_the_collective_timeout_is_torchs_unless_set(monkeypatch):
    monkeypatch.delenv("LLAVA_CIT_DIST_TIMEOUT", raising=False)
    assert collective_timeout().total_seconds() == 1800
    monkeypatch.setenv("LLAVA_CIT_DIST_TIMEOUT", "90")
    assert collective_timeout().total_seconds() == 90
    for bad in ("0", "soon"):
        monkeypatch.setenv("LLAVA_CIT_DIST_TIMEOUT", bad)
        with pytest.raises(UserError, match="LLAVA_CIT_DIST_TIMEOUT"):
            collective_timeout()


def test_shards_cover_every_item_once_and_merge_in_order(monkeypatch):
    shards = {}
    for rank in range(3):
        processes = Processes()
        processes.rank, processes.world = rank, 3
        shards[rank] = processes.shard(10)
    assert sorted(i for s in shards.values() for i in s) == list(range(10))
    import accelerate.utils

    gathered = [(rank, [f"answer {i}" for i in shard]) for rank, shard in shards.items()]
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda mine: gathered)
    processes.rank, processes.world = 0, 3
    assert processes.merge(10, shards[0]) == [f"answer {i}" for i in range(10)]


# DeepSpeed on the CPU: its CPU accelerator talks over gloo (JIT-building one small C++ op on first use)
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None or shutil.which("c++") is None,
                                     reason="needs deepspeed (pip install deepspeed) and a C++ compiler")
REPO = Path(__file__).resolve().parents[1]


def deepspeed_command(zero: int, config: Path, out: Path) -> list[str]:
    """The README's DeepSpeed command with the shipped accelerate config, two CPU processes instead of eight."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(REPO / "scripts" / "accelerate" / f"zero{zero}.yaml"), "--num_processes", "2",
            "--main_process_port", str(free_port()), "-m", "llava_cit.cli", "train", str(config), "--out", str(out)]


def adapters(run: Path) -> dict[str, dict]:
    from safetensors.torch import load_file

    return {str(f.relative_to(run)): load_file(f) for f in sorted((run / "adapters").rglob("*.safetensors"))}


def assert_same_adapters(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and len(a) == 2
    for name in a:
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            assert a[name][key].shape == b[name][key].shape, (name, key)
            assert (a[name][key] - b[name][key]).abs().max() < 1e-5, (name, key)


@needs_deepspeed
def test_deepspeed_zero2_and_zero3_train_what_ddp_trains(tmp_path):
    config = write_config(tmp_path)
    recipe = yaml.safe_load(config.read_text())
    recipe["train"]["gradient_checkpointing"] = True  # as LLaVA-1.5's recipe (and the paper configs) train
    config.write_text(yaml.safe_dump(recipe))
    runs = {}
    for name, command in (("ddp", launch_command(config, tmp_path / "ddp")),
                          ("zero2", deepspeed_command(2, config, tmp_path / "zero2")),
                          ("zero3", deepspeed_command(3, config, tmp_path / "zero3"))):
        done = run_launched(command, cwd=REPO)
        assert done.returncode == 0, (name, done.stderr[-3000:])
        runs[name] = tmp_path / name
    results = {name: json.loads((run / "results.json").read_text()) for name, run in runs.items()}
    assert shape(results["zero3"]) == shape(results["ddp"]) == shape(results["zero2"])
    assert files(runs["zero3"]) == files(runs["ddp"]) == files(runs["zero2"])
    ddp = adapters(runs["ddp"])
    trained = [t for a in ddp.values() for k, t in a.items() if "lora_B" in k]
    assert trained and all(t.abs().max() > 0 for t in trained)  # B starts at zero: these adapters learned
    # the same data order and the same global batch: partitioning changes where the weights live, not the result
    assert_same_adapters(adapters(runs["zero2"]), ddp)
    assert_same_adapters(adapters(runs["zero3"]), ddp)  # gathered whole, saved whole, each stage's own adapter
    for stage_file in sorted((runs["zero3"] / "predictions").rglob("*.jsonl")):
        assert stage_file.read_text() == (runs["ddp"] / stage_file.relative_to(runs["zero3"])).read_text()


def readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


@needs_deepspeed
def test_a_zero3_run_killed_mid_stage_resumes_from_its_deepspeed_checkpoint(tmp_path):
    import psutil

    config = write_config(tmp_path, train_limit=96)  # 6 steps a stage, a checkpoint every 2
    run, whole = tmp_path / "run", tmp_path / "whole"
    process = subprocess.Popen(deepspeed_command(3, config, run), env=environment(), cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = run / "checkpoints" / "01-synth-ocr"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if any(readable_json(p) for p in checkpoint.glob("checkpoint-*/trainer_state.json")):
            break  # mid-stage, right after a complete checkpoint
        time.sleep(0.02)
    ranks = psutil.Process(process.pid).children(recursive=True)  # in their own sessions: killed one by one
    assert process.poll() is None, "the launched run ended before it could be killed"
    for victim in [psutil.Process(process.pid), *ranks]:
        victim.kill()
    process.wait()
    psutil.wait_procs(ranks, timeout=30)
    assert len(json.loads((run / "manifest.json").read_text())["stages"]) == 1
    assert list(checkpoint.glob("checkpoint-*/global_step*")), "no DeepSpeed checkpoint to resume from"
    for out in (run, whole):  # the same command resumes; and an uninterrupted run to compare with
        done = run_launched(deepspeed_command(3, config, out), cwd=REPO)
        assert done.returncode == 0, done.stderr[-3000:]
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    assert stages[1]["train"]["resumed_from"].startswith("checkpoint-") and stages[1]["train"]["steps"] == 6
    assert_same_adapters(adapters(run), adapters(whole))
