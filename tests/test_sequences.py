"""Task sequences by name, their shipped task files reading tiny copies of the released files (written in the
published shapes: LLaVA-format train records, {question_id, image, text, answer} test records, COCO-type caption
references, the datasets' own answer files), and `llava-cit data check`."""

import json
from pathlib import Path

import pytest
from PIL import Image

from llava_cit.config import load_config
from llava_cit.data.paths import expand_data_root
from llava_cit.data.released import candidates
from llava_cit.data.sources import load_source
from llava_cit.data_prep.release_check import check_sequence
from llava_cit.tasks.catalog import TASKS
from llava_cit.tasks.sequences import SEQUENCES, expand_sequences
from llava_cit.util.errors import UserError

UCIT = ["ucit-imagenet-r", "ucit-arxivqa", "ucit-vizwiz-caption", "ucit-iconqa", "ucit-clevr-math", "ucit-flickr30k"]
COIN = ["coin-scienceqa", "coin-textvqa", "coin-imagenet", "coin-gqa", "coin-vizwiz", "coin-grounding", "coin-vqav2",
        "coin-ocrvqa"]
DCL = ["mllm-dcl-rs", "mllm-dcl-med", "mllm-dcl-ad", "mllm-dcl-sci", "mllm-dcl-fin"]


def test_sequences_expand_in_published_order():
    assert list(SEQUENCES.get("ucit").tasks) == UCIT
    assert list(SEQUENCES.get("coin").tasks) == COIN
    assert list(SEQUENCES.get("mllm-dcl").tasks) == DCL
    assert expand_sequences(["gqa", "mllm-dcl"]) == ["gqa", *DCL]
    assert expand_sequences([{"name": "ucit-mini", "train": {"count": 8}}])[0] == \
        {"name": "ucit-mini-classify", "train": {"count": 8}}
    assert load_config(None, ["tasks=[coin]"]).tasks == COIN
    metrics = {name: TASKS.get(name).metric for name in UCIT + COIN + DCL}
    assert metrics["ucit-flickr30k"] == "cider" and metrics["coin-textvqa"] == "textvqa_accuracy"
    assert metrics["coin-grounding"] == "grounding_iou" and metrics["coin-scienceqa"] == "scienceqa_option"
    assert metrics["mllm-dcl-sci"] == "science_answer" and TASKS.get("coin-vqav2").extra_metrics == ["vqa_accuracy"]


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (200, 10, 10)).save(path)


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def write_release(root: Path, sequence: str, records: int = 3) -> None:
    """A tiny copy of a sequence's released files at each task's first candidate paths, in the published shapes."""
    for name in SEQUENCES.get(sequence).tasks:
        task = TASKS.get(name)
        folder = Path(expand_data_root(task.train["image_folder"], name))
        images = [f"{name}/img_{i}.png" for i in range(records)]
        for image in images:
            _image(folder / image)
        train = [{"id": "same-id" if i < 2 else f"t{i}", "image": images[i],
                  "conversations": [{"from": "human", "value": "<image>\nWhat is it?"},
                                    {"from": "gpt", "value": f"answer {i}"}]} for i in range(records)]
        _write(candidates(task.train["path"], name)[0], train)
        test = []
        for i in range(records):
            record = {"question_id": 100 + i, "image": images[i], "text": f"Question {i}?", "answer": "Yes"}
            if task.test.get("answer_field") == "answer_bbox":
                record.update(answer_bbox="[0.1, 0.1, 0.5, 0.5]", size=[8, 6])
            test.append(record)
        _write(candidates(task.test["path"], name)[0], test)
        if task.test.get("captions"):
            _write(candidates(task.test["captions"], name)[0], {
                "images": [{"id": i + 1, "file_name": Path(image).name} for i, image in enumerate(images)],
                "annotations": [{"image_id": i + 1, "id": 10 * i + k, "caption": f"a red picture {k}"}
                                for i in range(records) for k in range(2)]})
        spec = task.test.get("vqa_answers")
        if spec and not spec.get("optional"):
            _write(candidates(spec["path"], name)[0], {"data": [{"question_id": 100 + i, "answers": ["yes"] * 10}
                                                                for i in range(records)]})


@pytest.fixture()
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAVA_CIT_DATA", str(tmp_path))
    return tmp_path


