"""End-to-end `llava-cit eval` through the CLI with tiny models and stand-in OCRBench images."""

import json

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
