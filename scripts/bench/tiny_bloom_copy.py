"""How well the text demo's tiny BLOOM learns its copy pre-training, per seed: exact match (spaces ignored) of the
pre-trained base's greedy answer to held-out `Repeat the text: "..."` prompts.

    python scripts/bench/tiny_bloom_copy.py --seeds 3 [--set pretrain.batch_size=16 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from llava_cit.config import load_config  # noqa: E402
from llava_cit.continual.demo import demo_preset  # noqa: E402
from llava_cit.data import synthetic  # noqa: E402
from llava_cit.data.collation import Encoder  # noqa: E402
from llava_cit.serve.generation import generate_batch  # noqa: E402
from llava_cit.train.pretraining import pretrained_base  # noqa: E402


def copy_accuracy(seed: int, overrides: list[str], count: int = 60) -> dict:
    config = load_config(None, [*overrides, f"seed={seed}"], base=demo_preset("text"))
    start = time.perf_counter()
    loaded = pretrained_base(config)
    seconds = time.perf_counter() - start
    examples = synthetic.generate("synth-text-base", count, seed=7, split="test")
    answers = generate_batch(loaded.model, Encoder(loaded, max_length=config.train.max_length), examples, max_new_tokens=16)
    exact = sum(a.replace(" ", "") == ex.turns[0][1].replace(" ", "") for a, ex in zip(answers, examples)) / count
    return {"seed": seed, "overrides": overrides, "copy_exact_match": exact, "pretrain_seconds": round(seconds, 1),
            "examples": [{"expected": ex.turns[0][1], "answer": a} for a, ex in zip(answers[:3], examples[:3])]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    for seed in range(args.seeds):
        print(json.dumps(copy_accuracy(seed, args.overrides)), flush=True)


if __name__ == "__main__":
    main()
