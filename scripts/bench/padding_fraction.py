"""Padding in training batches: random order vs length-grouped (train.group_by_length), on a LLaVA-format file; and
in evaluation batches: input order vs ordered by prompt length (what llava_cit.serve.generation does).

    python scripts/bench/padding_fraction.py llava_v1_5_mix665k.json --batch 16 --accumulation 8 --out padding.json
    python scripts/bench/padding_fraction.py OCRBench.json --eval-only --eval-batch 16   # a benchmark's questions

Each record's length in tokens is estimated as LLaVA's trainer estimates it for grouping (the words of every turn;
an image adds `--image-tokens`, 576 for LLaVA-1.5 at 336 px) times `--tokens-per-word` for the text. Three orders of
the same records, the same seed: random (the Trainer's default), LLaVA's group_by_modality_length (a sorted megabatch
dealt out to balance each micro-batch's total), and ours (llava_cit/train/length_grouping.py: a sorted megabatch cut
in order). The padding fraction is padded tokens / all tokens of the micro-batches, each padded to its longest row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llava_cit.data_prep.json_stream import iter_json_array  # noqa: E402
from llava_cit.train.length_grouping import modality_grouped_order  # noqa: E402


def record_lengths(path: Path, image_tokens: int, tokens_per_word: float) -> tuple[list[int], list[int]]:
    """(signed word counts as LLaVA's modality_lengths, token estimates) of every record."""
    signed, tokens = [], []
    for record in iter_json_array(path):
        words = max(1, sum(len(str(turn.get("value", "")).split()) for turn in record.get("conversations", [])))
        has_image = bool(record.get("image"))
        signed.append(words if has_image else -words)
        tokens.append(round(words * tokens_per_word) + (image_tokens if has_image else 0))
    return signed, tokens


def llava_dealt_order(lengths: list[int], micro_batch: int, micro_batches: int, generator: torch.Generator) -> list[int]:
    """LLaVA's group_by_modality_length order (llava/train/llava_trainer.py), rewritten for comparison: each modality's
    sorted megabatch is dealt to the micro-batch with the smallest total so far."""
    megabatch = micro_batch * micro_batches

    def grouped(sizes: list[int]) -> list[int]:
        order = torch.randperm(len(sizes), generator=generator).tolist()
        out = []
        for start in range(0, len(order), megabatch):
            block = sorted(order[start:start + megabatch], key=lambda i: sizes[i], reverse=True)
            if len(block) % micro_batches:
                out += [i for k in range(micro_batches) for i in block[k::micro_batches]]
                continue
            chunks, totals, room = [[] for _ in range(micro_batches)], [0.0] * micro_batches, len(block) // micro_batches
            for index in block:
                k = totals.index(min(totals))
                chunks[k].append(index)
                totals[k] += sizes[index]
                if len(chunks[k]) == room:
                    totals[k] = float("inf")
            out += [i for chunk in chunks for i in chunk]
        return out

    blocks, leftover = [], []
    for sign in (1, -1):
        members = [i for i, length in enumerate(lengths) if length * sign > 0]
        ordered = [members[i] for i in grouped([abs(lengths[i]) for i in members])]
        mine = [ordered[k:k + megabatch] for k in range(0, len(ordered), megabatch)]
        if mine:
            leftover += mine.pop()
        blocks += mine
    blocks = [blocks[i] for i in torch.randperm(len(blocks), generator=generator).tolist()]
    if len(leftover) >= megabatch:
        blocks.insert(0, leftover[:megabatch])
        leftover = leftover[megabatch:]
    return [i for block in blocks + ([leftover] if leftover else []) for i in block]


def prompt_tokens(path: Path, image_tokens: int, tokens_per_word: float) -> list[int]:
    """Per evaluation record, its prompt's estimated tokens: the first human turn of a LLaVA-format record, or an
    OCRBench / GQA-style record's `question`, plus the image's tokens where it has one."""
    out = []
    for record in iter_json_array(path):
        if "conversations" in record:
            text = next((t.get("value", "") for t in record["conversations"] if t.get("from") == "human"), "")
        else:
            text = str(record.get("question", ""))
        has_image = bool(record.get("image") or record.get("image_path") or record.get("imageId"))
        out.append(round(max(1, len(text.replace("<image>", "").split())) * tokens_per_word)
                   + (image_tokens if has_image else 0))
    return out


def eval_padding(tokens: list[int], batch: int) -> dict:
    """Evaluation batches of `batch` prompts (left-padded to the longest): in input order vs longest first."""
    by_length = sorted(range(len(tokens)), key=lambda i: -tokens[i])
    before = padding_fraction(list(range(len(tokens))), tokens, batch)
    after = padding_fraction(by_length, tokens, batch)
    return {"eval_batch": batch, "eval_input_order": before, "eval_by_prompt_length": after,
            "eval_tokens_computed_input_over_sorted": (1 - after) / (1 - before)}


def padding_fraction(order: list[int], tokens: list[int], micro_batch: int) -> float:
    padded = real = 0
    for start in range(0, len(order), micro_batch):
        rows = [tokens[i] for i in order[start:start + micro_batch]]
        padded += max(rows) * len(rows)
        real += sum(rows)
    return 1 - real / padded


def measure(signed: list[int], tokens: list[int], micro_batch: int, micro_batches: int, seed: int) -> dict:
    random_order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed)).tolist()
    llava = llava_dealt_order(signed, micro_batch, micro_batches, torch.Generator().manual_seed(seed))
    ours = modality_grouped_order(signed, micro_batch, micro_batches, torch.Generator().manual_seed(seed))
    result = {name: padding_fraction(order, tokens, micro_batch)
              for name, order in (("random", random_order), ("llava_group_by_modality_length", llava),
                                  ("llava_cit_group_by_length", ours))}
    # tokens a step computes (real + padding) in random order over grouped: the same real tokens, less padding
    result["tokens_computed_random_over_grouped"] = (1 - result["llava_cit_group_by_length"]) / (1 - result["random"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="A LLaVA-format JSON array (records with 'conversations', 'image').")
    parser.add_argument("--batch", type=int, default=16, help="Per-device micro-batch (the paper's recipe: 16).")
    parser.add_argument("--accumulation", type=int, default=8, help="Micro-batches per optimizer step (processes x "
                                                                     "accumulation; the recipe on one GPU: 8).")
    parser.add_argument("--image-tokens", type=int, default=576)
    parser.add_argument("--tokens-per-word", type=float, default=1.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-batch", type=int, default=16, help="Evaluation batch (the default eval.batch_size).")
    parser.add_argument("--eval-only", action="store_true", help="Only the evaluation order (a benchmark's file).")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = {"data": str(args.data), "image_tokens": args.image_tokens, "tokens_per_word": args.tokens_per_word}
    if not args.eval_only:
        signed, tokens = record_lengths(args.data, args.image_tokens, args.tokens_per_word)
        result.update({"records": len(tokens), "batch": args.batch, "accumulation": args.accumulation,
                       "seed": args.seed, **measure(signed, tokens, args.batch, args.accumulation, args.seed)})
    prompts = prompt_tokens(args.data, args.image_tokens, args.tokens_per_word)
    result.update({"eval_records": len(prompts), **eval_padding(prompts, args.eval_batch)})
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
