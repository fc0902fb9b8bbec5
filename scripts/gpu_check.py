"""GPU check: the tiny pipeline on CUDA in bf16, and with 4-bit QLoRA (bitsandbytes nf4, double quant).

    python scripts/gpu_check.py --out gpu_check.json

Runs the demo's switchcit sequence (pre-trained tiny LLaVA, synth-shapes -> synth-ocr) twice on
the GPU: bf16 mixed precision, then with the base loaded in 4-bit. For 4-bit it also checks
that LoRA parameters receive non-zero gradients (on CPU they silently do not).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llava_cit.config import LoraSettings, load_config
from llava_cit.continual.demo import demo_preset
from llava_cit.continual.runner import ContinualRunner
from llava_cit.data.collation import Encoder, TrainCollator
from llava_cit.data.synthetic import generate
from llava_cit.train.pretraining import pretrained_base
from llava_cit.train.trainer import add_adapter


def run(overrides: list[str], out: Path) -> dict:
    config = load_config(None, overrides + ["method=switchcit"], base=demo_preset("vision"))
    start = time.perf_counter()
    results = ContinualRunner(config, out).run()
    return {"overrides": overrides, "seconds": time.perf_counter() - start, "matrix": results["matrix"],
            "upper_bound": results["upper_bound"], "base_model": results["base_model"],
            "switch_accuracy": results["switch_accuracy"], "train_seconds": results["timings"]["train_seconds"]}


def lora_gradients_4bit() -> dict:
    config = load_config(None, ["load_in_4bit=true"], base=demo_preset("vision"))
    loaded = pretrained_base(config)
    quantized = sum(type(m).__name__ == "Linear4bit" for m in loaded.model.modules())
    model = add_adapter(loaded.model, "a", LoraSettings(r=16, alpha=32, dropout=0.0, projector_lr=None), True)
    encoder = Encoder(loaded, max_length=64)
    batch = TrainCollator(encoder.tokenizer.pad_token_id)([encoder.encode_train(e) for e in generate("synth-ocr", 8)])
    batch = {k: v.to(model.device) for k, v in batch.items()}
    model.train()
    model(**batch).loss.backward()
    norms = [p.grad.norm().item() for n, p in model.named_parameters() if "lora_" in n and p.grad is not None]
    return {"linear4bit_modules": quantized, "lora_params_with_grad": len(norms),
            "nonzero_grads": sum(n > 0 for n in norms), "max_grad_norm": max(norms) if norms else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args()
    assert torch.cuda.is_available(), "this check needs a CUDA GPU"
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    steps = {
        "fp32": lambda tmp: run([], tmp / "fp32"),
        "bf16": lambda tmp: run(["train.bf16=true"], tmp / "bf16"),
        "qlora_4bit_gradients": lambda tmp: lora_gradients_4bit(),
        "qlora_4bit": lambda tmp: run(["load_in_4bit=true", "train.bf16=true"], tmp / "q4"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, step in steps.items():
            try:
                report[name] = step(Path(tmp))
            except Exception as err:  # record and go on: each step is a separate finding
                report[name] = {"error": f"{type(err).__name__}: {err}"[:500]}
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
