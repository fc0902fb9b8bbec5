import json
import shutil

import pytest
import yaml
from conftest import tiny_run_config
from transformers import TrainerCallback

from llava_cit.config import load_config
from llava_cit.continual.metrics import average, backward_transfer, relative_gain
from llava_cit.continual.runner import ContinualRunner, Progress
from llava_cit.util.atomic import dir_checksums
from llava_cit.util.errors import UserError


def run(tmp_path, name="run", progress=None, **config):
    cfg = load_config(None, base=tiny_run_config(**config))
    runner = ContinualRunner(cfg, tmp_path / name, progress=progress or Progress(record_ids=True))
    return runner, runner.run()


def test_metric_formulas_against_hand_computed_matrix():
    m = [[0.8, None, None], [0.6, 0.9, None], [0.5, 0.7, 0.4]]
    assert average(m) == pytest.approx((0.5 + 0.7 + 0.4) / 3)
    assert backward_transfer(m) == pytest.approx(((0.5 - 0.8) + (0.7 - 0.9)) / 2)
    rg = relative_gain(m, [0.8, 1.0, 0.5])
    assert rg[2] == pytest.approx([0.625, 0.7, 0.8]) and rg[0][1] is None
    assert backward_transfer([[0.3]]) is None


def test_switchcit_run_layout_and_results(tmp_path):
    _, results = run(tmp_path)
    rd = tmp_path / "run"
    assert results["tasks"] == ["synth-shapes", "synth-ocr"] and results["method"] == "switchcit"
    assert results["matrix"][0][1] is None and len(results["matrix"]) == 2
    for key in ("upper_bound", "final", "average", "bwt", "relative_gain", "switch_accuracy", "metric", "timings"):
        assert key in results
    for adapter in results["adapters"].values():
        assert (rd / adapter / "adapter_config.json").is_file()
        assert (rd / adapter / "adapter_model.safetensors").is_file()
    assert results["switch_accuracy"][0] is None and 0 <= results["switch_accuracy"][1] <= 1
    meta = json.loads((rd / results["switch"] / "switch.json").read_text())
    assert meta["labels"] == ["synth-shapes", "synth-ocr"] and meta["extractor"] == "tiny-opt"
    assert len((rd / "retained" / "synth-ocr.jsonl").read_text().splitlines()) == 8
    rows = [json.loads(line) for line in (rd / "predictions/stage-01/synth-shapes.jsonl").read_text().splitlines()]
    assert {"id", "question", "prediction", "gold", "routed_task", "confidence", "score"} <= set(rows[0])
    assert not list(rd.rglob("*.bin")) and not list(rd.rglob("*.pt")) and not list(rd.rglob("*.pkl"))
    # results are recomputed from the per-sample predictions
    assert results["matrix"][1][0] == pytest.approx(sum(r["score"] for r in rows) / len(rows))


def test_each_method_trains_on_what_it_claims(tmp_path):
    runner, _ = run(tmp_path, "reh", method="rehearsal")
    retained = {json.loads(line)["id"] for line in (tmp_path / "reh/retained/synth-shapes.jsonl").read_text().splitlines()}
    ids = runner.manifest.stages[1]["train"]["example_ids"]
    assert {i.split("/", 1)[1] for i in ids if i.startswith("synth-shapes/")} == retained
    assert sum(i.startswith("synth-ocr/") for i in ids) == 48
    runner, _ = run(tmp_path, "seq", method="seq-lora")
    assert all(i.startswith("synth-ocr/") for i in runner.manifest.stages[1]["train"]["example_ids"])
    runner, _ = run(tmp_path, "multi", method="multitask")
    assert sum(i.startswith("synth-shapes/") for i in runner.manifest.stages[1]["train"]["example_ids"]) == 48


class CrashAt(TrainerCallback):
    """Raise at `step` of the `stage`-th training run (as if the machine died mid-stage)."""

    def __init__(self, stage, step):
        self.stage, self.step, self.runs = stage, step, -1

    def on_train_begin(self, args, state, control, **kwargs):
        self.runs += 1

    def on_step_end(self, args, state, control, **kwargs):
        if self.runs == self.stage and state.global_step == self.step:
            raise RuntimeError("simulated crash")


