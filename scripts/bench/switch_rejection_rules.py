"""Unknown-task rejection rules for the switch, compared on SmolLM2-135M-Instruct's features (last layer, last
token) of the switch's own text (`switch_text`), with 16 retained instructions per task.

Each task is left out of the switch in turn: its held-out instructions should be rejected ("unknown rejected"),
the other tasks' held-out instructions should not ("known rejected"); 3 seeds of the retained sample. The rules:
the switch's own (one radius over all tasks: the 0.95 quantile of the retained instructions' leave-one-out
nearest-neighbour distances in standardised features, times 1.1) and alternatives (per-task radii, cosine
distances on raw features, mean + 3 sd, and two read from the switch's trained classifier: its energy, and
nearest neighbours in its hidden layer). Goal (issue: real pretrained models offline, point 2): >= 0.9 of an
unknown task rejected and < 0.01 of known ones.

    python scripts/bench/switch_rejection_rules.py --out docs/bench/switch_rejection_rules.json

(SmolLM2: installed, or fetched from PyPI once.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from llava_cit.models.loading import load_model  # noqa: E402
from scripts.bench.switch_pretrained import builtin_families, ct0_families, split  # noqa: E402
from switch import FeatureExtractor  # noqa: E402
from switch.instruction import switch_text  # noqa: E402


def distances(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":
        return 1 - torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def leave_one_out(z: torch.Tensor, metric: str) -> torch.Tensor:
    d = distances(z, z, metric)
    d.fill_diagonal_(float("inf"))
    return d.min(1).values


def rule(scope: str, metric: str = "euclidean", standardise: bool = True, quantile: float = 0.95,
         margin: float = 0.1, sd: float | None = None):
    """A rejection rule: radius over all tasks ("global") or per task; radius = quantile x (1 + margin), or
    mean + sd x standard deviation of the leave-one-out distances."""
    def radius(loo: torch.Tensor) -> float:
        if sd is not None:
            return float(loo.mean() + sd * loo.std())
        return float(torch.quantile(loo, quantile)) * (1 + margin)

    def rejected(known: torch.Tensor, labels: list[str], queries: torch.Tensor) -> list[bool]:
        if standardise:  # as the switch does: the retained features' mean and (population) std
            mean, std = known.mean(0), known.std(0, unbiased=False).clamp(min=1e-6)
            known, queries = (known - mean) / std, (queries - mean) / std
        d = distances(queries, known, metric)
        if scope == "global":
            return (d.min(1).values > radius(leave_one_out(known, metric))).tolist()
        inside = torch.zeros(len(queries), dtype=torch.bool)
        for task in sorted(set(labels)):
            own = torch.tensor([label == task for label in labels])
            inside |= d[:, own].min(1).values <= radius(leave_one_out(known[own], metric))
        return (~inside).tolist()
    return rejected


def classifier_rule(kind: str):
    """Rules read from the switch's own classifier (2-layer MLP, hidden 200, 300 epochs, on standardised features):
    "energy" rejects when -logsumexp(logits) exceeds the retained instructions' largest by 10% of its magnitude;
    "hidden" is the nearest-neighbour rule (0.95 quantile x 1.1) in the classifier's hidden layer."""
    def rejected(known: torch.Tensor, labels: list[str], queries: torch.Tensor) -> list[bool]:
        from switch.classifier import SwitchClassifier, train_classifier

        mean, std = known.mean(0), known.std(0, unbiased=False).clamp(min=1e-6)
        known, queries = (known - mean) / std, (queries - mean) / std
        names = sorted(set(labels))
        classifier = SwitchClassifier(known.shape[1], len(names))
        train_classifier(classifier, known, torch.tensor([names.index(label) for label in labels]), epochs=300)
        with torch.no_grad():
            if kind == "energy":
                retained, asked = -torch.logsumexp(classifier(known), 1), -torch.logsumexp(classifier(queries), 1)
                return (asked > retained.max() + 0.1 * retained.abs().max()).tolist()
            hidden_known, hidden_asked = classifier.net[:2](known), classifier.net[:2](queries)
        radius = float(torch.quantile(leave_one_out(hidden_known, "euclidean"), 0.95)) * 1.1
        return (distances(hidden_asked, hidden_known, "euclidean").min(1).values > radius).tolist()
    return rejected


RULES = {
    "the switch's: global, 0.95 quantile x 1.1, standardised euclidean": rule("global"),
    "global, 0.95 quantile x 1.1, cosine on raw features": rule("global", "cosine", standardise=False),
    "per task, largest x 1.1, standardised euclidean": rule("task", quantile=1.0, margin=0.1),
    "per task, largest x 1.2, standardised euclidean": rule("task", quantile=1.0, margin=0.2),
    "per task, 0.95 quantile x 1.1, standardised euclidean": rule("task"),
    "per task, largest x 1.1, cosine on raw features": rule("task", "cosine", standardise=False, quantile=1.0),
    "per task, mean + 3 sd, standardised euclidean": rule("task", sd=3.0),
    "per task, mean + 3 sd, cosine on raw features": rule("task", "cosine", standardise=False, sd=3.0),
    "the switch's classifier: energy above the retained maximum + 10%": classifier_rule("energy"),
    "the switch's classifier: nearest neighbour in its hidden layer, 0.95 quantile x 1.1": classifier_rule("hidden"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    datasets = {"built-in task families": builtin_families(), "CT0 prompt families": ct0_families()}
    smol = load_model("smollm2-135m")
    extractor = FeatureExtractor.from_model(smol.model.model, smol.tokenizer, "smollm2-135m", layer=-1, pooling="last")
    texts = sorted({t for families in datasets.values() for group in families.values() for t in group})
    features = {}
    for start in range(0, len(texts), 64):
        batch = texts[start:start + 64]
        features.update(zip(batch, extractor([switch_text(t) for t in batch])))
    results = {}
    for rule_name, rejected in RULES.items():
        results[rule_name] = {}
        for data_name, families in datasets.items():
            unknown, known = [], []
            for seed in range(args.seeds):
                train, held = split(families, seed)
                for out in sorted(families):
                    kept = [(t, label) for t, label in train if label != out]
                    flags = rejected(torch.stack([features[t] for t, _ in kept]), [label for _, label in kept],
                                     torch.stack([features[t] for t, _ in held]))
                    unknown += [f for f, (_, label) in zip(flags, held) if label == out]
                    known += [f for f, (_, label) in zip(flags, held) if label != out]
            results[rule_name][data_name] = {"unknown_rejected": sum(unknown) / len(unknown),
                                             "known_rejected": sum(known) / len(known)}
        print(rule_name, json.dumps(results[rule_name]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"seeds": args.seeds, "retained_per_task": 16, "rules": results},
                                             indent=2) + "\n")


if __name__ == "__main__":
    main()
