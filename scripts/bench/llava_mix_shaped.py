"""A LLaVA-format file shaped like LLaVA-1.5's instruction mix (llava_v1_5_mix665k.json), for padding measurements
where the real file is not at hand.

    python scripts/bench/llava_mix_shaped.py --scale 0.05 --out mix-shaped.json
    python scripts/bench/padding_fraction.py mix-shaped.json --batch 16 --accumulation 8

What is taken from the source: the twelve parts and their sizes (LLaVA-1.5 paper, Table 7: 665K conversations),
ShareGPT text-only and everything else with an image, one image per conversation with several questions about it
merged into one multi-turn conversation (as LLaVA-1.5 merges them), and each part's response-format prompt
(e.g. "Answer the question using a single word or phrase." after a VQA question). What is assumed, not measured:
the turns per conversation and the words per question and answer, drawn uniformly from the ranges in PARTS below.
The words are random; only their number matters to a padding measurement.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SHORT = "Answer the question using a single word or phrase."
CHOICE = "Answer with the option's letter from the given choices directly."
CAPTION = "Provide a one-sentence caption for the provided image."
REGION = "Please provide a short description for this region: [0.12, 0.34, 0.56, 0.78]"

# part: (conversations in the real mix, image?, turns range, question words range, answer words range, format prompt)
PARTS = {
    "llava_conversation": (58_000, True, (2, 8), (6, 20), (15, 80), ""),
    "llava_detail": (23_000, True, (1, 1), (6, 12), (80, 200), ""),
    "llava_complex_reasoning": (77_000, True, (1, 1), (10, 25), (50, 150), ""),
    "sharegpt": (40_000, False, (1, 6), (10, 200), (50, 400), ""),
    "vqav2": (83_000, True, (1, 8), (4, 10), (1, 2), SHORT),
    "gqa": (72_000, True, (1, 10), (5, 15), (1, 2), SHORT),
    "okvqa": (9_000, True, (1, 2), (5, 12), (1, 2), SHORT),
    "ocrvqa": (80_000, True, (1, 5), (5, 9), (1, 6), SHORT),
    "aokvqa": (66_000, True, (1, 1), (18, 30), (1, 1), CHOICE),
    "textcaps": (22_000, True, (1, 1), (0, 0), (8, 20), CAPTION),
    "refcoco": (48_000, True, (1, 10), (0, 0), (2, 8), REGION),
    "vg": (86_000, True, (1, 10), (0, 0), (2, 8), REGION),
}
VOCABULARY = "the a of on in what which color left right man woman sign book title red blue shirt table".split()


def words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(low, high)))


def conversation(rng: random.Random, part: str, index: int) -> dict:
    _, image, turns, question, answer, prompt = PARTS[part]
    messages = []
    for turn in range(rng.randint(*turns)):
        human = " ".join(x for x in (words(rng, *question), prompt) if x)
        if turn == 0 and image:
            human = "<image>\n" + human
        messages += [{"from": "human", "value": human}, {"from": "gpt", "value": words(rng, *answer)}]
    record = {"id": f"{part}-{index}", "conversations": messages}
    if image:
        record["image"] = f"{part}/{index}.jpg"
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.05, help="Fraction of each part's size to write.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    records = [conversation(rng, part, i) for part, spec in PARTS.items() for i in range(round(spec[0] * args.scale))]
    rng.shuffle(records)
    args.out.write_text(json.dumps(records))
    print(f"{len(records)} records -> {args.out}")


if __name__ == "__main__":
    main()
