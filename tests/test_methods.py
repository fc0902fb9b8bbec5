"""The method interface: hooks with defaults, the baselines' own mechanisms, method files from outside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_run_config
from safetensors.torch import load_file

from llava_cit.config import LoraSettings, load_config
from llava_cit.continual.runner import ContinualRunner
from llava_cit.data import synthetic
from llava_cit.methods.agem import project
from llava_cit.methods.base import StageContext
from llava_cit.methods.registry import get_method, known_methods
from llava_cit.methods.regularization import adapter_parameters, penalty


def test_every_method_has_a_description_and_a_paper():
    names = {name for name, _ in known_methods()}
    assert {"switchcit", "switchcit-nn", "seq-lora", "rehearsal", "er", "ewc", "mas", "si", "a-gem", "multitask",
            "full-sft"} <= names
    assert get_method("er") is get_method("rehearsal")
    assert all(m.description and m.paper for _, m in known_methods())


def test_penalty_is_zero_at_the_anchor_and_grows_away_from_it():
    anchor = {"w": torch.randn(4, 3)}
    importance = {"w": torch.rand(4, 3)}
    w = torch.nn.Parameter(anchor["w"].clone())
    assert penalty({"w": w}, anchor, importance, 10.0).item() == 0.0
    values = []
    for step in (0.1, 0.2, 0.4):
        with torch.no_grad():
            w.copy_(anchor["w"] + step)
        values.append(penalty({"w": w}, anchor, importance, 10.0).item())
    assert 0 < values[0] < values[1] < values[2]
    assert values[1] == pytest.approx(4 * values[0], rel=1e-5)  # quadratic
    total = penalty({"w": w}, anchor, importance, 10.0)
    total.backward()
    assert (w.grad * (w.detach() - anchor["w"]) >= 0).all()  # the gradient pulls back towards the anchor


def test_agem_projection_never_conflicts_with_the_reference():
    torch.manual_seed(0)
    for _ in range(100):
        grad, reference = torch.randn(50), torch.randn(50)
        projected = project(grad, reference)
        assert torch.dot(projected, reference) >= -1e-5
        if torch.dot(grad, reference) >= 0:
            assert torch.equal(projected, grad)


def _context(tmp_path, loaded, retained, adapter="a", settings=None):
    from llava_cit.data.collation import Encoder

    return StageContext(0, ["synth-shapes", "synth-ocr"], adapter, tmp_path / "method_state", {}, lambda: retained,
                        Encoder(loaded), settings)


@pytest.mark.parametrize("name,args", [("ewc", {}), ("ewc", {"fisher": True}), ("mas", {})])
def test_importance_is_non_negative_and_computed_from_the_retained_examples_only(tmp_path, monkeypatch, name, args):
    import importlib

    import llava_cit.methods.regularization as regularization
    from llava_cit.models.loading import load_model
    from llava_cit.train.trainer import add_adapter

    loaded = load_model("tiny-llava")
    model = add_adapter(loaded.model, "a", LoraSettings(r=4, alpha=8, dropout=0.0), True)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    retained = synthetic.generate("synth-shapes", 3)
    seen = []
    real = regularization.batches

    def spy(ctx, examples, batch_size=1):
        seen.extend(ex.id for ex in examples)
        return real(ctx, examples, batch_size)

    monkeypatch.setattr(importlib.import_module(f"llava_cit.methods.{name}"), "batches", spy)
    ctx = _context(tmp_path, loaded, retained, settings=get_method(name).parse_settings(args))
    info = get_method(name).after_stage(ctx, model)
    assert sorted(seen) == sorted(ex.id for ex in retained)
    tensors = load_file(str(tmp_path / "method_state" / "00-synth-shapes.safetensors"))
    importance = [v for k, v in tensors.items() if k.startswith("importance.")]
    assert importance and all((v >= 0).all() for v in importance)
    assert sum(v.sum() for v in importance) > 0 and info["importance_mean"] > 0
    anchors = {k[len("anchor."):]: v for k, v in tensors.items() if k.startswith("anchor.")}
    assert set(anchors) == set(adapter_parameters(model, "a"))


@pytest.mark.parametrize("method", ["ewc", "mas", "si", "a-gem"])
def test_baselines_run_the_sequence_and_leave_their_mechanism_visible(tmp_path, method):
    args = {"reference_batch": 4} if method == "a-gem" else {"strength": 100.0}
    config = tiny_run_config(method=method, method_args=args)
    runner = ContinualRunner(load_config(None, base=config), tmp_path / "r")
    before = dict(vars(runner.method))
    results = runner.run()
    assert vars(runner.method) == before  # per-stage state went through the stage's hooks, not onto the method
    assert len(results["matrix"]) == 2 and results["method"] == method
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    stage1 = manifest["stages"][1]["train"]["method"]
    if method == "a-gem":
        assert stage1["steps"] > 0 and 0 <= stage1["projected_steps"] <= stage1["steps"]
    else:
        state = tmp_path / "r" / "method_state"
        assert sorted(p.name for p in state.iterdir()) == ["00-synth-shapes.safetensors", "01-synth-ocr.safetensors"]
        first = load_file(str(state / "00-synth-shapes.safetensors"))
        second = load_file(str(state / "01-synth-ocr.safetensors"))
        # online accumulation: stage 1's importance includes stage 0's
        key = next(k for k in first if k.startswith("importance."))
        assert (second[key] >= first[key] - 1e-6).all()


def test_si_path_integral_is_non_negative_after_training(tmp_path):
    config = tiny_run_config(method="si")
    ContinualRunner(load_config(None, base=config), tmp_path / "r").run()
    tensors = load_file(str(tmp_path / "r" / "method_state" / "00-synth-shapes.safetensors"))
    importance = [v for k, v in tensors.items() if k.startswith("importance.")]
    assert all((v >= 0).all() for v in importance) and sum(v.sum() for v in importance) > 0


def test_nearest_neighbour_routing_has_no_trained_classifier(tmp_path):
    config = tiny_run_config(method="switchcit-nn")
    results = ContinualRunner(load_config(None, base=config), tmp_path / "r").run()
    meta = json.loads((tmp_path / "r" / "switch" / "stage-01" / "switch.json").read_text())
    assert meta["router"] == "nearest" and meta["parameter_count"] == 0
    assert results["switch_accuracy"][-1] is not None and results["switch_accuracy"][-1] >= 0.9


EXAMPLE_METHOD = Path(__file__).resolve().parents[1] / "scripts" / "methods" / "replay_last.py"


def test_a_method_file_from_outside_the_package_runs(tmp_path):
    config = tiny_run_config(method=str(EXAMPLE_METHOD))
    runner = ContinualRunner(load_config(None, base=config), tmp_path / "r")
    assert runner.method.name == "replay-last"
    results = runner.run()
    assert results["method"] == "replay-last" and len(results["matrix"]) == 2
    assert results["method_plan"]["routes"] is False
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["stages"][1]["train"]["examples"] > 48  # its own data plus the replayed examples
    from llava_cit.serve.run_server import RunServer

    assert RunServer(tmp_path / "r").fixed == "synth-ocr"  # served without finding the method file again


SHAPES_AGAIN = {"file": "synth-shapes", "name": "shapes-again"}  # a near-duplicate of the first task


def test_similarity_expansion_reuses_for_a_near_duplicate_and_expands_for_a_different_task(tmp_path):
    config = tiny_run_config(method="sim-expand", tasks=["synth-shapes", "synth-ocr", SHAPES_AGAIN])
    results = ContinualRunner(load_config(None, base=config), tmp_path / "r").run()
    stages = json.loads((tmp_path / "r" / "manifest.json").read_text())["stages"]
    similarity = results["task_similarity"]
    assert similarity[1]["synth-shapes"]["similarity"] < 0.5  # a different task ...
    assert stages[1]["started_from"] is None  # ... expands
    assert stages[1]["serving"] == {"synth-shapes": "adapters/00-synth-shapes", "synth-ocr": "adapters/01-synth-ocr"}
    assert similarity[2]["synth-shapes"]["similarity"] > 0.5  # the near-duplicate ...
    assert stages[2]["started_from"] == "adapters/00-synth-shapes"  # ... reuses the first task's adapter
    assert results["serving"]["synth-shapes"] == results["serving"]["shapes-again"] == "adapters/02-shapes-again"
    assert results["adapters"]["synth-shapes"] == "adapters/00-synth-shapes"  # each stage's own, unchanged
    # the shared adapter is not the task's own trained alone: its upper bound is a fresh adapter's, as for any method
    assert results["upper_bound_source"]["shapes-again"].startswith("upper_bound/02-shapes-again")
    assert results["upper_bound_source"]["synth-ocr"] == "own adapter (oracle routing)"
    assert (tmp_path / "r" / "task_similarity.png").is_file()
    from llava_cit.serve.run_server import RunServer

    server = RunServer(tmp_path / "r")
    assert sorted(server.loaded_adapters) == ["synth-ocr", "synth-shapes"]  # two adapters serve three tasks
    queries = synthetic.generate("synth-shapes", 4, split="test")
    assert all(error is None for _, _, _, error in server.answer(queries))


def test_tir_weights_each_earlier_task_by_its_own_similarity(tmp_path):
    """Three tasks, as the authors' code does TIR: at the third (a near-duplicate of the first) the parameters the
    first task owns keep 1 - s of their importance, the second's (a different task) nearly all; each stage stores the
    element-wise maximum of the scaled earlier importance and its own normalised importance, with the owner."""
    from safetensors.torch import load_file

    config = tiny_run_config(method="tir", tasks=["synth-shapes", "synth-ocr", SHAPES_AGAIN])
    results = ContinualRunner(load_config(None, base=config), tmp_path / "r").run()
    stages = json.loads((tmp_path / "r" / "manifest.json").read_text())["stages"]
    similarity = results["task_similarity"][2]
    assert similarity["synth-shapes"]["similarity"] > 0.5 > similarity["synth-ocr"]["similarity"]
    scales = stages[2]["train"]["method"]["task_scales"]
    assert scales["synth-ocr"] == pytest.approx(1 - similarity["synth-ocr"]["similarity"])
    assert scales["synth-shapes"] == pytest.approx(1 - similarity["synth-shapes"]["similarity"])
    assert scales["synth-shapes"] < scales["synth-ocr"]  # a similar earlier task is protected less

    def state(name):
        tensors = load_file(str(tmp_path / "r" / "method_state" / f"{name}.safetensors"))
        return ({k.partition(".")[2]: v for k, v in tensors.items() if k.startswith(kind + ".")}
                for kind in ("importance", "owner"))

    first, first_owner = state("00-synth-shapes")
    assert sum(float(v.sum()) for v in first.values()) == pytest.approx(1.0, rel=1e-4)  # normalised per task
    assert all(not v.any() for v in first_owner.values())
    second, second_owner = state("01-synth-ocr")
    scale = stages[1]["train"]["method"]["task_scales"]["synth-shapes"]
    owned = {0: 0, 1: 0}
    for key, value in second.items():
        kept = first[key] * scale  # the first task's importance as stage 1 trained with it
        ones = second_owner[key] == 1
        torch.testing.assert_close(value[~ones], kept[~ones])
        assert bool((value[ones] > kept[ones]).all())
        owned[0] += int((~ones).sum())
        owned[1] += int(ones.sum())
    assert owned[0] > 0 and owned[1] > 0  # each task owns some parameters


def test_eproj_trains_only_a_projector_per_task_and_routes_by_task_key(tmp_path):
    results = ContinualRunner(load_config(None, base=tiny_run_config(method="eproj")), tmp_path / "r").run()
    run = tmp_path / "r"
    assert results["serving"] == {"synth-shapes": "adapters/00-synth-shapes", "synth-ocr": "adapters/01-synth-ocr"}
    weights = "adapter_model.safetensors"
    first, second = (load_file(str(next((run / rel).rglob(weights)))) for rel in results["serving"].values())
    projector = [k for k in first if "multi_modal_projector" in k]
    lora_b = [k for k in first if "lora_B" in k]
    assert projector and lora_b
    assert all(not first[k].any() and not second[k].any() for k in lora_b)  # the language model stayed the base
    assert any(not torch.equal(first[k], second[k]) for k in projector)  # each task trained its own projector
    from llava_cit.models.loading import load_model

    base = load_model("tiny-llava").model.state_dict()
    trained = [k for k in projector if not torch.equal(first[k], base[k.replace("base_model.model.", "")])]
    assert trained  # from the base projector, trained on the task
    meta = json.loads((run / "switch" / "stage-01" / "switch.json").read_text())
    assert meta["router"] == "key" and meta["parameter_count"] == 0
    assert results["switch_accuracy"][-1] is not None and results["switch_accuracy"][-1] >= 0.9


def test_rehearsal_replays_the_first_n_retained_examples_of_each_earlier_task(tmp_path):
    from llava_cit.data.example import Example
    from llava_cit.util.errors import UserError

    def examples(task, n):
        return [Example(id=f"{task}-{i}", turns=[(f"q{i}", "a")], task=task) for i in range(n)]

    replay = {"a": examples("a", 5), "b": examples("b", 3)}
    train = {"c": examples("c", 4)}
    method = get_method("rehearsal")

    def ids(settings):
        ctx = StageContext(2, ["a", "b", "c"], "c", tmp_path, replay, lambda: [], None, method.parse_settings(settings))
        return [ex.id for ex in method.training_examples(ctx, train)]

    own = [f"c-{i}" for i in range(4)]
    assert ids({}) == own + [f"a-{i}" for i in range(5)] + ["b-0", "b-1", "b-2"]  # default: the whole buffer
    assert ids({"replay": 2}) == own + ["a-0", "a-1", "b-0", "b-1"]
    assert ids({"replay": 0}) == own
    for bad in ("two", -1, 1.5, True):
        with pytest.raises(UserError, match="method_args.replay"):
            ids({"replay": bad})
    # a bad value stops the run before stage 0 trains
    with pytest.raises(UserError, match=r"method_args.replay = -1: must be >= 0"):
        ContinualRunner(load_config(None, ["method=rehearsal", "method_args.replay=-1"], base=tiny_run_config()),
                        tmp_path / "r")
    assert not (tmp_path / "r" / "adapters").exists()


def test_method_args_are_typed_per_method_and_an_unknown_key_is_named(tmp_path):
    from llava_cit.util.errors import UserError

    ewc = get_method("ewc").parse_settings({"strength": "3e2"})  # YAML 1.1 reads 3e2 as a string: a float here
    assert ewc.strength == 300.0 and get_method("ewc").parse_settings({}).strength == 5000.0
    assert get_method("mas").parse_settings({}).strength == 1.0 and get_method("tir").parse_settings({}).min_scale == 0.0
    assert get_method("ewc").parse_settings({"fisher": True}).fisher is True
    assert get_method("tir").parse_settings({"importance": "mas"}).importance == "mas"
    with pytest.raises(UserError, match=r"^method_args.importance = 'fisher': must be one of ewc, mas$"):
        get_method("tir").parse_settings({"importance": "fisher"})
    with pytest.raises(UserError, match=r"^method_args.strenght: method 'ewc' has no such setting \(its settings: "
                                        r"strength, fisher; llava-cit methods ewc\)$"):
        get_method("ewc").parse_settings({"strenght": 1.0})
    with pytest.raises(UserError, match=r"method_args.strength: method 'seq-lora' has no such setting \(its settings: none"):
        get_method("seq-lora").parse_settings({"strength": 1.0})
    with pytest.raises(UserError, match=r"^method_args.strength = -1.0: must be >= 0$"):
        get_method("si").parse_settings({"strength": -1.0})
    with pytest.raises(UserError, match=r"'method_args.reference_batch' = 'many': expected an integer"):
        get_method("a-gem").parse_settings({"reference_batch": "many"})
    # a run with an unknown key stops before anything is written
    with pytest.raises(UserError, match="method_args.lambda: method 'ewc' has no such setting"):
        ContinualRunner(load_config(None, ["method=ewc", "method_args.lambda=5"], base=tiny_run_config()), tmp_path / "r")
    assert not (tmp_path / "r" / "adapters").exists()


def test_methods_command_prints_a_methods_settings_with_defaults():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "llava_cit.cli", "methods", "tir"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("tir") and "He et al. 2023" in lines[0]
    assert any(line.split()[:3] == ["strength", "float", "1e+08"] for line in lines)
    assert any(line.split()[:3] == ["min_scale", "float", "0"] for line in lines)
    assert any(line.split()[:3] == ["importance", "str", "ewc"] for line in lines)
    done = subprocess.run([sys.executable, "-m", "llava_cit.cli", "methods", "nope"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and done.stderr.startswith("error: unknown method 'nope'")


def test_combined_hooks_run_every_part_and_pass_the_step_to_each():
    from llava_cit.methods.base import TrainingHooks, combine, find_hooks

    class Term(TrainingHooks):
        def __init__(self, value):
            self.value, self.calls = value, []

        def loss(self, model):
            return None if self.value is None else torch.tensor(self.value)

        def before_step(self, model):
            self.calls.append(("before", self.global_step))

    first, second, silent = Term(1.0), Term(2.0), Term(None)
    both = combine(first, None, silent, second)
    assert float(both.loss(None)) == 3.0 and combine(silent).loss(None) is None and combine(None, None) is None
    both.global_step = 7
    both.before_step(None)
    assert first.calls == second.calls == silent.calls == [("before", 7)]
    assert find_hooks(both, Term) is first and find_hooks(None, Term) is None and combine(first) is first


@pytest.mark.parametrize("method", ["ewc", "seq-lora"])
def test_a_methods_extra_loss_counts_once_per_optimizer_step_whatever_the_accumulation(tmp_path, method):
    """The same run as 32 x 1 and 8 x 4 (one global batch, dropout 0) ends with the same adapters: EWC's penalty was
    added undivided to each of the 4 micro-batches (the Trainer does not divide a loss the model normalised)."""
    from llava_cit.train.trainer import LoraTrainer

    assert LoraTrainer._loss_not_divided_by_accumulation  # the Trainer's own test, reproduced
    args = {"strength": 1e5} if method == "ewc" else {}
    adapters = {}
    for batch, accumulation in ((32, 1), (8, 4)):
        config = tiny_run_config(method=method, method_args=args, train_limit=96)
        config["train"].update(batch_size=batch, grad_accum=accumulation, lr=3e-3, warmup_ratio=0.0, save_steps=50)
        config["eval"]["limit"] = 4
        run = tmp_path / f"{batch}x{accumulation}"
        ContinualRunner(load_config(None, base=config), run).run()
        adapters[batch] = load_file(str(next((run / "adapters" / "01-synth-ocr").rglob("adapter_model.safetensors"))))
    first, second = adapters[32], adapters[8]
    assert sorted(first) == sorted(second)
    worst = max(float((first[k] - second[k]).abs().max()) for k in first)
    moved = max(float(v.abs().max()) for v in first.values())
    assert worst <= 1e-4 * max(moved, 1.0), (worst, moved)


def test_demo_method_all_leaves_a_projectors_methods_out_of_text_tracks():
    from llava_cit.continual.demo import all_methods

    vision, none_left_out = all_methods("vision")
    text, left_out = all_methods("smollm2")
    assert {"eproj", "sim-expand"} <= set(vision) and none_left_out == []
    assert sorted(left_out) == ["eproj", "sim-expand"] and not set(left_out) & set(text)
    assert set(text) | set(left_out) == set(vision)
