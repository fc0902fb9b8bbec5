"""One registry type for metrics, methods, tasks and model specs: a name is registered once; metrics are found by
name, so any task can name any registered metric; no import cycle anywhere in the packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from benchmarks.metrics import METRICS, Sample, metric
from benchmarks.registry import DuplicateName, Registry, UnknownName
from llava_cit.util.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_a_registry_refuses_a_second_registration_of_a_name():
    registry: Registry[object] = Registry("widget")
    first, second = object(), object()
    registry.add("a", first, "alias")
    registry.add("a", first)  # the very same object again (a module imported twice): nothing changes
    with pytest.raises(DuplicateName, match="widget 'a' is registered twice"):
        registry.add("a", second)
    with pytest.raises(DuplicateName, match="widget 'alias' is registered twice"):
        registry.add("b", second, "alias")
    assert "b" not in registry  # a refused registration leaves nothing behind
    assert registry.get("alias") is first and registry.names() == ["a", "alias"]
    with pytest.raises(UnknownName, match=r"^unknown widget 'z' \(known: a, alias\)$"):
        registry.get("z")

    @registry.register("decorated")
    def function():
        return 1

    assert registry.get("decorated") is function


def test_methods_tasks_and_model_specs_share_the_registry_type_and_refuse_duplicates():
    from llava_cit.methods.base import Method
    from llava_cit.methods.registry import METHODS, get_method, register
    from llava_cit.models.loading import MODEL_SPECS
    from llava_cit.tasks.catalog import TASKS
    from llava_cit.tasks.catalog import register as register_task
    from llava_cit.tasks.registry import known_tasks
    from llava_cit.tasks.spec import TaskSpec

    get_method("ewc")
    known_tasks()
    assert all(isinstance(r, Registry) for r in (METHODS, TASKS, MODEL_SPECS, METRICS))
    with pytest.raises(UserError, match="method 'ewc' is registered twice"):
        register(Method("ewc", description="a plugin that would shadow EWC"))
    with pytest.raises(UserError, match="method 'er' is registered twice"):
        register(Method("my-er"), "er")
    assert get_method("ewc").description.startswith("seq-lora + elastic")
    with pytest.raises(UserError, match="task 'synth-ocr' is registered twice"):
        register_task(TaskSpec(name="synth-ocr"))
    assert {"tiny-llava", "tiny-bloom", "tiny-opt"} <= set(MODEL_SPECS.names())


def test_a_method_file_loaded_twice_is_one_method(tmp_path):
    from llava_cit.methods.registry import get_method

    path = ROOT / "scripts" / "methods" / "replay_last.py"
    assert get_method(str(path)) is get_method(str(path))


def test_any_task_can_name_any_registered_metric():
    from llava_cit.data.example import Example
    from llava_cit.evaluation.scoring import score_all, wrong_scores
    from llava_cit.tasks.spec import TaskSpec

    if "test-first-word" not in METRICS:
        @metric("test-first-word", applies=lambda s: bool(s.references[0]))
        def first_word(samples, normalizer="lower", **_):
            """The prediction's first word equals the reference's (a metric a researcher adds)."""
            return [float(s.prediction.split()[:1] == s.references[0].split()[:1]) for s in samples]

    task = TaskSpec(name="t", kind="text", metric="test-first-word", extra_metrics=["exact_match"]).validate()
    examples = [Example(id="0", turns=[("q", "red car")]), Example(id="1", turns=[("q", "")])]
    assert score_all(task, ["red bus", "blue"], examples) == [1.0, None]  # None: the metric does not apply
    assert wrong_scores(task, examples[0]) == {"score": 0.0, "exact_match": 0.0}
    # the LLaVA benchmarks' rules are metrics like any other: a task file may name them
    gqa_task = TaskSpec(name="g", metric="gqa").validate()
    assert score_all(gqa_task, ["Yes."], [Example(id="0", turns=[("q", "yes")])]) == [1.0]
    ocr_task = TaskSpec(name="o", metric="ocrbench").validate()
    assert score_all(ocr_task, ["it says STOP here"], [Example(id="0", turns=[("q", "stop")])]) == [1.0]
    with pytest.raises(UserError, match=r"task 'u': unknown metric 'bleu4' \(known: .*exact_match.*gqa.*ocrbench"):
        TaskSpec(name="u", metric="bleu4").validate()
    with pytest.raises(UserError, match="task 'u': unknown extra metric 'nope'"):
        TaskSpec(name="u", extra_metrics=["nope"]).validate()
    assert METRICS.get("constraint_rate").wrong(Sample("", ["x"])) is None  # a sample without a constraint


def _import_graph() -> dict[str, set[str]]:
    modules = {}
    for package in ("llava_cit", "switch", "benchmarks"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # function-level imports too
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):  # a package's own __init__
                    graph[name].add(target)
    return graph


def test_no_import_cycle_anywhere_in_the_packages():
    graph = _import_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
    assert not any(t.startswith("llava_cit") for n, ts in graph.items() if n.startswith(("switch", "benchmarks"))
                   for t in ts)  # switch/ and benchmarks/ stand alone
