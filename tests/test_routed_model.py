"""One routed model (issue 26): the runner's evaluation, RunServer and `eval --run` route a query the same way;
serving reads the manifest (a run written before the manifest had a serving section is served from results.json);
one denominator for the upper bound, and `eval.upper_bound_from` only from a run of the same tasks and data."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import tiny_run_config

from llava_cit.config import load_config
from llava_cit.continual.runner import ContinualRunner
from llava_cit.data.sources import load_source
from llava_cit.serve.routed_model import RoutedModel
from llava_cit.serve.run_server import RunServer
from llava_cit.tasks.registry import resolve_task
from llava_cit.util.errors import UserError

TASKS = ["synth-shapes", "synth-ocr"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("routed") / "run"
    ContinualRunner(load_config(None, base=tiny_run_config()), run).run()
    return run


def stage_predictions(run: Path, stage: int) -> dict[tuple[str, str], dict]:
    rows = {}
    for task in TASKS:
        for line in (run / f"predictions/stage-{stage:02d}/{task}.jsonl").read_text().splitlines():
            row = json.loads(line)
            rows[(task, row["id"])] = row
    return rows


def test_the_runner_run_server_and_eval_run_route_every_query_alike(finished, tmp_path):
    from llava_cit.evaluation.batch import run_predictions
    from llava_cit.evaluation.items import load_benchmark

    runner_rows = stage_predictions(finished, 1)
    server = RunServer(finished, lazy_adapters=True)
    assert isinstance(server, RoutedModel) and server.tasks == TASKS and server.switch is not None
    config = load_config(None, base=tiny_run_config())
    for name in TASKS:  # the runner's test sets, routed again by the served model
        tests = load_source(resolve_task(name).test, name, "test", config.eval.limit, config.seed, keep_bad=True)
        routes = server.routes(tests)
        assert [r.task for r in routes] == [runner_rows[(name, ex.id)]["routed_task"] for ex in tests]
        assert [r.confidence for r in routes] == pytest.approx(
            [runner_rows[(name, ex.id)]["confidence"] for ex in tests], abs=1e-5)
        assert server.route(tests) == [r.task for r in routes]
        # `eval --run`: the same server behind the batch evaluation
        rows = run_predictions(load_benchmark(name, None, None), server, tmp_path / name, batch_size=6,
                               limit=config.eval.limit)
        assert {key: row["routed_task"] for key, row in rows.items()} == \
            {ex.id: runner_rows[(name, ex.id)]["routed_task"] for ex in tests}
    assert len({row["routed_task"] for row in runner_rows.values()}) >= 2  # the switch really did route


def test_a_routed_model_pins_a_task_and_generates_mixed_batches(finished):
    from llava_cit.data import synthetic

    queries = [*synthetic.generate("synth-shapes", 3, split="test"), *synthetic.generate("synth-ocr", 3, split="test")]
    server = RunServer(finished, lazy_adapters=True)
    pinned = server.pinned("synth-ocr")
    assert pinned.route(queries) == ["synth-ocr"] * 6 and pinned.tasks == ["synth-ocr"]
    assert pinned.budget("synth-ocr") == server.budget("synth-ocr") == 3  # the task's own (eval.max_new_tokens caps it)
    answers = server.generate(queries)
    assert answers == [p.answer for p in server.answer(queries)]  # mixed batches equal route-by-route answers
    assert all(isinstance(a, str) for a in answers)
    with pytest.raises(UserError, match="no adapter serves task 'nope'"):
        server.pinned("nope")


def test_the_manifest_records_how_the_run_is_served(finished):
    serving = json.loads((finished / "manifest.json").read_text())["serving"]
    assert serving["routing"] == "switch" and serving["learner"] == "lora" and serving["tasks"] == TASKS
    assert serving["serving"] == {"synth-shapes": "adapters/00-synth-shapes", "synth-ocr": "adapters/01-synth-ocr"}
    assert serving["switch"] == "switch/stage-01"
    assert serving["prompt"] == json.loads((finished / "prompt.json").read_text())  # budgets included


def old_style(run: Path, copy: Path, stages: int = 2) -> Path:
    """A copy of `run` as the code before the manifest's serving section wrote it (its first `stages` stages)."""
    shutil.copytree(run, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for stage in manifest["stages"]:
        stage.pop("data_sha256")
    (copy / "manifest.json").write_text(json.dumps({"stages": manifest["stages"][:stages]}))
    for later in range(stages, len(manifest["stages"])):
        for folder in (manifest["stages"][later]["adapter"], f"predictions/stage-{later:02d}", "switch"):
            shutil.rmtree(copy / folder)
    return copy


def test_a_run_written_before_the_serving_section_is_served_from_results_json(finished, tmp_path):
    old = old_style(finished, tmp_path / "old")
    queries = load_source(resolve_task("synth-ocr").test, "synth-ocr", "test", 12, 0, keep_bad=True)
    served = RunServer(finished, lazy_adapters=True).route(queries)
    assert RunServer(old, lazy_adapters=True).route(queries) == served
    results = json.loads((old / "results.json").read_text())
    results["adapters"]["synth-shapes"] = "adapters/01-synth-ocr"  # serving trusts results.json only where the
    (old / "results.json").write_text(json.dumps(results))  # manifest agrees
    with pytest.raises(UserError, match="field 'adapters' disagrees with the run's manifest.json"):
        RunServer(old)
    # a run stopped after stage 0 by the old code resumes: stage 1 trains, and the manifest says how it is served
    resumed = old_style(finished, tmp_path / "resumed", stages=1)
    ContinualRunner(load_config(None, base=tiny_run_config()), resumed).run()
    assert json.loads((resumed / "manifest.json").read_text())["serving"]["switch"] == "switch/stage-01"
    assert RunServer(resumed, lazy_adapters=True).route(queries) == served


def upper_bound_config(source: Path) -> dict:
    config = tiny_run_config(method="seq-lora")
    config["eval"] = {**config["eval"], "upper_bound_from": str(source)}
    return config


@pytest.mark.parametrize("change, named", [
    ({"seed": 1}, "seed (1 here, 0 there)"),
    ({"eval": {"limit": 6}}, "eval.limit (6 here, 12 there)"),
    ({"tasks": ["synth-ocr", "synth-shapes"]}, "tasks (stage 0: 'synth-ocr' here, 'synth-shapes' there)"),
    ({"train_limit": 40}, "data checksums (stage 0 'synth-shapes': train)"),
])
def test_upper_bounds_from_another_run_are_refused_where_the_runs_differ(finished, tmp_path, change, named):
    config = upper_bound_config(finished)
    eval_change = change.pop("eval", None)
    config.update(change)
    if eval_change:
        config["eval"].update(eval_change)
    with pytest.raises(UserError) as caught:
        ContinualRunner(load_config(None, base=config), tmp_path / "r").run()
    message = str(caught.value)
    assert message.startswith(f"eval.upper_bound_from: {finished} differs from this run in ") and named in message
    assert "\n" not in message and not (tmp_path / "r/adapters").exists()  # refused before stage 0 trained


def test_upper_bounds_from_a_run_without_data_checksums_are_refused(finished, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(finished, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for stage in manifest["stages"]:
        stage.pop("data_sha256")
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"data checksums \(stage 0 'synth-shapes': none recorded there"):
        ContinualRunner(load_config(None, base=upper_bound_config(old)), tmp_path / "r").run()


def test_upper_bounds_from_the_same_tasks_and_data_are_taken(finished, tmp_path):
    config = upper_bound_config(finished)
    config["train"] = {**config["train"], "max_steps": 1}
    results = ContinualRunner(load_config(None, base=config), tmp_path / "r").run()
    source = json.loads((finished / "results.json").read_text())
    assert results["upper_bound"] == source["upper_bound"]
    assert results["upper_bound_source"]["synth-ocr"] == f"{finished} (upper_bound of 'synth-ocr')"
    assert not (tmp_path / "r/upper_bound").exists()  # no adapter trained for it


def test_a_method_without_a_router_answers_every_query_with_one_budget(tmp_path, monkeypatch):
    """One deployed model generates every query with the largest budget of the tasks it learned; the upper bound
    (the task's own adapter, trained alone) with the task's own."""
    import llava_cit.serve.routed_model as routed_model

    calls = []
    real = routed_model.generate_routed

    def spy(model, encoder, examples, routes, budgets, *args, **kwargs):
        calls.append((list(routes), list(budgets)))
        return real(model, encoder, examples, routes, budgets, *args, **kwargs)

    monkeypatch.setattr(routed_model, "generate_routed", spy)
    config = tiny_run_config(method="seq-lora", tasks=["synth-shapes", {"name": "synth-ocr", "max_new_tokens": 2}])
    config["eval"]["max_new_tokens"] = None
    config["train"] = {**config["train"], "max_steps": 2}
    results = ContinualRunner(load_config(None, base=config), tmp_path / "r").run()
    evaluation = [budgets for routes, budgets in calls if set(routes) == {"s01-synth-ocr"}]
    assert evaluation and set(evaluation[0]) == {4}  # stage 1's matrix row: synth-shapes' 4 for every query
    assert [set(budgets) for routes, budgets in calls if set(routes) == {"solo-synth-ocr"}] == [{2}]
    assert results["upper_bound_source"]["synth-ocr"].startswith("upper_bound/01-synth-ocr")
