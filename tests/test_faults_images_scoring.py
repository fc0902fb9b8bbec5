"""A fault corpus for images and external scoring (issue 27, points 3 and 4): each fault kept as a tiny fixture,
so a later change cannot bring one back.

Images: a decompression bomb (a 30000x30000 one-colour PNG, ~100 KB on disk), an image over Pillow's warning
limit, a non-image (a passwd-like text file) and an image root holding system files. Scoring: a torn line, a
non-UTF-8 line, a non-integer index, an unknown sample, a non-string answer, and samples without a prediction.
"""

import json
from types import SimpleNamespace

import pytest
from PIL import Image
from test_benchmarks import OCRBENCH_JSON, EchoServer, needs_ocrbench, stand_in_benchmark
from test_cli import cli

from benchmarks import ocrbench
from llava_cit.continual.data_validation import validate_data
from llava_cit.data.images import BadImage, check_image_header, open_image
from llava_cit.data.sources import load_source
from llava_cit.evaluation.batch import load_external_predictions, run_predictions, score_predictions
from llava_cit.evaluation.items import load_benchmark
from llava_cit.tasks.spec import TaskSpec
from llava_cit.util.errors import UserError

PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


@pytest.fixture(scope="module")
def faulty_images(tmp_path_factory):
    """A bomb (over twice Pillow's pixel limit: its error), an image over the limit (its warning) and a non-image."""
    folder = tmp_path_factory.mktemp("faulty")
    Image.new("1", (30000, 30000)).save(folder / "bomb.png")  # 900 megapixels, one colour: tiny once compressed
    Image.new("1", (10000, 10000)).save(folder / "large.png")  # 100 megapixels: between the warning and the error
    (folder / "passwd.png").write_text(PASSWD)
    return folder


def test_every_image_fault_is_a_bad_image_and_the_pixel_limit_is_kept(faulty_images):
    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    for name in ("bomb.png", "large.png"):
        for read in (open_image, check_image_header):
            with pytest.raises(BadImage, match=rf"{name} \(decompression bomb: more than {limit} pixels\)"):
                read(faulty_images / name)
    for read in (open_image, check_image_header):
        with pytest.raises(BadImage, match=r"passwd.png \(UnidentifiedImageError\)"):
            read(faulty_images / "passwd.png")
    assert Image.MAX_IMAGE_PIXELS == limit  # the guard is kept, never switched off


def test_bombs_and_non_images_are_counted_bad_samples_in_evaluation(tmp_path, faulty_images):
    data, root = stand_in_benchmark(tmp_path, n=8)
    for index, name in ((3, "bomb.png"), (5, "large.png"), (6, "passwd.png")):
        (tmp_path / "images" / f"set/{index}.png").write_bytes((faulty_images / name).read_bytes())
    bench = load_benchmark("ocrbench", data, root)
    rows = run_predictions(bench, EchoServer(), tmp_path / "out", batch_size=4)
    scores = score_predictions(bench, rows, tmp_path / "out")
    bad = {b["key"]: b["error"] for b in scores["bad_samples"]}
    assert set(bad) == {"3", "5", "6"}
    assert "decompression bomb" in bad["3"] and "decompression bomb" in bad["5"] and "UnidentifiedImageError" in bad["6"]
    assert scores["Final Score"] == {"correct": 3, "total": 8}  # keys 0, 2 and 4 right; the three bad ones scored wrong


def test_downloaded_bombs_are_refused_not_fatal(faulty_images):
    from llava_cit.data_prep.ocrvqa_images import as_jpeg, image_ok

    assert not image_ok(faulty_images / "bomb.png") and not image_ok(faulty_images / "passwd.png")
    with pytest.raises(ValueError, match="not an image"):
        as_jpeg((faulty_images / "bomb.png").read_bytes())


def llava_records(folder, count):
    Image.new("RGB", (16, 16), "white").save(folder / "ok.png")
    conversation = [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "white"}]
    return [{"id": str(i), "image": "ok.png", "conversations": conversation} for i in range(count)]


def test_training_data_check_reads_every_image_header(tmp_path, faulty_images):
    images = tmp_path / "images"
    images.mkdir()
    records = llava_records(images, 20)
    for index, name in ((13, "bomb.png"), (17, "passwd.png")):  # where a spot check of 8 in 20 never looked
        (images / name).write_bytes((faulty_images / name).read_bytes())
        records[index]["image"] = name
    (tmp_path / "train.json").write_text(json.dumps(records))
    source = {"type": "llava", "path": str(tmp_path / "train.json"), "image_folder": str(images)}
    task = TaskSpec("faulty", train=source, test=source)
    config = SimpleNamespace(train_limit=None, eval=SimpleNamespace(limit=None), seed=0)
    with pytest.raises(UserError) as err:
        validate_data([task], config)
    message = str(err.value)
    assert message.startswith("4 data problem(s) found before training")  # two images, in train and in test
    assert "sample '13': unreadable image:" in message and "bomb.png (decompression bomb" in message
    assert "sample '17': unreadable image:" in message and "passwd.png (UnidentifiedImageError)" in message