def test_resume_after_crash_mid_stage(tmp_path):
    cfg = tiny_run_config(method="seq-lora")
    with pytest.raises(RuntimeError, match="simulated crash"):
        ContinualRunner(load_config(None, base=cfg), tmp_path / "r",
                        progress=Progress(trainer_callbacks=[CrashAt(1, 3)])).run()
    assert len(json.loads((tmp_path / "r/manifest.json").read_text())["stages"]) == 1  # stage 0 finished
    assert list((tmp_path / "r/checkpoints").rglob("checkpoint-2"))  # the Trainer checkpoint survives
    runner = ContinualRunner(load_config(None, base=cfg), tmp_path / "r")
    results = runner.run()
    assert runner.manifest.stages[1]["train"]["resumed_from"] == "checkpoint-2"
    assert len(results["matrix"]) == 2 and not (tmp_path / "r/checkpoints/01-synth-ocr").exists()


def test_extending_a_run_leaves_old_adapters_byte_identical(tmp_path):
    run(tmp_path, "x", tasks=["synth-shapes"])
    before = dir_checksums(tmp_path / "x/adapters")
    _, results = run(tmp_path, "x", tasks=["synth-shapes", "synth-ocr"])
    after = dir_checksums(tmp_path / "x/adapters")
    assert {k: v for k, v in after.items() if k.startswith("00-")} == before
    assert results["tasks"] == ["synth-shapes", "synth-ocr"]
    # re-running the finished run trains nothing and changes nothing
    run(tmp_path, "x", tasks=["synth-shapes", "synth-ocr"])
    assert dir_checksums(tmp_path / "x/adapters") == after


def test_task_file_outside_the_package(tmp_path):
    from PIL import Image, ImageDraw

    data = tmp_path / "mytask"
    (data / "imgs").mkdir(parents=True)
    records = []
    for i in range(20):
        colour = ["red", "blue"][i % 2]
        image = Image.new("RGB", (32, 32), "white")
        ImageDraw.Draw(image).rectangle((4, 4, 28, 28), fill=colour)
        image.save(data / "imgs" / f"{i}.png")
        records.append({"id": str(i), "image": f"{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat color is the shape on the left?"}, {"from": "gpt", "value": colour}]})
        if i % 5 == 0:  # text-only conversations, as in llava_v1_5_mix665k.json, share batches with image ones
            records.append({"id": f"text-{i}", "conversations": [
                {"from": "human", "value": "What color is the shape on the right?"}, {"from": "gpt", "value": colour}]})
    (data / "train.json").write_text(json.dumps(records))
    (data / "task.yaml").write_text(yaml.safe_dump({
        "name": "my-colours", "train": {"type": "llava", "path": "train.json", "image_folder": "imgs"},
        "test": {"type": "llava", "path": "train.json", "image_folder": "imgs"}, "max_new_tokens": 2}))
    _, results = run(tmp_path, "ext", tasks=["synth-ocr", str(data / "task.yaml")])
    assert results["tasks"] == ["synth-ocr", "my-colours"]
    assert results["matrix"][1][1] is not None
    assert not results["bad_samples"][-1].get("my-colours")  # text-only test records are answered, not counted bad


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="unknown task 'nope'.*known: .*synth-ocr"):
        run(tmp_path, tasks=["nope"])
    with pytest.raises(UserError, match="unknown method 'magic'.*switchcit"):
        run(tmp_path, method="magic")
    with pytest.raises(UserError, match="unknown config key 'lora.rank'"):
        load_config(None, ["lora.rank=3"], base=tiny_run_config())
    run(tmp_path, "d", tasks=["synth-shapes"])
    with pytest.raises(UserError, match="holds a run of a different config"):
        run(tmp_path, "d", tasks=["synth-shapes"], seed=7)
    adapter = tmp_path / "d/adapters/00-synth-shapes/adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:-8] + b"tampered")
    with pytest.raises(UserError, match="checksum mismatch"):
        run(tmp_path, "d", tasks=["synth-shapes"])


