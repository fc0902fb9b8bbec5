"""The text path end to end: tiny BLOOM, JSONL text tasks, the text template, ROUGE-1 and SARI scoring."""

import json

import yaml
from conftest import tiny_run_config

from llava_cit.collation import IGNORE_INDEX, Encoder
from llava_cit.config import load_config
from llava_cit.continual.runner import ContinualRunner
from llava_cit.data.example import Example
from llava_cit.models.loading import load_model
from llava_cit.prompts import TEXT_PREAMBLE


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
    config = tiny_run_config(model="tiny-bloom", tasks=[colour, simp], lora={"r": 4, "alpha": 8, "dropout": 0.0})
    results = ContinualRunner(load_config(None, base=config), tmp_path / "run").run()
    assert results["tasks"] == ["colour", "simp"]
    assert results["metric"] == {"colour": "rouge1", "simp": "sari (/100)"}
    assert all(0.0 <= v <= 1.0 for v in results["matrix"][1])
    assert results["switch_accuracy"][1] is not None
