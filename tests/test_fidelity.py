"""What a paper-scale run reports must be right: precision, preprocessing, prompt, budgets, metrics."""

import json

import pytest
import torch
from conftest import tiny_run_config
from PIL import Image

from llava_cit.config import LoraSettings, load_config
from llava_cit.continual.metrics import mean_average_accuracy, mean_finetuned
from llava_cit.continual.runner import ContinualRunner, Progress
from llava_cit.data.example import Example
from llava_cit.data.prompt_settings import PromptSettings
from llava_cit.models.loading import load_model
from llava_cit.train.trainer import add_adapter, keep_fp32_master_weights


def test_bf16_projector_learns_from_a_small_step():
    loaded = load_model("tiny-llava", dtype="bfloat16")
    model = add_adapter(loaded.model, "a", LoraSettings(r=4, alpha=8, dropout=0.0), is_vision=True)
    for name, param in model.named_parameters():
        param.requires_grad = ".a." in name and ("lora_" in name or "modules_to_save" in name)
    keep_fp32_master_weights(model)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(p.dtype == torch.float32 for p in trainable.values())  # as documented: fp32 masters
    projector = {n: p.detach().clone() for n, p in trainable.items() if "modules_to_save" in n}
    assert projector
    frozen = [p for n, p in model.named_parameters() if not p.requires_grad and "language_model" in n]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)  # the base stays in bf16
    torch.manual_seed(0)
    batch = {"input_ids": torch.randint(5, 40, (2, 24)), "pixel_values": torch.randn(2, 3, 32, 32, dtype=torch.bfloat16)}
    batch["input_ids"][:, :16] = loaded.model.config.image_token_index
    optimizer = torch.optim.AdamW(trainable.values(), lr=2e-5)
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    optimizer.step()
    moved = [n for n, before in projector.items() if not torch.equal(before, dict(model.named_parameters())[n])]
    assert moved, "a 2e-5 step was rounded away"
    # the same step on a bf16 weight is lost: what the fp32 masters fix
    assert torch.tensor(0.01, dtype=torch.bfloat16) + 2e-5 == torch.tensor(0.01, dtype=torch.bfloat16)


def test_pad_keeps_the_top_band_of_a_tall_image():
    loaded = load_model("tiny-llava")
    tall = Image.new("RGB", (32, 96), "white")
    tall.paste((255, 0, 0), (0, 0, 32, 12))  # a red title band at the top of a book cover
    example = Example(id="b", turns=[("<image>\nWhat is the title?", "x")], image=tall)

    def red_pixels(aspect_ratio):
        pixels = PromptSettings(image_aspect_ratio=aspect_ratio).encoder(loaded).pixels([example])[0]
        return int(((pixels[0] > 0.9) & (pixels[1] < -0.9)).sum())  # red after (x - 0.5) / 0.5 normalisation

    assert red_pixels("pad") > 0  # padded to a square with the mean colour: the band survives the resize
    assert red_pixels("crop") == 0  # the processor's centre crop cuts it off


def test_llava15_system_prompt_is_the_default_for_llava_models():
    from llava_cit.data.prompts import LLAVA_SYSTEM
    from llava_cit.models.family import resolve_system_prompt

    assert resolve_system_prompt("auto", True, "llava-hf/llava-1.5-7b-hf") == LLAVA_SYSTEM
    assert resolve_system_prompt("auto", False, "bigscience/bloomz-7b1") is None
    assert LLAVA_SYSTEM.startswith("A chat between a curious human and an artificial intelligence assistant.")


