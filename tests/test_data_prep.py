"""`llava-cit data ...`: files shaped exactly like the originals, a local HTTP server for the image download."""

from __future__ import annotations

import http.server
import io
import json
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from llava_cit.cli import app
from llava_cit.data_prep.json_stream import iter_json_array
from llava_cit.data_prep.ocrvqa import evaluation_records, read_dataset
from llava_cit.data_prep.ocrvqa_images import download_images
from llava_cit.data_prep.split_mix import split_mix
from llava_cit.util.errors import UserError

SHARED = [Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")]
OCRBENCH_JSON = next((p / "data/ocrbench/OCRBench.json" for p in SHARED if (p / "data/ocrbench/OCRBench.json").is_file()),
                     None)


def mix_record(i: int) -> dict:
    """Records as in llava_v1_5_mix665k.json: image paths prefixed by their source, some text-only."""
    kind = ["gqa", "ocr_vqa", "coco", "textvqa", "vg", None][i % 6]
    turns = [{"from": "human", "value": f"<image>\nWhat is item {i}?"}, {"from": "gpt", "value": f"thing {i}"},
             {"from": "human", "value": "And its colour?"}, {"from": "gpt", "value": "red"}]
    record = {"id": f"{i:09d}", "conversations": turns}
    if kind is not None:
        folder = {"gqa": "gqa/images", "ocr_vqa": "ocr_vqa/images", "coco": "coco/train2017", "textvqa":
                  "textvqa/train_images", "vg": "vg/VG_100K"}[kind]
        record["image"] = f"{folder}/{i}.jpg"
    else:
        turns[0]["value"] = f"Tell me about item {i}."
    return record


def test_split_mix_copies_records_unchanged_per_source(tmp_path):
    records = [mix_record(i) for i in range(60)]
    mix = tmp_path / "llava_v1_5_mix665k.json"
    mix.write_text(json.dumps(records, indent=2))
    counts = split_mix(mix, tmp_path / "out")
    assert counts == {"coco": 10, "gqa": 10, "ocr_vqa": 10, "text": 10, "textvqa": 10, "vg": 10}
    gqa = json.loads((tmp_path / "out" / "gqa.json").read_text())
    assert gqa == [r for r in records if r.get("image", "").startswith("gqa/")]  # unchanged, multi-turn kept
    assert len(gqa[0]["conversations"]) == 4
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_split_mix_streams_in_bounded_memory(tmp_path):
    mix = tmp_path / "mix.json"
    with open(mix, "w") as handle:
        handle.write("[")
        for i in range(30000):
            handle.write(("," if i else "") + json.dumps(mix_record(i)))
        handle.write("]")
    size = mix.stat().st_size
    tracemalloc.start()
    counts = split_mix(mix, tmp_path / "out", chunk_size=1 << 16)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sum(counts.values()) == 30000
    assert size > 7_000_000 and peak < size / 10  # memory holds a chunk and a record, not the file


def test_json_array_reader_handles_records_across_chunk_boundaries(tmp_path):
    records = [mix_record(i) for i in range(200)]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1))
    for chunk in (5, 97, 4096):
        assert list(iter_json_array(path, chunk)) == records


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a JSON array"),
    ('[{"id": "1", "conversations": [{"from": "human", "value": "x"}]}, {"id": "2"}]', "record 1 (id 2): no 'conversations'"),
    ('[{"id": "7", "image": "../../etc/passwd", "conversations": [{"from": "human", "value": "x"}]}]',
     "record 0 (id 7): field 'image' = '../../etc/passwd' escapes"),
    ('[{"id": "1", "conversations": [{"from": "human", "value": "x"}]}', "not closed"),
])
def test_split_mix_refuses_bad_input_naming_file_and_record(tmp_path, content, message):
    mix = tmp_path / "bad.json"
    mix.write_text(content)
    with pytest.raises(UserError) as err:
        split_mix(mix, tmp_path / "out")
    assert message in str(err.value) and str(mix) in str(err.value) and "\n" not in str(err.value)


def ocrvqa_dataset(urls: dict[str, str]) -> dict:
    """OCR-VQA's dataset.json: image id -> imageURL, questions, answers, title, authorName, genre, split."""
    data = {}
    for k, (image_id, url) in enumerate(urls.items()):
        data[image_id] = {"imageURL": url, "questions": ["Who wrote this book?", "What is the title of this book?"],
                          "answers": [f"Author {k}", f"Title {k}"], "title": f"Title {k}", "authorName": f"Author {k}",
                          "genre": "Fiction", "split": [1, 2, 3][k % 3]}
    return data