def test_released_files_read_as_published(data_root):
    for sequence in ("ucit", "coin", "mllm-dcl"):
        write_release(data_root, sequence)
    train = load_source(TASKS.get("ucit-imagenet-r").train, "ucit-imagenet-r", "train")
    assert [ex.id for ex in train] == ["same-id", "same-id#2", "t2"]  # the released train files repeat ids
    assert train[0].image_path == data_root / "ucit/datasets/ucit-imagenet-r/img_0.png"
    test = load_source(TASKS.get("ucit-imagenet-r").test, "ucit-imagenet-r", "test", keep_bad=True)
    assert [ex.id for ex in test] == ["100", "101", "102"] and test[0].turns == [("<image>\nQuestion 0?", "Yes")]
    caption = load_source(TASKS.get("ucit-flickr30k").test, "ucit-flickr30k", "test", keep_bad=True)
    assert caption[1].meta["answers"] == ["a red picture 0", "a red picture 1"]  # image id 2's references
    textvqa = load_source(TASKS.get("coin-textvqa").test, "coin-textvqa", "test", keep_bad=True)
    assert textvqa[0].meta["vqa_answers"] == ["yes"] * 10
    vqav2 = load_source(TASKS.get("coin-vqav2").test, "coin-vqav2", "test", keep_bad=True)
    assert "vqa_answers" not in vqav2[0].meta and not vqav2[0].meta.get("error")  # optional, absent
    box = load_source(TASKS.get("coin-grounding").test, "coin-grounding", "test", keep_bad=True)
    assert box[0].meta["answers"] == ["[0.1, 0.1, 0.5, 0.5]"] and box[0].meta["size"] == [8, 6]
    fin = load_source(TASKS.get("mllm-dcl-fin").test, "mllm-dcl-fin", "test", keep_bad=True)
    assert fin[0].turns[0][0] == "<image>\nQuestion 0? Only answer with yes or no directly."  # model_fin.py's line


def test_mcitlib_file_names_are_read_too(data_root):
    task = TASKS.get("ucit-arxivqa")
    _image(data_root / "ucit/datasets/ArxivQA/images/a.png")
    _write(data_root / "ucit/ArxivQA/test.json",
           [{"question_id": "q1", "image": "ArxivQA/images/a.png", "text": "Which? A. x B. y", "answer": "B"}])
    assert load_source(task.test, task.name, "test", keep_bad=True)[0].meta["answer"] == "B"


def test_caption_file_that_does_not_match_is_a_bad_sample(data_root):
    write_release(data_root, "ucit")
    path = data_root / "ucit/instructions/VizWiz/val_coco_type_3000.json"
    coco = json.loads(path.read_text())
    coco["images"][0]["file_name"] = "another.jpg"
    path.write_text(json.dumps(coco))
    test = load_source(TASKS.get("ucit-vizwiz-caption").test, "ucit-vizwiz-caption", "test", keep_bad=True)
    assert "another.jpg" in test[0].meta["error"] and not test[1].meta.get("error")


def test_missing_release_is_one_line(data_root):
    with pytest.raises(UserError, match="file not found: .*ImageNet-R/train.json or .*ImageNet-R/train.json"):
        load_source(TASKS.get("ucit-imagenet-r").train, "ucit-imagenet-r", "train")


def test_data_check_names_what_is_missing(data_root):
    write_release(data_root, "mllm-dcl")
    lines: list[str] = []
    assert check_sequence("mllm-dcl", lines.append) == 0
    assert [line.split(":")[0] for line in lines] == [f"ok  {name}" for name in DCL]
    (data_root / "mllm-dcl/Med/mllm-dcl-med/img_1.png").unlink()
    (data_root / "mllm-dcl/Fin/test.json").unlink()
    lines.clear()
    assert check_sequence("mllm-dcl", lines.append) == 3  # the image in train and in test, and the file
    assert any(line.strip().startswith("missing image: ") and "img_1.png" in line for line in lines)
    assert any(line.strip().startswith("missing data file: ") and "Fin/test.json" in line for line in lines)


def test_data_check_counts_against_the_release(data_root):
    write_release(data_root, "ucit")
    lines: list[str] = []
    assert check_sequence("ucit", lines.append) == 6  # 3 test records where the release has 3,000, per task
    assert any("count: 3 test records, the release has 3000 (ucit-flickr30k test)" in line for line in lines)


def test_data_check_cli(data_root):
    from typer.testing import CliRunner

    from llava_cit.cli import app

    write_release(data_root, "coin")
    result = CliRunner().invoke(app, ["data", "check", "coin", "--data-root", str(data_root)])
    assert result.exit_code == 0, result.output
    assert "complete" in result.output
    (data_root / "coin/cl_dataset/coin-gqa").rename(data_root / "coin/cl_dataset/moved")
    result = CliRunner().invoke(app, ["data", "check", "coin", "--data-root", str(data_root)])
    assert result.exit_code == 1 and "missing folder:" in result.output and "(3 images)" in result.output
    for name, message in (("ucit-mini", "'ucit-mini' is synthetic"),
                          ("cifar", "unknown benchmark 'cifar' (known: coin, mllm-dcl, ucit)")):
        result = CliRunner().invoke(app, ["data", "check", name])
        assert isinstance(result.exception, UserError) and message in str(result.exception)


def test_sequences_command_lists_them():
    from typer.testing import CliRunner

    from llava_cit.cli import app

    listing = CliRunner().invoke(app, ["sequences"]).output
    assert "ucit           6 tasks, $LLAVA_CIT_DATA/ucit" in listing and "coin-mini      4 tasks, synthetic" in listing
    detail = CliRunner().invoke(app, ["sequences", "ucit"]).output.splitlines()
    assert [line.split()[1] for line in detail[1:]] == UCIT
    assert isinstance(CliRunner().invoke(app, ["sequences", "nope"]).exception, UserError)
