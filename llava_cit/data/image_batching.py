"""Batch what a processor returns for one example at a time.

Every family's processor lays out a batch of images its own way: one tensor per image (LLaVA, Gemma 3), the
patches of every image one after another with their grid (Qwen2-VL's `pixel_values` + `image_grid_thw`), tiles
(InternVL), or one row per sample padded with blank images to the batch's most (Idefics3/SmolVLM's
`pixel_values` + `pixel_attention_mask`, LLaVA-OneVision's anyres patches + `image_sizes`). In each, the examples'
tensors follow one another along the first dimension, and a shorter one is padded with zeros along the others
(what the processors themselves do, and what the models drop again). Token-aligned inputs (Gemma 3's
`token_type_ids`, Qwen's `mm_token_type_ids`) are padded like `input_ids`, with 0 (text).
"""

from __future__ import annotations

import torch

TOKEN_ALIGNED = ("token_type_ids", "mm_token_type_ids")


def merge_image_inputs(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One example's image tensors after another (first dimension), zero-padded to the largest along the others."""
    merged: dict[str, torch.Tensor] = {}
    keys = list(dict.fromkeys(key for item in items for key in item))
    for key in keys:
        tensors = [item[key] for item in items if key in item]
        if all(t.shape[1:] == tensors[0].shape[1:] for t in tensors):
            merged[key] = torch.cat(tensors)
            continue
        widest = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
        padded = []
        for t in tensors:
            out = t.new_zeros((t.shape[0], *widest))
            out[(slice(None), *(slice(0, n) for n in t.shape[1:]))] = t
            padded.append(out)
        merged[key] = torch.cat(padded)
    return merged


def pad_token_aligned(rows: list[list[int]], width: int, left: bool) -> torch.Tensor:
    """Token-aligned rows (e.g. token types) as one tensor, padded with 0 on the left (generation) or right."""
    out = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        if row and left:
            out[r, width - len(row):] = torch.tensor(row)
        elif row:
            out[r, : len(row)] = torch.tensor(row)
    return out