def test_one_prompt_at_training_runner_evaluation_and_eval_run(tmp_path, monkeypatch):
    """Also: each task's own generation budget, MFT/MFN/MAA, the false-rejection rate and one upper bound."""
    import llava_cit.serve.routed_model as routed_model
    from llava_cit.serve.run_server import RunServer

    budgets = []
    real = routed_model.generate_routed

    def spy(model, encoder, examples, routes, budget, *args, **kwargs):
        budgets.extend(zip(routes, budget))  # one budget per example
        return real(model, encoder, examples, routes, budget, *args, **kwargs)

    monkeypatch.setattr(routed_model, "generate_routed", spy)
    system = "Below is an instruction that describes a task ."  # words of the tiny vocabulary
    config = tiny_run_config(system_prompt=system, switch={"extractor": "tiny-opt", "hidden": 32, "epochs": 100,
                                                            "reject": True, "reject_layer": 1, "reject_pooling": "mean",
                                                            "reject_metric": "cosine", "reject_margin": "3e-1",
                                                            "reject_calibration": 8, "reject_also": [[2, "last"]]},
                             tasks=["synth-shapes", {"name": "synth-ocr", "max_new_tokens": 2}])
    config["eval"]["max_new_tokens"] = None
    runner = ContinualRunner(load_config(None, base=config), tmp_path / "r", progress=Progress())
    results = runner.run()
    example = runner.test_set(runner.tasks[1])[0]
    trained = runner.encoder.prompt_text(example)
    assert trained.startswith(system + " USER: <image>\n")
    served = RunServer(tmp_path / "r").encoder
    assert served.prompt_text(example) == trained and served.image_aspect_ratio == "pad"
    encoded = runner.encoder.encode_train(example, pixels=False)["input_ids"]
    assert encoded[: len(runner.encoder.encode_prompt(example))] == runner.encoder.encode_prompt(example)
    assert json.loads((tmp_path / "r/prompt.json").read_text())["system"] == system
    # each route generates with its own task's budget, never the maximum over tasks
    own = {"synth-shapes": 4, "synth-ocr": 2}
    assert {b for route, b in budgets if route in own} == {4, 2}
    assert all(b == own[route] for route, b in budgets if route in own)
    m = results["matrix"]
    assert results["mft"] == pytest.approx((m[0][0] + m[1][1]) / 2) == mean_finetuned(m)
    assert results["mfn"] == pytest.approx(sum(m[1]) / 2) and results["maa"] == mean_average_accuracy(m)
    assert set(results["false_rejection_rate"][1]) == {"synth-shapes", "synth-ocr"}
    saved = json.loads((tmp_path / "r/switch/stage-01/switch.json").read_text())  # the rejection rule as configured
    assert [saved[k] for k in ("reject_layer", "reject_pooling", "reject_metric", "margin")] == [1, "mean", "cosine", 0.3]
    # calibrated rejection: each task's stage kept the distances of 8 of its other instructions to the nearest retained
    # one (and which), and the saved switch's radii come from them
    for task in ("synth-shapes", "synth-ocr"):
        calibration = json.loads((tmp_path / f"r/retained/{task}.calibration.json").read_text())
        assert calibration["view"] == {"extractor": "tiny-opt", "layer": 1, "pooling": "mean", "metric": "cosine",
                                       "also": [[2, "last"]]}
        assert calibration["instructions"] == len(calibration["distances"]) == len(calibration["nearest"]) == 8
        assert [len(v["distances"]) for v in calibration["also"]] == [len(v["nearest"]) for v in calibration["also"]] == [8]
    from safetensors.torch import load_file

    assert saved["calibrated"] is True
    tensors = load_file(tmp_path / "r/switch/stage-01/switch.safetensors")
    assert len(tensors["reject_radii"]) == len(tensors["reject_bank"]) == len(tensors["reject_radii.1"])
    assert saved["reject_also"] == [[2, "last"]]
    assert results["upper_bound_source"]["synth-ocr"].startswith("own adapter")


def test_every_method_shares_one_upper_bound_definition(tmp_path):
    cfg = load_config(None, base=tiny_run_config(method="seq-lora"))
    results = ContinualRunner(cfg, tmp_path / "s").run()
    # stage 1's continued adapter is not the task's own: a fresh adapter is trained on synth-ocr alone
    assert results["upper_bound_source"]["synth-ocr"].startswith("upper_bound/01-synth-ocr")
    assert (tmp_path / "s/upper_bound/01-synth-ocr/adapter_model.safetensors").is_file()
    from llava_cit.continual.metrics import relative_gain

    upper = [results["upper_bound"][t] for t in results["tasks"]]
    assert results["relative_gain"] == relative_gain(results["matrix"], upper) and all(u is not None for u in upper)
    assert results["upper_bound_source"]["synth-shapes"].startswith("this stage's adapter")


def test_switch_extractor_keeps_the_end_of_a_long_instruction():
    from switch import FeatureExtractor

    words = [f"w{i}" for i in range(40)] + ["sign", "book", "title", "colour"]
    extractor = FeatureExtractor("tiny-opt", max_length=16)
    extractor(words)  # builds the tiny vocabulary
    head = " ".join(f"w{i}" for i in range(40))
    a, b = extractor([f"{head} what is the sign", f"{head} what is the book title"])
    assert not torch.allclose(a, b)  # cut on the right, both would be the same 16 leading words
    assert extractor.tokenizer.truncation_side == "left"


def test_a_resumed_run_refuses_changed_eval_settings(tmp_path):
    from llava_cit.util.errors import UserError

    config = tiny_run_config(tasks=["synth-shapes"])
    ContinualRunner(load_config(None, base=config), tmp_path / "r").run()
    with pytest.raises(UserError, match=r"different config \(eval.limit differ"):
        ContinualRunner(load_config(None, ["eval.limit=6"], base=config), tmp_path / "r")


def test_sample_problems_are_named_before_generation():
    from types import SimpleNamespace

    from llava_cit.serve.generation import sample_problem

    class Tokenizer:  # a real BPE tokenizer drops some characters entirely (e.g. a lone zero-width space)
        def __call__(self, text, add_special_tokens=False):
            return SimpleNamespace(input_ids=[ord(c) for c in text if c != "\u200b"])

    encoder = SimpleNamespace(tokenizer=Tokenizer(), max_positions=64,
                              encode_prompt=lambda ex: list(range(10 + len(ex.turns[-1][0]))))

    def problem(question, budget=16):
        return sample_problem(encoder, Example(id="q", turns=[(question, "a")]), budget)

    assert problem("What is written?") is None
    assert problem("   ") == problem("<image>\n") == "empty question"
    assert problem("\u200b") == "the question tokenizes to nothing"
    assert problem("x" * 50).startswith("question too long: a prompt of 60 tokens plus 16 to generate exceeds")