def test_an_image_root_holding_system_files_is_refused(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    records = llava_records(tmp_path, 3)
    records[2]["image"] = "etc/passwd"
    (tmp_path / "train.json").write_text(json.dumps(records))
    for folder, kind in (("/", "the filesystem root"), ("/etc", "a system folder"), ("/usr", "a system folder"),
                         ("/usr/bin", "a system folder"), (str(home), "the home folder")):
        source = {"type": "llava", "path": str(tmp_path / "train.json"), "image_folder": folder}
        for keep_bad in (False, True):  # in evaluation too: the whole source is refused, not one sample
            with pytest.raises(UserError, match=rf"train.json: the image folder '{folder}' is {kind}"):
                load_source(source, "t", "train", keep_bad=keep_bad)
    data, _ = stand_in_benchmark(tmp_path, n=2)
    with pytest.raises(UserError, match="the images root '/' is the filesystem root"):
        load_benchmark("ocrbench", data, "/")
    ordinary = tmp_path / "data"  # (not tmp_path: it holds the home folder of this test)
    ordinary.mkdir()
    assert len(load_source({"type": "llava", "path": str(tmp_path / "train.json"), "image_folder": str(ordinary)},
                           "t", "train")) == 3  # an ordinary folder is accepted


def test_image_root_refusal_is_one_line_from_the_cli(tmp_path):
    data, _ = stand_in_benchmark(tmp_path, n=2)
    (tmp_path / "p.jsonl").write_text('{"index": 0, "prediction": "x"}\n')
    result = cli("eval", "--benchmark", "ocrbench", "--data", data, "--images", "/", "--predictions",
                 str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "s"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: the images root '/' is the filesystem root")


def write_lines(path, lines):
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


def answer(i):
    return json.dumps({"index": i, "prediction": f"it says word{i}"})


@pytest.mark.parametrize(("line", "reason"), [
    ('{"index": 5, "predic', r"line 5: malformed JSON"),  # torn
    (b'{"index": 5, "prediction": "word5 \xff"}', r"line 5: not UTF-8 text"),
    ('[5, "word5"]', r"line 5: a row must be a JSON object, not list"),
    ('{"index": "five", "prediction": "word5"}', r"line 5: field 'index' is \"five\", not an integer"),
    ('{"index": 5.5, "prediction": "word5"}', r"line 5: field 'index' is 5.5, not an integer"),
    ('{"index": 60, "prediction": "word5"}', r"line 5: \{\"index\": 60\} names no sample of"),
    ('{"prediction": "word5"}', r"line 5: no field names its sample"),
    ('{"index": 5}', r"line 5: no answer field"),
    ('{"index": 5, "prediction": ["x", "word5"]}', r"line 5: field 'prediction' is a list, not a string"),
])
def test_a_malformed_prediction_line_is_an_error_naming_it(tmp_path, line, reason):
    data, root = stand_in_benchmark(tmp_path, n=6)
    bench = load_benchmark("ocrbench", data, root)
    path = write_lines(tmp_path / "p.jsonl", [answer(i) for i in range(1, 5)] + [line])
    with pytest.raises(UserError, match=rf"p.jsonl: {reason}.*--skip-bad lists and counts such lines instead"):
        load_external_predictions(path, bench)
    bad_lines = []  # --skip-bad: listed and counted, the sample left without a prediction (wrong)
    rows = load_external_predictions(path, bench, bad_lines)
    assert [b["line"] for b in bad_lines] == [5] and set(rows) == {"1", "2", "3", "4"}
    assert score_predictions(bench, rows, None, bad_lines=bad_lines)["Final Score"] == {"correct": 4, "total": 6}


def test_a_sample_without_a_prediction_is_wrong_in_every_denominator(tmp_path):
    data, root = stand_in_benchmark(tmp_path, n=6)  # keys 0, 2, 4 scene-text VQA; 1, 3, 5 recognition; 0 is HME100k
    bench = load_benchmark("ocrbench", data, root)
    path = write_lines(tmp_path / "p.jsonl", [answer(i) for i in range(1, 5)] +
                       ['{"index": "5", "prediction": null}'])  # an index as a string of digits; null: no prediction
    scores = score_predictions(bench, load_external_predictions(path, bench), None, skip_bad=True)
    assert scores["Final Score"] == {"correct": 4, "total": 6} and scores["missing_predictions"] == 2
    assert scores["Scene Text-centric VQA accuracy"] == 2 / 3  # not 2 of 2
    assert scores["Text Recognition"] == {"correct": 2, "total": 3}
    assert scores["per_dataset"] == {"HME100k": {"correct": 0, "total": 1, "accuracy": 0.0},
                                     "IIIT5K": {"correct": 4, "total": 5, "accuracy": 0.8}}

    questions = {str(i): {"imageId": "a", "question": "Is it dark?", "answer": "yes",
                          "types": {"structural": "verify", "semantic": "attr"}} for i in range(4)}
    (tmp_path / "q.json").write_text(json.dumps(questions))
    gqa = load_benchmark("gqa", str(tmp_path / "q.json"), str(tmp_path))
    path = write_lines(tmp_path / "g.jsonl", ['{"key": "0", "prediction": "yes"}'])
    scores = score_predictions(gqa, load_external_predictions(path, gqa), None)
    assert (scores["correct"], scores["total"], scores["accuracy"]) == (1, 4, 0.25)
    assert scores["by_type"]["structural"]["verify"] == {"accuracy": 0.25, "total": 4}

    from llava_cit.data import synthetic

    tests = synthetic.generate("synth-hgen", 6, split="test")
    task = load_benchmark("synth-hgen", None, None)
    path = write_lines(tmp_path / "t.jsonl", [json.dumps({"id": ex.id, "prediction": ex.answer}) for ex in tests[:3]])
    scores = score_predictions(task, load_external_predictions(path, task), None, limit=6)
    assert scores["score"] == 0.5 and scores["constraint_rate"] == 0.5  # three of six, in both denominators


def test_malformed_lines_from_the_cli_one_line_or_listed_with_skip_bad(tmp_path):
    data, root = stand_in_benchmark(tmp_path, n=6)
    path = write_lines(tmp_path / "p.jsonl", [answer(i) for i in range(1, 4)] +
                       ['{"index": "five", "prediction": "word5"}', '{"index": 4, "prediction": "it sa'])
    args = ["eval", "--benchmark", "ocrbench", "--data", data, "--predictions", str(path), "--out", str(tmp_path / "s")]
    result = cli(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: {path}: line 4: field 'index' is \"five\", not an integer "
                                     f"(--skip-bad lists and counts such lines instead)")
    result = cli(*args, "--skip-bad")
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "s/scores.json").read_text())
    assert [b["line"] for b in scores["bad_lines"]] == [4, 5] and scores["missing_predictions"] == 3
    assert scores["Final Score"] == {"correct": 3, "total": 6}
    assert "2 malformed prediction lines skipped" in result.stdout and "3 samples have no prediction" in result.stdout


