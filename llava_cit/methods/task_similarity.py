"""Task similarity from the retained data, in the switch extractor's feature space.

similarity(new, earlier) = how mixed the two tasks' retained examples are: for each retained example of
the two tasks, is its nearest neighbour (the others of both tasks, standardised features) from the other
task? With equal numbers, two tasks drawn from one distribution give a cross-task rate of about 1/2 and
two separable tasks about 0; the mixing is that rate times 2, at most 1. It is measured on the
instructions (what the switch reads) and on the answers; the similarity is their product: two tasks are
alike when both what is asked and what is answered are (short answers of different tasks often mix: on
the tiny demo, synth-shapes vs synth-ocr mix 0.0 by instruction but 1.0 by answer).

TIR (llava_cit.methods.tir) and similarity-informed expansion (llava_cit.methods.sim_expand) read it; the
values are recorded in the manifest and results.json ("task_similarity") and drawn by `llava-cit report`.
"""

from __future__ import annotations

import torch

from llava_cit.methods.base import StageContext
from switch.instruction import switch_text


def mixing(a: torch.Tensor, b: torch.Tensor) -> float:
    """2 x the rate at which an example's nearest neighbour (leave-one-out) belongs to the other set, <= 1."""
    if len(a) == 0 or len(b) == 0 or len(a) + len(b) < 3:
        return 0.0
    n = min(len(a), len(b))  # equal numbers, so an even mix reads 1/2 whatever the retention sizes
    both = torch.cat([a[:n], b[:n]]).float()
    both = (both - both.mean(0)) / both.std(0, unbiased=False).clamp(min=1e-6)
    distances = torch.cdist(both, both, compute_mode="donot_use_mm_for_euclid_dist")
    distances.fill_diagonal_(float("inf"))
    nearest = distances.argmin(1)
    side = torch.arange(2 * n) >= n
    cross = (side[nearest] != side).float().mean().item()
    return min(1.0, 2 * cross)


def similarity_to_earlier(ctx: StageContext) -> dict[str, dict[str, float]]:
    """{earlier task: {"instruction": s, "answer": s, "similarity": product}} for the stage's task."""
    if ctx.features is None or ctx.stage == 0:
        return {}
    cached = getattr(ctx, "_similarity", None)
    if cached is not None:
        return cached
    own = ctx.retained()
    own_i = ctx.features([switch_text(ex.instruction, ex.input) for ex in own])
    own_a = ctx.features([ex.answer for ex in own])
    result = {}
    for task in ctx.tasks[: ctx.stage]:
        earlier = ctx.replay.get(task, [])
        if not earlier:
            continue
        s_i = mixing(own_i, ctx.features([switch_text(ex.instruction, ex.input) for ex in earlier]))
        s_a = mixing(own_a, ctx.features([ex.answer for ex in earlier]))
        result[task] = {"instruction": s_i, "answer": s_a, "similarity": s_i * s_a}
    ctx._similarity = result
    return result


def most_similar(ctx: StageContext) -> tuple[str | None, float]:
    values = similarity_to_earlier(ctx)
    if not values:
        return None, 0.0
    task = max(values, key=lambda t: values[t]["similarity"])
    return task, values[task]["similarity"]
