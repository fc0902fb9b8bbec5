"""The LLaVA benchmarks are tasks like any task file (reader + prompt + metric + report + budget, found by name), and
one evaluation sample type (Example) goes from reading the file to scoring it."""

import json

import pytest
import yaml
from PIL import Image
from test_benchmarks import EchoServer, stand_in_benchmark

from llava_cit.data.example import Example
from llava_cit.data.prompts import IMAGE_TOKEN
from llava_cit.evaluation import items as items_module
from llava_cit.evaluation.batch import load_external_predictions, run_predictions, score_predictions
from llava_cit.evaluation.items import load_benchmark
from llava_cit.tasks.catalog import TASKS
from llava_cit.tasks.spec import TaskSpec
from llava_cit.util.errors import UserError


def test_the_llava_benchmarks_are_registered_tasks_declaring_reader_prompt_metric_report_and_budget():
    declared = {name: (TASKS.get(name).data_reader, TASKS.get(name).metric, TASKS.get(name).report,
                       TASKS.get(name).max_new_tokens) for name in ("gqa", "ocrbench", "ocrvqa")}
    assert declared == {"gqa": ("gqa", "gqa", "gqa", 16), "ocrbench": ("ocrbench", "ocrbench", "ocrbench", 128),
                        "ocrvqa": ("ocrvqa", "exact_match", "accuracy", 128)}
    assert not hasattr(items_module, "LOADERS")  # no second way to find a benchmark


def test_a_task_file_naming_the_benchmarks_metrics_and_reports_scores_with_them(tmp_path):
    """A researcher's task file on OCRBench-shaped data: the official containment rule and report; the same data
    under GQA's rule and a mean report scores otherwise."""
    data, root = stand_in_benchmark(tmp_path, n=6)  # ids 0..5, gold word<i>; 0 is HME100k (case kept)
    spec = {"name": "my-ocr", "test": {"type": "benchmark", "benchmark": "ocrbench", "path": data, "images": root},
            "metric": "ocrbench", "report": "ocrbench", "max_new_tokens": 8}
    (tmp_path / "my_ocr.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "my_gqa.yaml").write_text(yaml.safe_dump({**spec, "name": "my-gqa", "metric": "gqa", "report": "mean"}))
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("\n".join(json.dumps({"index": i, "prediction": f"It says WORD{i}."}) for i in range(6)))

    ocr = load_benchmark(str(tmp_path / "my_ocr.yaml"), None, None)
    assert ocr.name == "my-ocr" and ocr.max_new_tokens == 8
    scores = score_predictions(ocr, load_external_predictions(predictions, ocr), None)
    assert scores["Final Score"] == {"correct": 5, "total": 6}  # contained, case-insensitive; HME100k keeps case
    assert scores["per_type"]["Scene Text-centric VQA"] == {"correct": 2, "total": 3}

    gqa = load_benchmark(str(tmp_path / "my_gqa.yaml"), None, None)
    scores = score_predictions(gqa, load_external_predictions(predictions, gqa), None)
    assert (scores["metric"], scores["score"]) == ("gqa", 0.0)  # GQA's rule: the whole answer, period stripped
    predictions.write_text("\n".join(json.dumps({"index": i, "prediction": f"Word{i}."}) for i in range(6)))
    assert score_predictions(gqa, load_external_predictions(predictions, gqa), None)["score"] == 1.0


def test_one_sample_type_from_the_file_to_the_model_to_the_score(tmp_path, monkeypatch):
    data, root = stand_in_benchmark(tmp_path, n=4)
    bench = load_benchmark("ocrbench", data, root)
    served, scored = [], []

    class Server(EchoServer):
        def answer(self, examples, *args, **kwargs):
            served.extend(examples)
            return super().answer(examples, *args, **kwargs)

    real = bench.score
    monkeypatch.setattr(bench, "score", lambda predictions, items: scored.extend(items) or real(predictions, items))
    score_predictions(bench, run_predictions(bench, Server(), tmp_path / "out", batch_size=2), None)
    assert {type(x) for x in bench.items + served + scored} == {Example}
    assert [x.id for x in served] == [x.id for x in scored] == ["0", "1", "2", "3"]
    # the model got the very sample read from the file, its image now opened
    assert all(s.turns == i.turns and s.meta == i.meta and s.image is not None for s, i in zip(served, bench.items))


def test_image_token_is_placed_once_by_the_reader(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    conversations = {"front": "<image>\nWho wrote it?", "end": "Who wrote it?\n<image>", "none": "Who wrote it?"}
    records = [{"id": key, "image": "a.png", "conversations": [{"from": "human", "value": value},
                                                              {"from": "gpt", "value": "Austen"}]}
               for key, value in conversations.items()]
    (tmp_path / "t.json").write_text(json.dumps(records))
    bench = load_benchmark("ocrvqa", str(tmp_path / "t.json"), str(tmp_path))
    for example in bench.items:
        assert example.turns[0][0].count(IMAGE_TOKEN) == 1 and example.question == "Who wrote it?"
    assert [ex.turns[0][0] for ex in bench.items] == ["<image>\nWho wrote it?"] * 3  # LLaVA's place for it
    data, root = stand_in_benchmark(tmp_path, n=2)
    assert all(ex.turns[0][0] == "<image>\nwhat is written in the image?"
               for ex in load_benchmark("ocrbench", data, root).items)


def test_a_task_names_a_known_report_and_data_reader():
    assert TaskSpec(name="t", report="ocrbench", data_reader="gqa").validate().data_source("q.json", "img") == \
        {"type": "benchmark", "benchmark": "gqa", "path": "q.json", "images": "img"}
    assert TaskSpec(name="t", kind="text").validate().data_source("t.jsonl", None) == {"type": "jsonl", "path": "t.jsonl"}
    with pytest.raises(UserError, match=r"task 't': unknown report 'table' \(known: accuracy, gqa, mean, ocrbench"):
        TaskSpec(name="t", report="table").validate()
    with pytest.raises(UserError, match=r"task 't': unknown data_reader 'csv' \(known: llava, jsonl, .*ocrbench"):
        TaskSpec(name="t", data_reader="csv").validate()
