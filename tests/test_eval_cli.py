"""End-to-end `llava-cit eval` through the CLI with tiny models and stand-in OCRBench images."""

import json
import shutil

import yaml
from conftest import tiny_run_config
from PIL import Image, ImageDraw
from test_benchmarks import OCRBENCH_JSON, needs_ocrbench, stand_in_benchmark
from test_cli import cli

from benchmarks import ocrbench


@needs_ocrbench
def test_tiny_model_on_stand_in_ocrbench_images(tmp_path):
    records = ocrbench.load_annotations(OCRBENCH_JSON)
    root = tmp_path / "OCRBench_Images"
    for record in records[:24]:  # stand-ins: the answer rendered as an image at the real relative path
        path = root / record["image_path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (64, 64), "white")
        answer = record["answers"] if isinstance(record["answers"], str) else record["answers"][0]
        ImageDraw.Draw(image).text((2, 24), answer[:10], fill="black")
        image.save(path)
    out = tmp_path / "eval"
    args = ["eval", "--benchmark", "ocrbench", "--data", str(OCRBENCH_JSON), "--images", str(root),
            "--model", "tiny-llava", "--limit", "24", "--batch-size", "8", "--max-new-tokens", "4", "--out", str(out)]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 24 and {"id", "prediction", "gold", "type"} <= set(json.loads(lines[0]))
    scores = json.loads((out / "scores.json").read_text())
    assert scores["samples"] == 24 and scores["scored"] == 24 and scores["bad_samples"] == []
    assert "Final Score" in result.stdout and "Text Recognition" in result.stdout
    # a bare LLaVA's images are padded to a square by default (--image-aspect-ratio auto), as a run's are
    assert json.loads((out / "producer.json").read_text())["prompt"]["image_aspect_ratio"] == "pad"
    # re-running resumes: nothing left to generate, same scores
    assert cli(*args).returncode == 0
    assert json.loads((out / "scores.json").read_text()) == scores
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 24


def test_score_existing_predictions_without_a_model(tmp_path):
    data, root = stand_in_benchmark(tmp_path, n=6)
    preds = tmp_path / "other_tool.jsonl"
    preds.write_text("\n".join(json.dumps({"id": i, "prediction": f"It says WORD{i}" if i < 4 else "?"})
                               for i in range(6)))
    result = cli("eval", "--benchmark", "ocrbench", "--data", data, "--predictions", str(preds), "--out",
                 str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "s/scores.json").read_text())
    # id 0 is HME100k (case kept, spaces removed): "ItsaysWORD0" does not contain "word0"
    assert scores["Final Score"] == {"correct": 3, "total": 6}


def bad_question_file(tmp_path):
    """OCRBench-format records: two good ones, then an empty, a blank and an over-long question, a missing answer."""
    root = tmp_path / "imgs"
    root.mkdir()
    Image.new("RGB", (32, 32), "white").save(root / "a.png")
    base = {"dataset_name": "IIIT5K", "image_path": "a.png", "answers": "red", "type": "Regular Text Recognition"}
    questions = ["what is written on the sign ?", "what shape is on the left ?", "", "   ",
                 " ".join(["what is written on the sign ?"] * 60), None]
    records = []
    for i, question in enumerate(questions):
        record = dict(base, id=i, question=question if question is not None else "what shape ?")
        if question is None:
            del record["answers"]
        records.append(record)
    data = tmp_path / "OCRBench.json"
    data.write_text(json.dumps(records))
    return str(data), str(root)


def test_routed_eval_of_a_run(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config()))
    run = tmp_path / "run"
    assert cli("train", str(config), "--out", str(run)).returncode == 0
    result = cli("eval", "--benchmark", "synth-ocr", "--run", str(run), "--limit", "12", "--out", str(tmp_path / "e"))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "e/predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(row["routed_task"] in ("synth-ocr", "synth-shapes", None) for row in rows)
    assert any(row["routed_task"] == "synth-ocr" for row in rows)
    result = cli("eval", "--benchmark", "synth-ocr", "--run", str(run), "--adapter", "nope")
    assert result.returncode == 2 and "has no adapter for task 'nope'" in result.stderr

    # the same folder, other settings: refused (it would mix two evaluations); --force starts over
    again = ["eval", "--benchmark", "synth-ocr", "--run", str(run), "--limit", "12", "--out", str(tmp_path / "e")]
    result = cli(*again, "--max-new-tokens", "2")
    assert result.returncode == 2 and "another producer or with other settings (generation differ)" in result.stderr
    assert cli(*again, "--max-new-tokens", "2", "--force").returncode == 0
    producer = json.loads((tmp_path / "e/producer.json").read_text())
    assert producer["source"]["checksums"] and producer["prompt"]["image_aspect_ratio"] == "pad"

    # one bad sample never stops an evaluation: routed, fixed adapter and bare model alike
    data, root = bad_question_file(tmp_path)
    for source in (["--run", str(run)], ["--run", str(run), "--adapter", "synth-ocr"], ["--model", "tiny-llava"]):
        out = tmp_path / f"bad-{len(source)}-{source[-1]}"
        result = cli("eval", "--benchmark", "ocrbench", "--data", data, "--images", root, *source, "--out", str(out))
        assert result.returncode == 0, result.stderr
        scores = json.loads((out / "scores.json").read_text())
        reasons = {b["key"]: b["error"] for b in scores["bad_samples"]}
        assert set(reasons) == {"2", "3", "4", "5"} and scores["samples"] == 6 and scores["scored"] == 6
        assert reasons["2"] == reasons["3"] == "empty question" and "too long" in reasons["4"]
        assert "missing field 'answers'" in reasons["5"]

    # default output folders of two different runs never collide
    other = tmp_path / "copy" / "run"
    shutil.copytree(run, other)
    for r in (run, other):
        assert cli("eval", "--benchmark", "synth-ocr", "--run", str(r), "--limit", "2", cwd=tmp_path).returncode == 0
    assert len([p for p in (tmp_path / "evals").iterdir() if p.name.startswith("synth-ocr-run-")]) == 2


def test_eval_bad_arguments(tmp_path):
    result = cli("eval", "--benchmark", "ocrbench", "--data", str(tmp_path / "none.json"), "--model", "tiny-llava")
    assert result.returncode == 2 and "data file not found" in result.stderr
    result = cli("eval", "--benchmark", "ocrbench", "--data", "x.json")
    assert result.returncode == 2 and "exactly one of --model, --run" in result.stderr


def test_text_task_eval_scores_in_batch_with_the_constraint_rate(tmp_path):
    from llava_cit.data import synthetic

    tests = synthetic.generate("synth-hgen", 6, split="test")  # synth-hgen's own test source
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(json.dumps({"id": ex.id, "prediction": ex.answer if i < 3 else "nothing at all"})
                               for i, ex in enumerate(tests)))
    result = cli("eval", "--benchmark", "synth-hgen", "--predictions", str(preds), "--limit", "6", "--out",
                 str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "s/scores.json").read_text())
    assert scores["metric"] == "rouge1" and scores["scored"] == 6
    assert scores["score"] == 0.5 and scores["constraint_rate"] == 0.5  # gold titles meet their constraint
    assert "constraint_rate" in result.stdout

    out = tmp_path / "m"  # a bare tiny BLOOM answers the text prompts (no <image>), scores land per sample
    result = cli("eval", "--benchmark", "synth-hgen", "--model", "tiny-bloom", "--limit", "4", "--max-new-tokens", "3",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "scores.json").read_text())["samples"] == 4
