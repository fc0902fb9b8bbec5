"""The text path end to end: tiny BLOOM, JSONL text tasks, the text template, ROUGE-1 and SARI scoring."""

import json

import pytest
import yaml
from conftest import tiny_run_config

from llava_cit.config import load_config
from llava_cit.continual.runner import ContinualRunner
from llava_cit.data.collation import IGNORE_INDEX, Encoder
from llava_cit.data.example import Example
from llava_cit.data.prompts import TEXT_PREAMBLE
from llava_cit.models.loading import load_model
from llava_cit.util.errors import UserError

# the text preamble is long: 128 tokens keep the answers; no warm-up, so the first step already learns
TEXT_TRAIN = {"epochs": 1, "lr": 1e-3, "batch_size": 8, "max_length": 128, "save_steps": 2, "warmup_ratio": 0.0}


def write_task(tmp_path, name, instruction, pairs, metric):
    rows = [{"instruction": instruction, "input": source, "output": target} for source, target in pairs]
    (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({
        "name": name, "kind": "text", "metric": metric, "max_new_tokens": 4,
        "train": {"type": "jsonl", "path": f"{name}.jsonl"}, "test": {"type": "jsonl", "path": f"{name}.jsonl"}}))
    return str(tmp_path / f"{name}.yaml")


def test_text_template_and_masking():
    loaded = load_model("tiny-bloom")
    item = Encoder(loaded).encode_train(Example(id="x", turns=[("Name the colour.", "red")], input="the red shape"))
    tok = loaded.tokenizer
    assert [tok.convert_ids_to_tokens(i) for i, lab in zip(item["input_ids"], item["labels"])
            if lab != IGNORE_INDEX] == ["red", "</s>"]
    prompt = tok.decode(Encoder(loaded).encode_prompt(Example(id="x", turns=[("Name the colour.", "red")],
                                                                input="the red shape")))
    assert prompt.startswith(TEXT_PREAMBLE.split(",")[0].lower()) and "input" in prompt and prompt.endswith(":")


def test_text_tasks_through_the_runner(tmp_path):
    words = ["red", "blue", "green", "yellow"]
    colour = write_task(tmp_path, "colour", "What color is the shape on the left?",
                        [(f"the {w} circle left", w) for w in words] * 6, "rouge1")
    simp = write_task(tmp_path, "simp", "Describe the image briefly.",
                      [(f"the big {w} square", f"{w} square") for w in words] * 6, "sari")
    config = tiny_run_config(model="tiny-bloom", tasks=[colour, simp], lora={"r": 4, "alpha": 8, "dropout": 0.0},
                             train=TEXT_TRAIN)
    results = ContinualRunner(load_config(None, base=config), tmp_path / "run").run()
    assert results["tasks"] == ["colour", "simp"]
    assert results["metric"] == {"colour": "rouge1", "simp": "sari (/100)"}
    assert all(0.0 <= v <= 1.0 for v in results["matrix"][1])
    assert results["switch_accuracy"][1] is not None
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert all(stage["train"]["train_loss"] > 0 for stage in manifest["stages"])  # answers were not truncated away


def test_training_refuses_when_truncation_cuts_every_answer(tmp_path):
    colour = write_task(tmp_path, "colour", "What color is the shape on the left?", [("the red circle", "red")] * 4,
                        "rouge1")
    config = tiny_run_config(model="tiny-bloom", tasks=[colour], train=dict(TEXT_TRAIN, max_length=20))
    with pytest.raises(UserError, match="train.max_length=20 cuts off the answer of every training example"):
        ContinualRunner(load_config(None, base=config), tmp_path / "run").run()


def test_full_sft_trains_every_weight_saves_whole_models_and_resumes(tmp_path):
    import torch
    from safetensors.torch import load_file

    from llava_cit.serve.run_server import RunServer

    colour = write_task(tmp_path, "colour", "What color is the shape on the left?",
                        [(f"the {w} circle left", w) for w in ("red", "blue")] * 8, "rouge1")
    shape = write_task(tmp_path, "shape", "What shape is on the left?",
                       [(f"the red {s} left", s) for s in ("circle", "square")] * 8, "rouge1")
    config = tiny_run_config("full-sft", tasks=[colour, shape], model="tiny-bloom", train=TEXT_TRAIN)
    run_dir = tmp_path / "run"
    results = ContinualRunner(load_config(None, base=config), run_dir).run()
    assert results["adapters"] == {"colour": "models/00-colour", "shape": "models/01-shape"}
    assert not (run_dir / "adapters").exists()
    assert results["base_model"]["colour"] is not None and results["base_model"]["shape"] is None
    base = load_model("tiny-bloom").model.state_dict()
    stage0, stage1 = (load_file(run_dir / rel / "model.safetensors") for rel in results["adapters"].values())
    changed = [k for k in stage0 if k in base and not torch.equal(stage0[k], base[k])]
    assert len(changed) > len(stage0) // 2  # not a LoRA: most of the model's own weights moved
    assert any(not torch.equal(stage0[k], stage1[k]) for k in stage0)  # stage 1 continued from stage 0

    saved = {p: p.stat().st_mtime_ns for p in run_dir.rglob("model.safetensors")}
    again = ContinualRunner(load_config(None, base=config), run_dir).run()  # resume: nothing retrained
    assert again["matrix"] == results["matrix"]
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("model.safetensors")} == saved

    server = RunServer(run_dir)
    answers = server.answer([Example(id="q", turns=[("What shape is on the left?", "")], input="the red square left")],
                            max_new_tokens=3)
    assert server.fixed == "shape" and isinstance(answers[0][0], str)
