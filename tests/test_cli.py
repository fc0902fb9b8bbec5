import subprocess
import sys

import yaml
from conftest import tiny_run_config


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "llava_cit.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_help_lists_commands_with_examples():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("demo", "train", "report", "route"):
        assert command in result.stdout
    assert "Example" in cli("train", "--help").stdout
    assert "--track text" in cli("demo", "--help").stdout
    result = cli("demo", "--track", "audio")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown demo track 'audio' (known: vision, text, smollm2, smollm2-llava)"


def test_bad_input_is_one_line_no_traceback(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config(tasks=["nope"])))
    result = cli("train", str(config), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: unknown task 'nope'")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = cli("train", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "config file not found" in result.stderr
    config.write_text("model: [unclosed\n")
    result = cli("train", str(config))
    assert result.returncode == 2 and "malformed YAML" in result.stderr and "line" in result.stderr


def test_empty_dataset_writes_nothing_finished(tmp_path):
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "task.yaml").write_text(yaml.safe_dump({"name": "empty", "train": {"path": "empty.json"},
                                                        "test": {"path": "empty.json"}}))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config(tasks=[str(tmp_path / "task.yaml")])))
    result = cli("train", str(config), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "dataset is empty" in result.stderr
    assert not (tmp_path / "run" / "adapters").exists() and not (tmp_path / "run" / "results.json").exists()


def test_train_then_report_and_route(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config()))
    out = tmp_path / "run"
    result = cli("train", str(config), "--out", str(out), "--set", "train.epochs=1")
    assert result.returncode == 0, result.stderr
    assert (out / "results.json").is_file() and (out / "relative_gain.png").is_file()
    assert "synth-shapes" in cli("report", str(out)).stdout
    result = cli("route", str(out / "switch" / "stage-01"), "What is written on the sign?",
                 "What color is the shape on the left?")
    assert result.returncode == 0
    lines = result.stdout.strip().splitlines()
    assert lines[0].split("\t")[0] == "synth-ocr" and lines[1].split("\t")[0] == "synth-shapes"
