import json

import pytest
from PIL import Image

from llava_cit.data.llava_format import load_llava
from llava_cit.data.sources import load_source
from llava_cit.data.synthetic import generate
from llava_cit.util.errors import UserError


def write_records(tmp_path, records, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def record(image="a.png", answer="red"):
    return {"id": "1", "image": image, "conversations": [
        {"from": "human", "value": "<image>\nWhat color?"}, {"from": "gpt", "value": answer}]}


def test_synthetic_tasks_are_deterministic_and_disjoint():
    a, b = generate("synth-shapes", 20, seed=3), generate("synth-shapes", 20, seed=3)
    assert [e.turns for e in a] == [e.turns for e in b]
    assert all(x.image.tobytes() == y.image.tobytes() for x, y in zip(a, b))
    test = generate("synth-shapes", 20, seed=3, split="test")
    assert [e.turns for e in test] != [e.turns for e in a]
    shapes = {e.answer for e in generate("synth-shapes", 200)}
    words = {e.answer for e in generate("synth-ocr", 200)}
    assert shapes and words and not shapes & words  # disjoint answers: one task's tuning hurts the other


def test_llava_format_json_and_jsonl(tmp_path):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    examples = load_llava(write_records(tmp_path, [record()]), tmp_path)
    assert examples[0].turns == [("<image>\nWhat color?", "red")] and examples[0].load_image().size == (8, 8)
    assert examples[0].image is None  # opened when a batch needs it, never held
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(record()) for _ in range(3)))
    assert len(load_llava(path, tmp_path)) == 3


def test_missing_image(tmp_path):
    example = load_llava(write_records(tmp_path, [record("nope.png")]), tmp_path)[0]
    with pytest.raises(UserError, match="missing image: .*nope.png"):
        example.load_image()


def test_unreadable_image(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    example = load_llava(write_records(tmp_path, [record("bad.png")]), tmp_path)[0]
    with pytest.raises(UserError, match="unreadable image: .*bad.png"):
        example.load_image()


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(record()) + "\n" + '{"id": 2, "image": ' + "\n")
    with pytest.raises(UserError, match=r"d.jsonl: line 2: malformed JSON"):
        load_llava(path, tmp_path)
    path = tmp_path / "d.json"
    path.write_text('[\n{"id": 1},\n{"id": 2,,}\n]')
    with pytest.raises(UserError, match=r"d.json: line 3: malformed JSON"):
        load_llava(path, tmp_path)


def test_missing_field_and_empty_dataset(tmp_path):
    with pytest.raises(UserError, match="field 'conversations'"):
        load_llava(write_records(tmp_path, [{"id": "1"}]), tmp_path)
    with pytest.raises(UserError, match="the dataset is empty"):
        load_llava(write_records(tmp_path, []), tmp_path)


def test_image_path_escaping_the_root_is_refused(tmp_path):
    (tmp_path / "root").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "secret.png")
    with pytest.raises(UserError, match="escapes its data root"):
        load_llava(write_records(tmp_path, [record("../secret.png")]), tmp_path / "root")


def test_unknown_source_type():
    with pytest.raises(UserError, match="unknown source type 'ftp'"):
        load_source({"type": "ftp"}, "t", "train")


def test_hugging_face_dataset_source(tmp_path):
    # the `hf` source goes through datasets.load_dataset; a local file-backed dataset keeps it offline
    import datasets

    root = tmp_path / "imgs"
    root.mkdir()
    rows = []
    for i, colour in enumerate(["red", "blue", "green"]):
        Image.new("RGB", (8, 8), colour).save(root / f"{i}.png")
        rows.append({"id": str(i), "image": str(root / f"{i}.png"), "question": "What color?", "answer": colour})
    ds = datasets.Dataset.from_list(rows).cast_column("image", datasets.Image())
    ds.to_parquet(str(tmp_path / "train.parquet"))
    examples = load_source({"type": "hf", "path": "parquet", "data_files": str(tmp_path / "train.parquet"),
                            "split": "train"}, "colours", "train", suffix="Answer with one word.")
    assert [e.answer for e in examples] == ["red", "blue", "green"]
    assert examples[0].image.getpixel((0, 0)) == (255, 0, 0)
    assert examples[0].turns[0][0] == "<image>\nWhat color?\nAnswer with one word."