def test_ocrvqa_test_split_as_evaluation_records(tmp_path):
    data = ocrvqa_dataset({f"{100 + k}": f"http://x/{k}.jpg" for k in range(6)})
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["data", "ocrvqa-test", str(path), "--out", str(tmp_path / "test.json")])
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "test.json").read_text())
    assert records == evaluation_records(read_dataset(path)) and len(records) == 4  # 2 test images x 2 questions
    assert records[0]["image"] == "ocr_vqa/images/102.jpg" and records[0]["conversations"][1]["value"] == "Author 2"
    # the built-in ocrvqa task reads them under the data root
    import os

    from llava_cit.data.sources import load_source
    from llava_cit.tasks.registry import resolve_task

    root = tmp_path / "root"
    (root / "llava_cit").mkdir(parents=True)
    (root / "llava_cit" / "ocr_vqa_test.json").write_text((tmp_path / "test.json").read_text())
    os.environ["LLAVA_CIT_DATA"] = str(root)
    try:
        examples = load_source(resolve_task("ocrvqa").test, "ocrvqa", "test", keep_bad=True)
    finally:
        del os.environ["LLAVA_CIT_DATA"]
    assert len(examples) == 4 and examples[0].image_path == root / "ocr_vqa" / "images" / "102.jpg"
    assert examples[0].turns[0] == ("<image>\nWho wrote this book?", "Author 2")


@pytest.mark.parametrize("record, message", [
    ({"questions": [], "answers": [], "split": 1}, "record '5': no 'imageURL' field"),
    ({"imageURL": "http://x", "questions": ["q"], "answers": [], "split": 1}, "1 questions but 0 answers"),
])
def test_ocrvqa_dataset_errors_name_the_file_and_record(tmp_path, record, message):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"5": record}))
    with pytest.raises(UserError, match=message):
        read_dataset(path)
    path.write_text("[not json")
    with pytest.raises(UserError, match="not JSON"):
        read_dataset(path)


def _image_bytes(fmt: str, colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, format=fmt)
    return out.getvalue()


class Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        jpeg = _image_bytes("JPEG")
        routes = {"/a.jpg": ("image/jpeg", jpeg), "/b.jpg": ("image/jpeg", _image_bytes("JPEG", (0, 90, 0))),
                  "/anim.gif": ("image/gif", _image_bytes("GIF")), "/pic.png": ("image/png", _image_bytes("PNG")),
                  "/error.html": ("text/html", b"<html><body>Service unavailable</body></html>")}
        if self.path == "/missing.jpg":
            self.send_error(404)
            return
        if self.path == "/slow.jpg":
            time.sleep(1.0)
        if self.path == "/truncated.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(jpeg)))
            self.end_headers()
            self.wfile.write(jpeg[: len(jpeg) // 2])  # then the connection closes: an incomplete body
            self.close_connection = True
            return
        kind, body = routes.get(self.path, ("image/jpeg", jpeg))
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that gave up (the timeout case) breaks the pipe: expected


@pytest.fixture()
def server():
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_ocrvqa_images_download_verify_convert_resume_and_report(tmp_path, server):
    names = ["a.jpg", "b.jpg", "anim.gif", "pic.png", "missing.jpg", "truncated.jpg", "error.html", "slow.jpg"]
    data = ocrvqa_dataset({f"{1000 + k}": f"{server}/{name}" for k, name in enumerate(names)})
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps(data))
    out = tmp_path / "ocr_vqa" / "images"
    Handler.hits = {}
    args = ["data", "ocrvqa-images", str(dataset), "--out", str(out), "--workers", "4", "--retries", "1",
            "--timeout", "0.3", "--backoff", "0.01"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "downloaded 4, already present 0, failed 4" in result.output
    for image_id in ("1000", "1001", "1002", "1003"):  # the GIF and the PNG were converted
        with Image.open(out / f"{image_id}.jpg") as image:
            assert image.format == "JPEG" and image.size == (40, 30)
    failed = {row["id"]: row["reason"] for row in map(json.loads, (tmp_path / "ocr_vqa" / "images.failed.jsonl")
                                                      .read_text().splitlines())}
    assert set(failed) == {"1004", "1005", "1006", "1007"}
    assert failed["1004"] == "HTTP 404" and Handler.hits["/missing.jpg"] == 1  # a 404 is not retried
    assert "HTML" in failed["1006"] and Handler.hits["/error.html"] == 2  # other failures are retried
    assert "timed out" in failed["1007"]
    assert Handler.hits["/truncated.jpg"] == 2  # an incomplete body is retried, then listed
    assert not list(out.glob(".*"))  # nothing half-written left behind
    # a rerun fetches only what is missing; an unreadable file counts as missing
    (out / "1000.jpg").write_bytes(b"garbage")
    Handler.hits = {}
    result = CliRunner().invoke(app, args)
    assert "downloaded 1, already present 3, failed 4" in result.output
    assert "/b.jpg" not in Handler.hits and Handler.hits["/a.jpg"] == 1


def test_ocrvqa_images_never_stop_on_a_dead_host(tmp_path):
    data = ocrvqa_dataset({"1": "http://127.0.0.1:9/none.jpg"})  # the discard port: connection refused
    report = download_images(data, tmp_path / "images", workers=1, retries=1, timeout=0.5, backoff=0.0)
    assert report.downloaded == 0 and list(report.failed) == ["1"]


@pytest.mark.skipif(OCRBENCH_JSON is None, reason="../shared/data/ocrbench/OCRBench.json not present")
def test_ocrbench_export_writes_the_official_layout(tmp_path):
    """A local copy in the Hugging Face layout of echo840/OCRBench (columns dataset, question, question_type,
    answer, image; data/test-*.parquet), built from the real OCRBench.json's first records."""
    import datasets

    official = json.loads(OCRBENCH_JSON.read_text())[:12]
    answers = [r["answers"] if isinstance(r["answers"], list) else [r["answers"]] for r in official]
    features = datasets.Features({"dataset": datasets.Value("string"), "question": datasets.Value("string"),
                                  "question_type": datasets.Value("string"),
                                  "answer": datasets.Sequence(datasets.Value("string")), "image": datasets.Image()})
    copy = datasets.Dataset.from_dict({
        "dataset": [r["dataset_name"] for r in official], "question": [r["question"] for r in official],
        "question_type": [r["type"] for r in official], "answer": answers,
        "image": [Image.new("RGB", (20, 10), (k, 0, 0)) for k in range(len(official))]}, features=features)
    (tmp_path / "hf" / "data").mkdir(parents=True)
    copy.to_parquet(str(tmp_path / "hf" / "data" / "test-00000-of-00001.parquet"))
    result = CliRunner().invoke(app, ["data", "ocrbench", "--source", str(tmp_path / "hf"), "--out",
                                      str(tmp_path / "OCRBench")])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "OCRBench" / "OCRBench.json").read_text())
    assert [list(r) for r in written] == [list(r) for r in official]  # the official fields, in order
    for ours, theirs in zip(written, official):
        assert (ours["dataset_name"], ours["question"], ours["type"], ours["answers"]) == \
            (theirs["dataset_name"], theirs["question"], theirs["type"], theirs["answers"])
        assert (tmp_path / "OCRBench" / "OCRBench_Images" / ours["image_path"]).is_file()
    # and `llava-cit eval` reads it, keyed like the official file (by position)
    from llava_cit.evaluation.items import load_benchmark

    ours = load_benchmark("ocrbench", str(tmp_path / "OCRBench" / "OCRBench.json"),
                          str(tmp_path / "OCRBench" / "OCRBench_Images"))
    theirs = load_benchmark("ocrbench", str(OCRBENCH_JSON), None)
    assert [i.id for i in ours.items] == [i.id for i in theirs.items[: len(official)]]


@pytest.mark.skipif(OCRBENCH_JSON is None, reason="../shared/data/ocrbench/OCRBench.json not present")
def test_the_paper_ocr_task_is_scored_on_ocrbench_scene_text_vqa(tmp_path, monkeypatch):
    """ocrvqa-ocrbench: trained on OCR-VQA, its test set is OCRBench's Scene Text-centric VQA slice (200
    questions, keyed by position in the official file), scored with OCRBench's containment rule."""
    import shutil

    from llava_cit.data.sources import load_source
    from llava_cit.evaluation.scoring import score_samples
    from llava_cit.tasks.registry import resolve_task

    (tmp_path / "OCRBench").mkdir()
    shutil.copy(OCRBENCH_JSON, tmp_path / "OCRBench" / "OCRBench.json")
    monkeypatch.setenv("LLAVA_CIT_DATA", str(tmp_path))
    task = resolve_task("ocrvqa-ocrbench")
    examples = load_source(task.test, task.name, "test", keep_bad=True, suffix=task.suffix)
    official = json.loads(OCRBENCH_JSON.read_text())
    assert len(examples) == 200
    assert all(official[int(ex.id)]["type"] == "Scene Text-centric VQA" for ex in examples)
    first = official[int(examples[0].id)]
    assert examples[0].image_path == tmp_path / "OCRBench" / "OCRBench_Images" / first["image_path"]
    answer = first["answers"][0] if isinstance(first["answers"], list) else first["answers"]
    scores = score_samples(task, [f"I think it is {answer.upper()}.", "zzzzqqq"], examples[:2])
    assert scores[0]["score"] == 1.0 and scores[1]["score"] == 0.0
