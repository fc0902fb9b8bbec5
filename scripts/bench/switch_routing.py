"""Switch benchmark: routing speed (batched vs one-at-a-time vs reload-per-batch) and accuracy vs retention.

Speed uses a real-size OPT-125M architecture built from its config (random weights: the hub is
unreachable here; timing does not depend on the weights). Accuracy uses (a) the synthetic tasks'
instructions and (b) the real OCRBench questions grouped by their `type`, with the extractor
given by --extractor (default: the same random OPT-125M; a pretrained one needs the hub).

    python scripts/bench/switch_routing.py --ocrbench ../shared/data/ocrbench/OCRBench.json --out docs/bench_switch.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, OPTConfig, OPTModel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from llava_cit.data import synthetic
from scripts.bench.timing import clock
from switch import FeatureExtractor, SwitchNetwork, switch_text
from switch.tiny import build_word_tokenizer, words_of


def opt125m_dir(words: list[str], where: Path, seed: int = 0) -> Path:
    """OPT-125M's architecture (768-d, 12 layers) with random weights and a word tokenizer, saved locally."""
    tokenizer = build_word_tokenizer(words)
    torch.manual_seed(seed)
    model = OPTModel(OPTConfig(vocab_size=max(len(tokenizer), 50272), pad_token_id=tokenizer.pad_token_id,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    model.save_pretrained(where)
    tokenizer.save_pretrained(where)
    return where


def speed(model_dir: Path, texts: list[str], batch_size: int, one_by_one: int) -> dict:
    extractor = FeatureExtractor(str(model_dir), batch_size=batch_size, memory_cache=False)
    extractor(texts[:batch_size])  # warm-up (and the one load)
    batched = clock(lambda: extractor(texts))
    single = clock(lambda: [extractor([t]) for t in texts[:one_by_one]]) * len(texts) / one_by_one

    def reload_per_batch():  # what the published SwitchCIT code does: load the extractor on every call
        for start in range(0, len(texts), batch_size):
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
            model = AutoModel.from_pretrained(model_dir).to(extractor.device).eval()
            batch = tokenizer(texts[start:start + batch_size], padding=True, return_tensors="pt").to(extractor.device)
            with torch.no_grad():
                model(**batch)

    reload = clock(reload_per_batch)
    return {"texts": len(texts), "batch_size": batch_size, "batched_s": batched, "one_at_a_time_s": single,
            "one_at_a_time_measured_on": one_by_one, "reload_per_batch_s": reload,
            "speedup_vs_one_at_a_time": single / batched, "speedup_vs_reload_per_batch": reload / batched}


def accuracy_vs_retention(families: dict[str, list[str]], extractor: FeatureExtractor, counts: list[int],
                          seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    split = {}
    for task, texts in families.items():
        texts = list(texts)
        rng.shuffle(texts)
        half = len(texts) // 2
        split[task] = (texts[:half], texts[half:])
    rows = []
    for count in counts:
        train_texts, train_labels = [], []
        for task, (pool, _) in split.items():
            kept = pool[: min(count, len(pool))]
            train_texts += kept
            train_labels += [task] * len(kept)
        switch = SwitchNetwork(extractor, hidden=200, epochs=300, reject=True, seed=seed).fit(train_texts, train_labels)
        held = [(t, task) for task, (_, test) in split.items() for t in test]
        predictions = switch.predict([t for t, _ in held])
        per_task = defaultdict(list)
        for (label, _), (_, task) in zip(predictions, held):
            per_task[task].append(label == task)
        rows.append({"retained_per_task": {t: min(count, len(p)) for t, (p, _) in split.items()},
                     "heldout": len(held),
                     "accuracy": sum(label == task for (label, _), (_, task) in zip(predictions, held)) / len(held),
                     "rejected": sum(label is None for label, _ in predictions) / len(held),
                     "per_task": {t: sum(v) / len(v) for t, v in per_task.items()}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ocrbench", default="../shared/data/ocrbench/OCRBench.json")
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--one-by-one", type=int, default=200, help="how many single calls to time (extrapolated)")
    parser.add_argument("--extractor", default=None, help="extractor for the accuracy part (default: random OPT-125M)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    records = json.loads(Path(args.ocrbench).read_text(encoding="utf-8"))
    by_type = defaultdict(list)
    for record in records:
        by_type[record["type"]].append(switch_text(record["question"]))
    synthetic_families = {}
    for name in ("synth-shapes", "synth-ocr"):
        synthetic_families[name] = [switch_text(ex.instruction) for ex in synthetic.generate(name, 400, split="test")]
    all_texts = [t for v in by_type.values() for t in v] + [t for v in synthetic_families.values() for t in v]
    # Word vocabulary from the training halves would leak nothing: the tokenizer only maps words to ids.
    words = words_of(all_texts + [str(i) for i in range(args.texts)] + ["(", ")"])
    result = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
              "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = opt125m_dir(words, Path(tmp) / "opt125m")
        # every text distinct (OCRBench repeats some questions verbatim), so no variant can skip work by dedup
        texts = [f"{switch_text(r['question'])} ({i})" for i, r in enumerate(records)][: args.texts]
        result["speed"] = speed(model_dir, texts, args.batch_size, args.one_by_one)
        extractor = FeatureExtractor(args.extractor or str(model_dir))
        counts = [10, 100, 1000]  # = 0.01%, 0.1%, 1% of 100,000 examples per task (the paper's scale)
        result["accuracy_synthetic"] = accuracy_vs_retention(synthetic_families, extractor, counts)
        result["accuracy_ocrbench_types"] = accuracy_vs_retention(dict(by_type), extractor, counts)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