def test_ocrbench_blank_gold_answer_matches_nothing():
    assert ocrbench.score("anything at all", [""]) == 0 and ocrbench.score("anything", ["  \n"], "HME100k") == 0
    assert ocrbench.score("it says foo", ["", "foo"]) == 1


@needs_ocrbench
def test_real_ocrbench_totals_are_the_files_whatever_is_answered(tmp_path):
    """The official script's totals are fixed by the file (50 per recognition type, 200, 200, 200, 100, 1000):
    an unanswered sample is wrong, never left out."""
    records = json.loads(OCRBENCH_JSON.read_text())
    bench = load_benchmark("ocrbench", str(OCRBENCH_JSON), str(tmp_path))
    answered = [i for i, r in enumerate(records) if r["type"] != "Scene Text-centric VQA" or i % 2]
    path = write_lines(tmp_path / "p.jsonl", [json.dumps({"index": i, "prediction": records[i]["answers"]
                                                          if isinstance(records[i]["answers"], str)
                                                          else records[i]["answers"][0]}) for i in answered])
    scores = score_predictions(bench, load_external_predictions(path, bench), None)
    scene = sum(r["type"] == "Scene Text-centric VQA" for r in records)
    assert scores["per_type"]["Scene Text-centric VQA"]["total"] == scene == 200
    assert scores["Final Score"] == {"correct": len(answered), "total": 1000}
    assert scores["Scene Text-centric VQA accuracy"] == scores["per_type"]["Scene Text-centric VQA"]["correct"] / 200
    assert scores["Text Recognition"] == {"correct": 300, "total": 300}


@needs_ocrbench
def test_generation_without_any_image_found_is_one_line_not_a_run_scored_all_wrong(tmp_path):
    """The real OCRBench.json without --images: the guessed folder beside it holds none of its images."""
    data = tmp_path / "OCRBench.json"
    data.write_bytes(OCRBENCH_JSON.read_bytes())
    out = tmp_path / "eval"
    result = cli("eval", "--benchmark", "ocrbench", "--data", str(data), "--model", "tiny-llava", "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: none of the 1000 images of ocrbench exists (the first: {tmp_path / 'OCRBench_Images'}"
                                     f"/{json.loads(OCRBENCH_JSON.read_text())[0]['image_path']}): pass --images FOLDER (the "
                                     "folder the records' image paths are under)")
    assert not out.exists()
