"""`llava-cit sweep`: every grid point a continual run, scored on a validation split carved from the training data."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_run_config

from llava_cit.continual.runner import ContinualRunner, Progress
from llava_cit.continual.sweep import Validation, grid_points, parse_grid, run_sweep
from llava_cit.data.holdout import validation_ids
from llava_cit.data.sources import load_source
from llava_cit.util.errors import UserError


def test_the_two_parts_are_disjoint_and_make_the_training_data():
    inner = {"type": "synthetic", "generator": "synth-shapes"}
    wrap = {"type": "holdout", "source": inner, "fraction": 0.25, "min_count": 3, "seed": 1, "limit": 20}
    train = load_source({**wrap, "part": "train"}, "synth-shapes", "train", limit=100)
    held = load_source({**wrap, "part": "validation"}, "synth-shapes", "test", limit=4)  # the caller's limit: a cap
    whole = load_source(inner, "synth-shapes", "train", limit=20)
    assert len(train) == 15 and len(held) == 4
    assert {e.id for e in train} | validation_ids([e.id for e in whole], 0.25, 3, 1) == {e.id for e in whole}
    assert not {e.id for e in train} & {e.id for e in held}
    assert all(e.id.endswith("-train") for e in held)  # drawn from the training data, not the test set


def test_grid_points_are_every_combination_and_a_bad_grid_is_one_line():
    assert grid_points(parse_grid(["a.x=1,2", "b=3"])) == [{"a.x": "1", "b": "3"}, {"a.x": "2", "b": "3"}]
    for bad in (["strength"], ["x="], ["=1,2"], ["a=1", "a=2"]):
        with pytest.raises(UserError, match="--set-grid"):
            parse_grid(bad)
    with pytest.raises(UserError, match="at least one --set-grid"):
        parse_grid([])


def test_a_two_point_sweep_ranks_points_on_validation_and_never_reads_the_test_set(tmp_path):
    base = tiny_run_config(method="ewc", train_limit=40)
    base["eval"]["limit"] = 6

    def run(config, run_dir):
        return ContinualRunner(config, run_dir, progress=Progress(record_ids=True)).run()

    summary = run_sweep(base, None, parse_grid(["method_args.strength=1,1000"]), tmp_path / "s",
                        validation=Validation(0.2, 6, 0), run=run, say=lambda text: None)
    table = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert table == summary and len(table["points"]) == 2
    assert {row["point"]["method_args.strength"] for row in table["points"]} == {"1", "1000"}
    scores = [row["final_average"] for row in table["points"]]
    assert scores == sorted(scores, reverse=True) and table["best"] == table["points"][0]["point"]
    markdown = (tmp_path / "s" / "sweep.md").read_text()
    assert markdown.count("\n") == 4 and "final average (validation)" in markdown
    for row in table["points"]:
        run_dir = tmp_path / "s" / f"strength={row['point']['method_args.strength']}"
        assert row["run_dir"] == str(run_dir)
        results = json.loads((run_dir / "results.json").read_text())
        assert not (run_dir / "upper_bound").exists()  # the ranking reads accuracy only: no extra adapter trained
        assert set(results["upper_bound"].values()) == {None}
        assert all(v.startswith("not measured") for v in results["upper_bound_source"].values())
        manifest = json.loads((run_dir / "manifest.json").read_text())
        trained = {i for stage in manifest["stages"] for i in stage["train"]["example_ids"]}
        for task in ("synth-shapes", "synth-ocr"):
            scored = [json.loads(line)["id"] for line in (run_dir / "predictions" / "stage-01" / f"{task}.jsonl")
                      .read_text().splitlines()]
            assert len(scored) == 6 and all(i.endswith("-train") for i in scored)  # the training data's own
            assert not {f"{task}/{i}" for i in scored} & trained  # never trained on


def test_the_sweep_command_says_what_is_wrong_in_one_line(tmp_path):
    import subprocess
    import sys

    import yaml

    def sweep(*args):
        return subprocess.run([sys.executable, "-m", "llava_cit.cli", "sweep", *args], capture_output=True, text=True,
                              timeout=300)

    done = sweep(str(tmp_path / "missing.yaml"), "--set-grid", "method_args.strength=1,10")
    assert done.returncode == 2 and done.stderr.strip() == f"error: config file not found: {tmp_path / 'missing.yaml'}"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config(method="ewc")))
    done = sweep(str(config), "--set-grid", "strength")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error: --set-grid 'strength': expected key=value1,value2,...")


def test_a_grid_whose_points_all_score_the_same_is_flagged(tmp_path):
    base = tiny_run_config(method="ewc", train_limit=40)
    said = []

    def run_scoring(scores):
        def run(config, run_dir):  # stands in for training: the score each point's strength maps to
            return {"average": scores[str(config.method_args["strength"])], "tasks": ["synth-shapes", "synth-ocr"]}
        return run

    flat = run_sweep(base, None, parse_grid(["method_args.strength=100,1000"]), tmp_path / "flat",
                     run=run_scoring({"100": 0.5, "1000": 0.5}), say=said.append)
    assert "grid may not reach" in flat["warning"] and any("warning" in line for line in said)
    ranked = run_sweep(base, None, parse_grid(["method_args.strength=100,1000"]), tmp_path / "ranked",
                       run=run_scoring({"100": 0.4, "1000": 0.6}), say=said.append)
    assert "warning" not in ranked and ranked["best"] == {"method_args.strength": "1000"}
