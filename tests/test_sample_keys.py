"""Unique sample keys on the real OCRBench file: its `id` repeats across datasets (1,000 records, 857 ids)."""

import json

import pytest
from PIL import Image
from test_benchmarks import OCRBENCH_JSON, needs_ocrbench, stand_in_benchmark

from llava_cit.evaluation.batch import load_external_predictions, score_predictions
from llava_cit.evaluation.items import load_benchmark
from llava_cit.util.errors import UserError


def gold(record):
    return record["answers"] if isinstance(record["answers"], str) else record["answers"][0]


@needs_ocrbench
def test_real_ocrbench_keys_are_unique_and_external_predictions_find_their_sample(tmp_path):
    records = json.loads(OCRBENCH_JSON.read_text())
    assert len({r["id"] for r in records}) == 857  # the trap: ids repeat
    bench = load_benchmark("ocrbench", str(OCRBENCH_JSON), str(tmp_path))
    assert len({item.id for item in bench.items}) == 1000

    # every record answered with its own gold answer: the official score is 1000/1000 ...
    by_index = tmp_path / "by_index.jsonl"
    by_index.write_text("\n".join(json.dumps({"index": i, "prediction": gold(r)}) for i, r in enumerate(records)))
    scores = score_predictions(bench, load_external_predictions(by_index, bench), None)
    assert scores["Final Score"] == {"correct": 1000, "total": 1000}
    assert scores["Scene Text-centric VQA accuracy"] == 1.0 and scores["missing_predictions"] == 0
    # ... keyed by dataset_name + id too (rows in another order)
    by_pair = tmp_path / "by_pair.jsonl"
    by_pair.write_text("\n".join(json.dumps({"dataset_name": r["dataset_name"], "id": r["id"], "answer": gold(r)})
                                 for r in reversed(records)))
    assert score_predictions(bench, load_external_predictions(by_pair, bench), None)["Final Score"]["correct"] == 1000
    # keyed by id alone, a file whose ids repeat cannot be scored honestly: refused, saying why
    by_id = tmp_path / "by_id.jsonl"
    by_id.write_text("\n".join(json.dumps({"id": r["id"], "prediction": gold(r)}) for r in records))
    with pytest.raises(UserError, match=r"keyed by 'id' alone, but ids repeat.*857 distinct of 1000.*'index'"):
        load_external_predictions(by_id, bench)


def test_duplicate_keys_are_refused_naming_file_and_key(tmp_path):
    data, root = stand_in_benchmark(tmp_path, n=4)
    records = json.loads(open(data).read())
    records[3]["id"] = records[2]["id"]
    records[3]["dataset_name"] = records[2]["dataset_name"]
    (tmp_path / "dup.json").write_text(json.dumps(records))
    with pytest.raises(UserError, match=r"dup.json: duplicate \(dataset_name, id\) \('IIIT5K', 2\)"):
        load_benchmark("ocrbench", str(tmp_path / "dup.json"), root)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    conv = [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A"}]
    (tmp_path / "ocrvqa.json").write_text(json.dumps([{"id": "7", "image": "a.png", "conversations": conv}] * 2))
    with pytest.raises(UserError, match=r"ocrvqa.json: duplicate id '7'"):
        load_benchmark("ocrvqa", str(tmp_path / "ocrvqa.json"), str(tmp_path))
    from llava_cit.data.sources import load_source

    with pytest.raises(UserError, match=r"duplicate sample id '7'"):
        load_source({"type": "llava", "path": str(tmp_path / "ocrvqa.json")}, "t", "train")


def test_multi_turn_test_records_score_every_turn(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    conv = [{"from": "human", "value": "<image>\nWho wrote it?"}, {"from": "gpt", "value": "Austen"},
            {"from": "human", "value": "What genre?"}, {"from": "gpt", "value": "Novel"}]
    (tmp_path / "t.json").write_text(json.dumps([{"id": "b1", "image": "a.png", "conversations": conv}]))
    bench = load_benchmark("ocrvqa", str(tmp_path / "t.json"), str(tmp_path))
    assert [i.id for i in bench.items] == ["b1#1", "b1#2"]
    second = bench.items[1]
    assert second.turns == [("<image>\nWho wrote it?", "Austen"), ("What genre?", "Novel")]  # gold history first
    from llava_cit.data.sources import load_source

    tests = load_source({"type": "llava", "path": str(tmp_path / "t.json")}, "t", "test")
    assert [(e.id, len(e.turns), e.answer) for e in tests] == [("b1#1", 1, "Austen"), ("b1#2", 2, "Novel")]
    train = load_source({"type": "llava", "path": str(tmp_path / "t.json")}, "t", "train")
    assert len(train) == 1 and len(train[0].turns) == 2  # training keeps the conversation whole


def test_malformed_json_names_the_file(tmp_path):
    (tmp_path / "broken.json").write_text('{\n  "q1": {bad}\n}')
    with pytest.raises(UserError, match=r"broken.json: line 2: malformed JSON"):
        load_benchmark("gqa", str(tmp_path / "broken.json"), None)
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(UserError, match=r"empty.json"):
        load_benchmark("ocrvqa", str(tmp_path / "empty.json"), None)
