import json
from pathlib import Path

import pytest
from PIL import Image

from benchmarks import gqa, ocrbench
from benchmarks.normalize import gqa as gqa_normalize
from llava_cit.evaluation.batch import read_predictions, run_predictions, score_predictions
from llava_cit.evaluation.items import load_benchmark

SHARED = [Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")]
OCRBENCH_JSON = next((p / "data/ocrbench/OCRBench.json" for p in SHARED if (p / "data/ocrbench/OCRBench.json").is_file()),
                     None)
needs_ocrbench = pytest.mark.skipif(OCRBENCH_JSON is None, reason="../shared/data/ocrbench/OCRBench.json not present")


def test_ocrbench_official_rule():
    assert ocrbench.score("The word is CENTRE.", "centre") == 1  # case-insensitive containment
    assert ocrbench.score("centr", "centre") == 0
    assert ocrbench.score("it says hello world", ["goodbye", "Hello\nWorld"]) == 1  # list answers, newline -> space
    assert ocrbench.score("  Answer:\nfoo bar ", "foo bar") == 1
    assert ocrbench.score("nothing", ["a1", "b2"]) == 0
    # HME100k: no lower-casing, every space removed on both sides
    assert ocrbench.score("y_{2}=-1", ["y _ { 2 } = - 1\n"], "HME100k") == 1
    assert ocrbench.score("Y_{2}=-1", ["y _ { 2 } = - 1\n"], "HME100k") == 0
    # elsewhere: lower-cased, spaces kept
    assert ocrbench.score("Y _ { 2 } = - 1", ["y _ { 2 } = - 1\n"], "other") == 1
    assert ocrbench.score("y_{2}=-1", ["y _ { 2 }"], "other") == 0


def test_gqa_normalisation():
    assert gqa_normalize("Yes.") == "yes" and gqa_normalize(" Left ") == "left"
    assert gqa.score("Yes.", "yes") == 1 and gqa.score("yes, it is", "yes") == 0
    report = gqa.report([{"score": 1, "types": {"structural": "verify", "semantic": "attr"}},
                         {"score": 0, "types": {"structural": "query", "semantic": "attr"}}])
    assert report["accuracy"] == 0.5 and report["by_type"]["semantic"]["attr"]["accuracy"] == 0.5


@needs_ocrbench
def test_real_ocrbench_file_and_category_counts():
    records = ocrbench.load_annotations(OCRBENCH_JSON)
    assert len(records) == 1000
    report = ocrbench.report([{"type": r["type"], "score": 0} for r in records])
    counts = {name: entry["total"] for name, entry in report["per_type"].items()}
    assert [counts[t] for t in ocrbench.RECOGNITION_TYPES] == [50] * 6
    assert [counts[t] for t in ocrbench.OTHER_TYPES] == [200, 200, 200, 100]
    assert report["Text Recognition"]["total"] == 300 and report["Final Score"]["total"] == 1000


class EchoServer:
    """A stand-in model: answers the gold for even ids and 'nope' otherwise; can crash after n batches."""

    def __init__(self, crash_after=None):
        self.calls, self.crash_after, self.answered = 0, crash_after, 0

    def answer(self, examples, max_new_tokens=None, batch_size=16, progress=None, default_budget=128):
        if self.crash_after is not None and self.calls >= self.crash_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        self.answered += len(examples)
        return [(ex.meta["answers"][0] if int(ex.id) % 2 == 0 else "nope", None, None, None) for ex in examples]


def stand_in_benchmark(tmp_path, n=30, corrupt=(), escape=()):
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    records = []
    for i in range(n):
        image_path = f"set/{i}.png"
        (root / "set").mkdir(exist_ok=True)
        if i in corrupt:
            (root / image_path).write_bytes(b"corrupt")
        else:
            Image.new("RGB", (32, 32), "white").save(root / image_path)
        if i in escape:
            image_path = "../../etc/passwd"
        records.append({"dataset_name": "HME100k" if i == 0 else "IIIT5K", "id": i, "image_path": image_path,
                        "question": "what is written in the image?", "answers": f"word{i}",
                        "type": "Regular Text Recognition" if i % 2 else "Scene Text-centric VQA"})
    data = tmp_path / "OCRBench.json"
    data.write_text(json.dumps(records))
    return str(data), str(root)


def test_resume_after_interruption_gives_identical_scores(tmp_path):
    data, root = stand_in_benchmark(tmp_path)
    bench = load_benchmark("ocrbench", data, root)
    full = score_predictions(bench, run_predictions(bench, EchoServer(), tmp_path / "a", batch_size=4), None)
    with pytest.raises(RuntimeError):
        run_predictions(bench, EchoServer(crash_after=3), tmp_path / "b", batch_size=4, window=1)
    with open(tmp_path / "b/predictions.jsonl", "a") as handle:
        handle.write('{"key": "torn')  # a line cut by the crash
    assert len(read_predictions(tmp_path / "b/predictions.jsonl")) == 12
    server = EchoServer()
    resumed = score_predictions(bench, run_predictions(bench, server, tmp_path / "b", batch_size=4, window=1), None)
    assert server.calls == 5 and server.answered == 18  # only the 18 remaining samples were generated
    lines = (tmp_path / "b/predictions.jsonl").read_text().splitlines()
    assert len(lines) == 30 and all(json.loads(line) for line in lines)  # the torn line was healed away, not left mid-file
    assert resumed == full
    assert full["Final Score"] == {"correct": 15, "total": 30}


def test_corrupt_image_and_traversal_are_counted_not_fatal(tmp_path):
    data, root = stand_in_benchmark(tmp_path, n=10, corrupt=(2,), escape=(4,))
    bench = load_benchmark("ocrbench", data, root)
    rows = run_predictions(bench, EchoServer(), tmp_path / "out", batch_size=4)
    scores = score_predictions(bench, rows, tmp_path / "out")
    bad = {b["key"]: b["error"] for b in scores["bad_samples"]}
    assert set(bad) == {"2", "4"} and "unreadable image" in bad["2"] and "escapes the images root" in bad["4"]
    assert scores["Final Score"] == {"correct": 3, "total": 10}  # ids 0, 6, 8 right; 2 and 4 scored as wrong
    skipped = score_predictions(bench, rows, None, skip_bad=True)
    assert skipped["Final Score"] == {"correct": 3, "total": 8} and skipped["bad_policy"].startswith("excluded")
    assert json.loads((tmp_path / "out/scores.json").read_text())["bad_policy"] == "scored as wrong"


def test_gqa_and_ocrvqa_local_files_end_to_end(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    questions = {}
    records = []
    for i in range(4):
        Image.new("RGB", (16, 16)).save(images / f"img{i}.jpg")
        questions[str(i)] = {"imageId": f"img{i}", "question": "Is it dark?", "answer": "yes",
                             "types": {"structural": "verify", "semantic": "attr"}, "isBalanced": True}
        records.append({"id": str(i), "image": f"img{i}.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWho wrote this book?"}, {"from": "gpt", "value": "Jane Austen"}]})
    questions["9"] = {"imageId": "img0", "question": "unbalanced", "answer": "no", "isBalanced": False}
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "ocrvqa.json").write_text(json.dumps(records))

    bench = load_benchmark("gqa", str(tmp_path / "q.json"), str(images))
    assert len(bench.items) == 4 and bench.items[0].question.endswith(gqa.PROMPT_SUFFIX)
    scores = score_predictions(bench, run_predictions(bench, EchoServer(), tmp_path / "g", batch_size=3), None)
    assert scores["accuracy"] == 0.5 and scores["by_type"]["structural"]["verify"]["total"] == 4

    bench = load_benchmark("ocrvqa", str(tmp_path / "ocrvqa.json"), str(images))
    scores = score_predictions(bench, run_predictions(bench, EchoServer(), tmp_path / "o", batch_size=3), None)
    assert scores["accuracy"] == 0.5 and scores["total"] == 4
