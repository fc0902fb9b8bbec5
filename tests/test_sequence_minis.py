"""The CPU miniatures of UCIT, CoIN and MLLM-DCL run end to end (one method each, a few steps on a random tiny LLaVA):
every task is scored by its benchmark's metric, and the field's table exports."""

import json

import pytest
from typer.testing import CliRunner

from llava_cit.cli import app
from llava_cit.config import load_config
from llava_cit.continual.report import export_report
from llava_cit.continual.runner import ContinualRunner
from llava_cit.tasks.catalog import TASKS
from llava_cit.tasks.sequences import SEQUENCES
from llava_cit.util.errors import UserError


def mini_config(sequence: str, method: str) -> dict:
    return {"model": "tiny-llava-seq", "method": method, "tasks": [sequence], "train_limit": 24,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "projector_lr": None},
            "train": {"epochs": 1, "lr": 1e-3, "batch_size": 16, "max_length": 96, "save_steps": 2},
            "retention": {"fraction": 0.0001, "min_count": 8},
            "switch": {"extractor": "tiny-opt", "hidden": 32, "epochs": 50},
            "eval": {"limit": 8, "batch_size": 8, "max_new_tokens": 6}}


@pytest.mark.parametrize("sequence, method", [("ucit-mini", "seq-lora"), ("coin-mini", "switchcit"),
                                              ("mllm-dcl-mini", "switchcit")])
def test_miniature_runs_with_its_benchmarks_metrics(tmp_path, sequence, method):
    run_dir = tmp_path / method
    results = ContinualRunner(load_config(None, [], base=mini_config(sequence, method)), run_dir).run()
    tasks = list(SEQUENCES.get(sequence).tasks)
    assert results["tasks"] == tasks
    assert results["metric"] == {t: TASKS.get(t).metric for t in tasks}
    matrix = results["matrix"]
    assert [[v is not None for v in row] for row in matrix] == [[j <= i for j in range(len(tasks))]
                                                                for i in range(len(tasks))]
    for task in tasks:  # every sample was scored by the task's metric (CIDEr may exceed 1, the rest are in [0, 1])
        rows = [json.loads(line) for line in (run_dir / "predictions" / f"stage-{len(tasks) - 1:02d}" /
                                              f"{task}.jsonl").read_text().splitlines()]
        assert len(rows) == 8 and all(r["score"] >= 0 for r in rows)
        assert all(r["score"] <= 1 for r in rows) or TASKS.get(task).metric == "cider"
    markdown = export_report([run_dir], "markdown", tmp_path / "table.md")
    header = markdown.splitlines()[0]
    assert header.startswith("| method |") and header.endswith("| MFT | MFN | MAA | BWT |")
    assert (tmp_path / "table.md").read_text() == markdown
    row = markdown.splitlines()[2].split(" | ")
    assert row[0] == f"| {method}" and float(row[-4]) == pytest.approx(100 * results["mft"], abs=0.006)


def test_demo_sequence_names_the_miniatures():
    result = CliRunner().invoke(app, ["demo", "--sequence", "ucit"])
    assert isinstance(result.exception, UserError)
    assert "known: coin-mini, mllm-dcl-mini, ucit-mini" in str(result.exception)
    assert "llava-cit train" in str(result.exception)