def test_force_moves_the_old_run_aside(tmp_path):
    run(tmp_path, "f", tasks=["synth-shapes"])
    cfg = load_config(None, base=tiny_run_config(tasks=["synth-shapes"], seed=3))
    ContinualRunner(cfg, tmp_path / "f", force=True).run()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("f.old-")]
    shutil.rmtree(tmp_path / "f")


def test_demo_seed_summary_reports_mean_and_sd_and_flags_adapters_below_base(tmp_path):
    from llava_cit.continual.demo import seed_summary

    def results(folder, method, matrix, upper, base):
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({
            "method": method, "tasks": ["a", "b"], "matrix": matrix, "average": sum(matrix[-1]) / 2,
            "bwt": matrix[-1][0] - matrix[0][0], "upper_bound": dict(zip("ab", upper)), "base_model": dict(zip("ab", base)),
            "mft": (matrix[0][0] + matrix[1][1]) / 2, "mfn": sum(matrix[-1]) / 2, "maa": 0.0,
            "final": dict(zip("ab", matrix[-1])), "adapters": {"a": "adapters/00-a", "b": "adapters/01-b"},
            "timings": {"train_seconds": 1.0}}))
        return folder

    by_seed = [[results(tmp_path / f"s{s}/switchcit", "switchcit", [[0.8, None], [0.8, 0.6]], [0.8, u], [0.1, 0.5]),
                results(tmp_path / f"s{s}/seq-lora", "seq-lora", [[0.8, None], [d, 0.9]], [0.8, 0.6], [0.1, 0.5])]
               for s, (u, d) in enumerate([(0.6, 0.2), (0.4, 0.4)])]
    summary = seed_summary(by_seed)
    drop = summary["methods"]["seq-lora"]["first_task_drop"]
    assert drop[0] == pytest.approx(0.5) and drop[1] == pytest.approx(0.1414, abs=1e-4)  # drops 0.6 and 0.4
    assert summary["per_seed"]["seq-lora"]["first_task_drop"] == pytest.approx([0.6, 0.4])  # every seed, in order
    assert summary["methods"]["switchcit"]["first_task_drop"] == (0.0, 0.0)
    assert summary["switchcit_below_base"] == ["seed 1: b own adapter 0.400 < untrained base 0.500"]
    assert summary["methods"]["seq-lora"]["final:a"][0] == pytest.approx(0.3)
    assert summary["methods"]["switchcit"]["adapters_per_task"] == (1.0, 0.0)


def test_a_pretrained_switch_extractor_is_loaded_once_per_run(tmp_path):
    """Every stage's calibration and fit, and task similarity, share one pretrained extractor; the tiny random one is
    built afresh for each switch (its vocabulary comes from the texts it first sees)."""
    from llava_cit.continual.switch_fitting import SwitchFitting
    from switch.tiny import tiny_opt, words_of

    model, tokenizer = tiny_opt(words_of(["what colour is the cube", "read the word"]), seed=0)
    model.save_pretrained(tmp_path / "extractor")
    tokenizer.save_pretrained(tmp_path / "extractor")

    def fitting(extractor: str) -> SwitchFitting:
        config = load_config(None, base=tiny_run_config(switch={"extractor": extractor, "reject_metric": "cosine"}))
        return SwitchFitting(config, tmp_path / "run", tasks=[], router="mlp")

    run = fitting(str(tmp_path / "extractor"))
    first, second = run.new_switch(), run.new_switch()
    assert first.extractor is second.extractor
    first.calibration_distances(["what colour is the cube"], ["read the word"])
    assert run.instruction_features(["read the word"]).shape[0] == 1
    assert run.features_extractor is first.extractor and first.extractor.load_count == 1
    tiny = fitting("tiny-opt")
    assert tiny.new_switch().extractor is not tiny.new_switch().extractor
