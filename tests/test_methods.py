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


def _context(tmp_path, loaded, retained, adapter="a"):
    from llava_cit.collation import Encoder

    return StageContext(0, ["synth-shapes", "synth-ocr"], adapter, tmp_path / "method_state", {}, lambda: retained,
                        Encoder(loaded))


@pytest.mark.parametrize("name", ["ewc", "mas"])
def test_importance_is_non_negative_and_computed_from_the_retained_examples_only(tmp_path, monkeypatch, name):
    import llava_cit.methods.regularization as regularization
    from llava_cit.models.loading import load_model
    from llava_cit.training import add_adapter

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

    monkeypatch.setattr(regularization, "batches", spy)
    ctx = _context(tmp_path, loaded, retained)
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
    config = tiny_run_config(method=method, method_args={"strength": 100.0})
    results = ContinualRunner(load_config(None, base=config), tmp_path / "r").run()
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
    assert results["serving"]["routes"] is False
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["stages"][1]["train"]["examples"] > 48  # its own data plus the replayed examples
    from llava_cit.serving import RunServer

    assert RunServer(tmp_path / "r").fixed == "synth-ocr"  # served without finding the method file again
